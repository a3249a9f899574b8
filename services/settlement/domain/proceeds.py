"""Quota proceeds (指标收益) and buy-backs (收储), and the policy that shares them.

When the pool allocates quota to a project, the project pays ``amount_due``. Following the seed policy (六:
part of the freed resources compensates the enterprises that exited or relocated), a compensation share goes to
the enterprises whose lots were consumed, pro rata to units consumed; the rest is shared between the townships
the lots came from, the park the project enters and the county fund. Every line of an allocation has the project
as payer, so the project's lines sum to exactly ``amount_due``. A buy-back is the county fund paying an
enterprise for quota it takes into the reserve.

Rounding: see ``rounding`` rule 5 (compensation remainder -> largest contributor; rest remainder -> county fund).

The policy is versioned like an agreement (``agreements.AgreementBook``): each version applies from its
``effective_from`` (the 1st of a month; the first version may apply from the beginning) until the next version
takes over, and ``PolicyBook`` answers which version is in force on a date. An allocation is split by the version
in force on the day it was made (``allocated_on``: when its price and amount due were fixed), whichever statement
takes it and whenever that statement is drafted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Iterable, NamedTuple

from .errors import PartyError, ProceedsError
from .limits import implausible
from .parties import Party, PartyKind, code_ok as _code_ok, county_fund, enterprise, party_kind, require_party
from .rounding import BASIS_POINTS, basis_point_part, exact_split, largest_contributor

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]*$")
# A lot is named after what freed it: quota's "release:<release id>", and a department's release id may be its
# document number (通环收〔2024〕1号). What quota's contract takes (no whitespace or control characters) is taken here:
# such a lot's allocations and buy-backs were dead-lettered, and its enterprise never compensated.
_PRICE_RE = re.compile(r"^(?=.{1,40}$)[0-9]+(\.[0-9]+)?$")  # stored in 40 characters
_LOT_ID_RE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,200}$")


def _is_int(v: object) -> bool:
    return type(v) is int or (isinstance(v, int) and not isinstance(v, bool))  # the first test settles most


def _check_id(value: str, what: str, pattern: re.Pattern = _ID_RE) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise ProceedsError("invalid_id", f"{what} {value!r} is not a valid id")


class ConsumedLot(NamedTuple):  # a tuple: built for every lot of every allocation a statement reads
    lot_id: str
    # credit code of the enterprise that freed the lot; None for a lot that earns no compensation — land
    # reclaimed by a 增减挂钩 project, quota an enterprise saved by upgrading (it stays): its share of the
    # proceeds goes to the rest.
    enterprise: str | None
    township: Party  # where it was freed, e.g. "township:320623101"
    units: int  # in the asset's smallest unit


@dataclass(frozen=True, kw_only=True)
class QuotaAllocation:
    allocation_id: str
    project_id: str
    asset: str
    amount_units: int
    price: str  # decimal string per unit, for reference only: amount_due is what the project pays
    amount_due_fen: int
    destination: Party | None  # the park (or township) the project enters; None: no park, the fund takes its weight
    lots: tuple[ConsumedLot, ...]
    allocated_on: date
    received_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "lots", tuple(self.lots))


@dataclass(frozen=True, kw_only=True)
class BuyBack:
    buyback_id: str
    enterprise: str  # credit code
    lot_id: str
    amount_fen: int  # owed by the county fund to the enterprise
    agreed_on: date
    received_at: datetime


@dataclass(frozen=True, kw_only=True)
class SettlementPolicy:
    """The county's settings for proceeds (a versioned setting per county, each version in force from a month on,
    never a constant in code; ``PolicyBook`` holds the versions)."""

    policy_id: str
    version: int
    county: str
    compensation_bp: int  # e.g. 3000 = 30% of amount_due compensates the enterprises that freed the lots
    township_weight: int  # the rest is shared township : park : fund by these weights (per unit consumed)
    park_weight: int
    fund_weight: int
    # the 1st of the first month whose allocations it splits (until the next version's); None: from the beginning
    effective_from: date | None = None

    def __post_init__(self) -> None:
        _check_id(self.policy_id, "policy id")
        if not _is_int(self.version) or self.version < 1:
            raise ProceedsError("invalid_version", "policy version must be an integer >= 1")
        e = self.effective_from
        if e is not None:
            if not isinstance(e, date) or isinstance(e, datetime):
                raise ProceedsError("invalid_date", f"policy {self.ref}: effective_from must be a date")
            if e.day != 1:
                raise ProceedsError("effective_from_not_first_of_month",
                                    f"policy {self.ref}: effective_from {e} is not the 1st of a month")
        try:
            county_fund(self.county)
        except PartyError as exc:
            raise ProceedsError(exc.reason, str(exc)) from None
        if not _is_int(self.compensation_bp) or not 0 <= self.compensation_bp <= BASIS_POINTS:
            raise ProceedsError("invalid_compensation_share", "compensation share must be 0..10000 basis points")
        ws = (self.township_weight, self.park_weight, self.fund_weight)
        if not all(_is_int(w) and w >= 0 for w in ws) or sum(ws) <= 0:
            raise ProceedsError("invalid_proceeds_weights", "proceeds weights must be integers >= 0, not all 0")

    @property
    def fund(self) -> Party:
        return f"county:{self.county}/fund"  # == county_fund(county), checked in __post_init__

    @property
    def ref(self) -> str:
        return f"{self.policy_id}@v{self.version}"

    def same_terms(self, other: "SettlementPolicy") -> bool:
        """Same document and numbers (version and period of validity aside)."""
        return (self.policy_id, self.county, self.compensation_bp, self.township_weight, self.park_weight,
                self.fund_weight) == (other.policy_id, other.county, other.compensation_bp, other.township_weight,
                                      other.park_weight, other.fund_weight)


class PolicyBook:
    """All versions of one county's settlement policy, checked together; answers "which version splits the proceeds
    of an allocation made on this day" the way ``AgreementBook.version_in_force`` answers it for agreements: the
    version with the latest ``effective_from`` on or before the day, of two from the same day the later one.

    A version applies from its ``effective_from`` until the next later-dated version's; one without applies from
    the beginning. A version may take effect before the versions recorded before it (it was refused: a county whose
    first version took effect after an allocation it had to settle could draft no statement again), and one from the
    same day as an earlier version replaces it; finalized periods are kept from any change by the registry."""

    def __init__(self, policies: Iterable[SettlementPolicy]):
        by_version: dict[int, SettlementPolicy] = {}
        for p in policies:
            known = by_version.get(p.version)
            if known is not None and known != p:
                raise ProceedsError("duplicate_version", f"policy version {p.version} is given twice with different terms")
            by_version[p.version] = p
        if not by_version:
            raise ProceedsError("policy_missing", "no settlement policy version given")
        self._versions = tuple(by_version[v] for v in sorted(by_version))
        counties = {p.county for p in self._versions}
        if len(counties) != 1:
            raise ProceedsError("policy_for_other_county", f"policy versions of several counties: {sorted(counties)}")
        self.county = self._versions[0].county
        # by the day each takes effect, then by number: the last one on or before a day is in force that day
        self._by_start = sorted(self._versions, key=lambda v: (v.effective_from or date.min, v.version))
        self._by_month: dict[tuple[int, int], SettlementPolicy | None] = {}

    @classmethod
    def of(cls, policy: "SettlementPolicy | PolicyBook | Iterable[SettlementPolicy]") -> "PolicyBook":
        if isinstance(policy, PolicyBook):
            return policy
        return cls([policy] if isinstance(policy, SettlementPolicy) else policy)

    def versions(self) -> tuple[SettlementPolicy, ...]:
        return self._versions

    @property
    def latest(self) -> SettlementPolicy:
        return self._versions[-1]

    @property
    def first_effective(self) -> date | None:
        """From when any version applies (None: from the beginning)."""
        return self._by_start[0].effective_from

    def version_in_force(self, on: date) -> SettlementPolicy | None:
        """The version in force on ``on``: the latest-dated on or before it, the later of a day's (None before all)."""
        key = (on.year, on.month)  # versions change on the 1st of a month: one answer per month
        try:
            return self._by_month[key]
        except KeyError:
            pass
        found = None
        for v in self._by_start:
            if (v.effective_from or date.min) > on:
                break
            found = v
        self._by_month[key] = found
        return found


def validate_allocation(a: QuotaAllocation) -> QuotaAllocation:
    _check_id(a.allocation_id, "allocation id")
    _check_id(a.project_id, "project id")
    if not _is_int(a.amount_due_fen) or a.amount_due_fen < 0:
        raise ProceedsError("invalid_amount_due", f"allocation {a.allocation_id}: amount due must be integer fen >= 0")
    if (problem := implausible(f"allocation {a.allocation_id}: amount due", a.amount_due_fen)) is not None:
        raise ProceedsError("amount_implausible", problem)
    if not _is_int(a.amount_units) or a.amount_units <= 0:
        raise ProceedsError("invalid_amount", f"allocation {a.allocation_id}: amount must be a positive integer of units")
    if not _PRICE_RE.match(a.price or ""):  # for reference only, but shown to the county as its price
        raise ProceedsError("invalid_price", f"allocation {a.allocation_id}: price {a.price!r} is not a price "
                                             "(a decimal >= 0, at most 40 characters)")
    if not isinstance(a.received_at, datetime) or a.received_at.tzinfo is None:
        raise ProceedsError("received_at_not_timezone_aware",
                            f"allocation {a.allocation_id}: received_at must be timezone-aware")
    if not isinstance(a.allocated_on, date) or isinstance(a.allocated_on, datetime):
        raise ProceedsError("invalid_date", f"allocation {a.allocation_id}: allocated_on must be a date")
    if not a.lots:
        raise ProceedsError("no_lots", f"allocation {a.allocation_id}: every allocated unit must trace back to a released lot")
    try:
        if a.destination is not None:
            require_party(a.destination, PartyKind.PARK, PartyKind.TOWNSHIP, role="destination")
        seen: set[str] = set()
        units = 0
        id_ok = _LOT_ID_RE.match
        # the checks are written out and refusals (messages) made only on failure: this runs for every lot of every
        # allocation of a county-year
        for lot_id, enterprise_, township, lot_units in a.lots:
            if lot_id.__class__ is not str or not id_ok(lot_id):
                _check_id(lot_id, "lot id", _LOT_ID_RE)
            if lot_id in seen:
                raise ProceedsError("duplicate_lot", f"allocation {a.allocation_id}: lot {lot_id} is listed twice")
            seen.add(lot_id)
            if enterprise_ is not None and not _code_ok(enterprise_):
                enterprise(enterprise_)
            if party_kind(township) not in _ORIGINS:
                require_party(township, *_ORIGINS, role=f"origin of lot {lot_id}")
            if lot_units.__class__ is not int and not _is_int(lot_units) or lot_units <= 0:
                raise ProceedsError("invalid_lot_units",
                                    f"allocation {a.allocation_id}: lot {lot_id} must consume a positive number of units")
            units += lot_units
    except PartyError as exc:
        raise ProceedsError(exc.reason, f"allocation {a.allocation_id}: {exc}") from None
    if units != a.amount_units:
        raise ProceedsError("lots_do_not_match_amount",
                            f"allocation {a.allocation_id}: consumed lots do not add up to the allocated amount")
    return a


_ORIGINS = (PartyKind.TOWNSHIP, PartyKind.PARK)


def validate_buyback(b: BuyBack) -> BuyBack:
    _check_id(b.buyback_id, "buy-back id", _LOT_ID_RE)  # buyback:<lot id>
    _check_id(b.lot_id, "lot id", _LOT_ID_RE)
    try:
        enterprise(b.enterprise)
    except PartyError as exc:
        raise ProceedsError(exc.reason, f"buy-back {b.buyback_id}: {exc}") from None
    if not _is_int(b.amount_fen) or b.amount_fen <= 0:
        raise ProceedsError("invalid_amount", f"buy-back {b.buyback_id}: amount must be positive integer fen")
    if (problem := implausible(f"buy-back {b.buyback_id}", b.amount_fen)) is not None:
        raise ProceedsError("amount_implausible", problem)
    if not isinstance(b.received_at, datetime) or b.received_at.tzinfo is None:
        raise ProceedsError("received_at_not_timezone_aware", f"buy-back {b.buyback_id}: received_at must be timezone-aware")
    return b


@dataclass(frozen=True)
class ProceedsSplit:
    """How one allocation's ``amount_due`` is shared; ``sum(compensation) + sum(shares) == amount_due``."""

    compensation: dict[str, int]  # credit code -> fen
    shares: dict[Party, int]  # township / park / county fund -> fen
    lots_by_enterprise: dict[str, tuple[str, ...]] = field(default_factory=dict)
    lots_by_township: dict[Party, tuple[str, ...]] = field(default_factory=dict)


def split_proceeds(a: QuotaAllocation, policy: SettlementPolicy) -> ProceedsSplit:
    compensation, shares = proceeds_parts(a, policy)
    return ProceedsSplit(
        compensation={code: amount for code, amount, _ in compensation},
        shares={party: amount for party, amount, _ in shares},
        lots_by_enterprise={code: lots for code, _, lots in compensation},
        lots_by_township={party: lots for party, _, lots in shares if lots},
    )


Part = tuple[str, int, tuple[str, ...]]  # who (credit code or party), fen, the lots behind it (sorted)


def proceeds_parts(a: QuotaAllocation, policy: SettlementPolicy) -> tuple[list[Part], list[Part]]:
    """Rounding rule 5: the compensation per enterprise and the shares of the rest, each sorted by who gets it.
    Runs for every allocation of a county-year, so the splits are ``exact_split`` (the same parts as ``split``,
    which would check the weights again): the guards below are what makes them valid."""
    due = a.amount_due_fen
    if not _is_int(due) or due < 0:
        raise ValueError(f"allocation {a.allocation_id}: amount due must be integer fen >= 0")
    units_e: dict[str, int] = {}  # enterprise -> units it freed
    units_t: dict[Party, int] = {}  # township -> units freed there
    lots_e: dict[str, list[str]] = {}
    lots_t: dict[Party, list[str]] = {}
    for lot_id, enterprise_, township, units in a.lots:
        if units.__class__ is not int and not _is_int(units) or units <= 0:
            raise ValueError(f"allocation {a.allocation_id}: lot {lot_id} must consume a positive number of units")
        if enterprise_ is not None:
            if enterprise_ in units_e:
                units_e[enterprise_] += units
                lots_e[enterprise_].append(lot_id)
            else:
                units_e[enterprise_], lots_e[enterprise_] = units, [lot_id]
        if township in units_t:
            units_t[township] += units
            lots_t[township].append(lot_id)
        else:
            units_t[township], lots_t[township] = units, [lot_id]
    total_units = a.amount_units
    if total_units != sum(units_t.values()):
        raise ValueError(f"allocation {a.allocation_id}: consumed lots do not add up to the allocated amount")
    compensable_units = sum(units_e.values())
    compensable = due
    if compensable_units < total_units:  # rounding rule 5: some units earn no compensation
        compensable = exact_split(due, {"freed": compensable_units, "reclaimed": total_units - compensable_units},
                                  "reclaimed")["freed"]
    compensation_total = basis_point_part(compensable, policy.compensation_bp)
    compensation = exact_split(compensation_total, units_e, largest_contributor(units_e)) if units_e else {}
    fund = policy.fund
    township_weight = policy.township_weight
    weights: dict[Party, int] = {t: township_weight * u for t, u in units_t.items()}
    for party, w in ((a.destination or fund, policy.park_weight), (fund, policy.fund_weight)):
        # a destination that is also an origin township simply adds up its weights
        weights[party] = weights.get(party, 0) + w * total_units
    shares = exact_split(due - compensation_total, weights, fund)
    for lots in lots_e.values():
        lots.sort()
    for lots in lots_t.values():
        lots.sort()
    no_lots = ()
    return ([(code, compensation[code], tuple(lots_e[code])) for code in sorted(compensation)],
            [(party, shares[party], tuple(lots_t.get(party, no_lots))) for party in sorted(shares)])
