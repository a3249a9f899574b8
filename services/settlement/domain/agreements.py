"""Revenue-sharing agreements (飞地经济 税收分成) and the book that resolves which version is in force.

An agreement is identified by ``agreement_id``; each amendment is a new ``version`` carrying the full terms and
an ``effective_from`` date from which it applies (it governs tax months starting on or after that date, until the
next version takes over). Agreements run in whole months (start on a 1st, end on a month's last day) because
taxes are declared per month: a partial month has no meaning for a receipt.

Terms: the enterprise whose taxes are shared (receipts are matched on its credit code; a project id may be
recorded for reference), the origin (the township it left) and the destination (the park/township where it now
pays tax), per tax kind the local retained share in basis points (VAT 5000 = 50%, CIT 4000 = 40%), a split
schedule by agreement year (year 1 = the first 12 months from ``start``) as integer weights origin:destination,
an optional guaranteed minimum per agreement year for the origin, optional statistics weights, and the party
that takes split remainders.

Two different agreements covering the same enterprise, tax kind and month are refused (reason
``overlapping_agreements``): the county must not settle the same tax twice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from types import MappingProxyType
from typing import Iterable, Mapping

from .errors import AgreementError, PartyError
from .parties import Party, PartyKind, require_party
from .periods import Period, month_from_index, month_index
from .rounding import BASIS_POINTS, local_retained, two_way_part

VAT = "VAT"
CIT = "CIT"
_TAX_KIND_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")  # 40 at most, as stored: a longer one sent over Kafka was stored on
# SQLite, and dead-lettered handler_db_error (no reason) on PostgreSQL, where HTTP refused it
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]*$")


# The names a tax bureau's receipts give the two taxes a county shares (domain.md): its files say 增值税, not VAT.
# Other taxes are sent by the code the county's agreements use; a guessed mapping would settle them wrongly.
TAX_KIND_NAMES = {"增值税": VAT, "国内增值税": VAT, "企业所得税": CIT}


def check_tax_kind(tax_kind: str) -> str:
    if not isinstance(tax_kind, str) or not _TAX_KIND_RE.match(tax_kind):
        raise AgreementError("invalid_tax_kind", f"tax kind {tax_kind!r} is not an upper-case code such as VAT, CIT"
                                                 f" (or one of {', '.join(TAX_KIND_NAMES)} on a receipt)")
    return tax_kind


def tax_kind_code(text: str) -> str:
    """A receipt's tax kind as the agreements name it: 增值税 -> VAT; a code is kept as it is."""
    return TAX_KIND_NAMES.get(text.strip(), text) if isinstance(text, str) else text


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class ScheduleStep:
    """Weights origin:destination for agreement years ``first_year..last_year`` (``None``: to the end)."""

    first_year: int
    last_year: int | None
    origin_weight: int
    destination_weight: int


@dataclass(frozen=True, kw_only=True)
class RevenueSharingAgreement:
    agreement_id: str
    version: int
    effective_from: date
    enterprise: str
    origin: Party
    destination: Party
    local_shares_bp: Mapping[str, int]
    schedule: tuple[ScheduleStep, ...]
    start: date
    end: date
    remainder_to: Party
    guaranteed_minimum_fen: int | None = None
    minimum_payer: Party | None = None  # who tops up a shortfall; None: the destination (it collected the tax)
    statistics_weights: tuple[int, int] | None = None  # origin, destination
    project_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "local_shares_bp", MappingProxyType(dict(sorted(dict(self.local_shares_bp).items()))))
        object.__setattr__(self, "schedule", tuple(self.schedule))
        if self.statistics_weights is not None:
            object.__setattr__(self, "statistics_weights", tuple(self.statistics_weights))
        self._validate()
        # not fields: derived, for year_index and origin_share
        object.__setattr__(self, "_start_index", month_index(self.start))
        object.__setattr__(self, "_weights", {})  # agreement year -> (origin, destination) weights

    __hash__ = None  # type: ignore[assignment]  # holds a mapping; compare with ==, do not hash

    # -- validation ---------------------------------------------------------------------------
    def _validate(self) -> None:
        fail = AgreementError
        if not isinstance(self.agreement_id, str) or not _ID_RE.match(self.agreement_id):
            raise fail("invalid_agreement_id", f"agreement id {self.agreement_id!r} is not a valid id")
        where = f"agreement {self.agreement_id}"
        if not _is_int(self.version) or self.version < 1:
            raise fail("invalid_version", f"{where}: version {self.version!r} must be an integer >= 1")
        where = f"agreement {self.ref}"
        if not isinstance(self.enterprise, str) or not _ID_RE.match(self.enterprise):
            raise fail("invalid_enterprise", f"{where}: enterprise credit code {self.enterprise!r} is not valid")
        for d, name in ((self.start, "start"), (self.end, "end"), (self.effective_from, "effective_from")):
            if not isinstance(d, date):
                raise fail("invalid_date", f"{where}: {name} must be a date")
        if self.start.day != 1:
            raise fail("start_not_first_of_month", f"{where}: start {self.start} is not the 1st of a month")
        if (self.end + timedelta(days=1)).day != 1:
            raise fail("end_not_last_of_month", f"{where}: end {self.end} is not the last day of a month")
        if self.end < self.start:
            raise fail("end_before_start", f"{where}: end {self.end} is before start {self.start}")
        if self.effective_from.day != 1:
            raise fail("effective_from_not_first_of_month", f"{where}: effective_from {self.effective_from} is not a 1st")
        try:
            require_party(self.origin, PartyKind.TOWNSHIP, PartyKind.PARK, role="origin")
            require_party(self.destination, PartyKind.TOWNSHIP, PartyKind.PARK, role="destination")
            if self.minimum_payer is not None:
                require_party(self.minimum_payer, role="minimum payer")
        except PartyError as exc:
            raise fail(exc.reason, f"{where}: {exc}") from None
        if self.origin == self.destination:
            raise fail("origin_equals_destination", f"{where}: origin and destination are both {self.origin}")
        if self.minimum_payer == self.origin:  # it would top up its own minimum: a transfer to itself, nothing paid
            raise fail("minimum_payer_is_origin",
                       f"{where}: the origin {self.origin} cannot pay its own guaranteed minimum")
        if self.remainder_to not in (self.origin, self.destination):
            raise fail("remainder_to_not_a_party", f"{where}: remainder_to must be the origin or the destination")
        if not self.local_shares_bp:
            raise fail("no_taxes", f"{where}: names no tax kind to share")
        for tax_kind, bp in self.local_shares_bp.items():
            try:
                check_tax_kind(tax_kind)
            except AgreementError as exc:
                raise fail(exc.reason, f"{where}: {exc}") from None
            if not _is_int(bp) or not 0 <= bp <= BASIS_POINTS:
                raise fail("invalid_local_share", f"{where}: local share of {tax_kind} must be 0..10000 basis points")
        self._validate_schedule(where)
        if self.guaranteed_minimum_fen is not None and (
            not _is_int(self.guaranteed_minimum_fen) or self.guaranteed_minimum_fen < 0
        ):
            raise fail("invalid_minimum", f"{where}: guaranteed minimum must be a non-negative integer of fen")
        if self.statistics_weights is not None:
            w = self.statistics_weights
            if len(w) != 2 or not all(_is_int(x) and x >= 0 for x in w) or sum(w) <= 0:
                raise fail("invalid_statistics_weights", f"{where}: statistics weights must be two integers >= 0, not both 0")

    def _validate_schedule(self, where: str) -> None:
        fail = AgreementError
        if not self.schedule:
            raise fail("invalid_schedule", f"{where}: the split schedule is empty")
        expected = 1
        for i, step in enumerate(self.schedule):
            if not all(_is_int(x) for x in (step.first_year, step.origin_weight, step.destination_weight)):
                raise fail("invalid_schedule", f"{where}: schedule step {i + 1} must hold integers")
            if step.first_year != expected:
                raise fail("invalid_schedule", f"{where}: schedule step {i + 1} starts at year {step.first_year}, expected {expected}")
            if step.origin_weight < 0 or step.destination_weight < 0 or step.origin_weight + step.destination_weight <= 0:
                raise fail("invalid_schedule", f"{where}: schedule step {i + 1} weights must be >= 0 and not both 0")
            if step.last_year is None:
                if i != len(self.schedule) - 1:
                    raise fail("invalid_schedule", f"{where}: only the last schedule step may be open-ended")
                return
            if not _is_int(step.last_year) or step.last_year < step.first_year:
                raise fail("invalid_schedule", f"{where}: schedule step {i + 1} ends before it starts")
            expected = step.last_year + 1
        if expected - 1 < self.years:
            raise fail("invalid_schedule", f"{where}: the schedule covers {expected - 1} years; the agreement runs {self.years}")

    # -- terms --------------------------------------------------------------------------------
    @property
    def ref(self) -> str:
        return f"{self.agreement_id}@v{self.version}"

    @property
    def years(self) -> int:
        """Number of agreement years (the last one may be shorter than 12 months)."""
        return (month_index(self.end) - month_index(self.start)) // 12 + 1

    @property
    def taxes(self) -> tuple[str, ...]:
        return tuple(self.local_shares_bp)

    @property
    def topup_payer(self) -> Party:
        return self.minimum_payer or self.destination

    def covers(self, month: Period) -> bool:
        return self.start <= month.start and month.end <= self.end

    def year_index(self, month: Period) -> int:
        """1 for the first 12 months from ``start``, 2 for the next 12, ..."""
        return (month.index - self._start_index) // 12 + 1

    def year_months(self, year: int, agreement_end: Period | None = None) -> tuple[Period, Period]:
        """First and last month of agreement year ``year`` (the last year ends with the agreement). ``agreement_end``:
        the agreement's last month by all its versions (AgreementBook.final_month), else this version's own end. A
        version that an amendment extends ends its terms, not the agreement's year: that runs on under the next."""
        first = month_index(self.start) + 12 * (year - 1)
        last = min(first + 11, month_index(self.end) if agreement_end is None else agreement_end.index)
        return month_from_index(first), month_from_index(last)

    def year_closed_by(self, month: Period, agreement_end: Period | None = None) -> int | None:
        """The agreement year whose last month is ``month``, if any (that is when a minimum is checked)."""
        if not self.covers(month):
            return None
        year = self.year_index(month)
        return year if self.year_months(year, agreement_end)[1] == month else None

    def weights(self, year: int) -> tuple[int, int]:
        for step in self.schedule:
            if step.first_year <= year and (step.last_year is None or year <= step.last_year):
                return step.origin_weight, step.destination_weight
        raise AgreementError("invalid_schedule", f"agreement {self.ref}: no split for year {year}")

    def origin_share(self, tax_kind: str, month: Period, month_total_fen: int) -> int:
        """Origin's part of one month's tax of one kind (rounding rules 1 and 2)."""
        local = local_retained(month_total_fen, self.local_shares_bp[tax_kind])
        year = (month.index - self._start_index) // 12 + 1  # year_index, written out: once per line
        w_origin, w_dest = self._weights.get(year) or self._weights.setdefault(year, self.weights(year))
        return two_way_part(local, w_origin, w_dest, self.remainder_to == self.origin)

    def origin_statistics(self, amount: int) -> int:
        """Origin's part of a statistic (rounding rule 3)."""
        assert self.statistics_weights is not None
        w_origin, w_dest = self.statistics_weights
        return two_way_part(amount, w_origin, w_dest, self.remainder_to == self.origin)


@dataclass(frozen=True)
class _Segment:
    first: int  # month index, inclusive
    last: int  # month index, inclusive
    agreement: RevenueSharingAgreement


class AgreementBook:
    """All agreement versions of a county, checked together; answers "which version governs this tax month"."""

    def __init__(self, agreements: Iterable[RevenueSharingAgreement]):
        by_id: dict[str, dict[int, RevenueSharingAgreement]] = {}
        for a in agreements:
            versions = by_id.setdefault(a.agreement_id, {})
            known = versions.get(a.version)
            if known is not None and known != a:
                raise AgreementError("duplicate_version", f"agreement {a.ref} is given twice with different terms")
            versions[a.version] = a
        self._versions: dict[str, tuple[RevenueSharingAgreement, ...]] = {}
        self._segments: dict[str, list[_Segment]] = {}
        self._final: dict[str, int] = {}  # agreement -> month index of the last month any version covers
        for agreement_id in sorted(by_id):
            versions = tuple(by_id[agreement_id][v] for v in sorted(by_id[agreement_id]))
            for before, after in zip(versions, versions[1:]):
                if after.effective_from <= before.effective_from:
                    raise AgreementError(
                        "version_order",
                        f"agreement {after.ref} takes effect {after.effective_from}, not after {before.ref} ({before.effective_from})",
                    )
                if after.enterprise != before.enterprise:
                    raise AgreementError("amendment_changes_enterprise", f"agreement {after.ref} names another enterprise")
            self._versions[agreement_id] = versions
            for i, v in enumerate(versions):
                first = max(month_index(v.effective_from), month_index(v.start))
                last = month_index(v.end)
                if i + 1 < len(versions):
                    last = min(last, month_index(versions[i + 1].effective_from) - 1)
                if first <= last:
                    self._segments.setdefault(v.enterprise, []).append(_Segment(first, last, v))
                    self._final[agreement_id] = max(self._final.get(agreement_id, last), last)
        for segments in self._segments.values():
            segments.sort(key=lambda s: (s.first, s.agreement.agreement_id))
            self._check_overlaps(segments)

    @staticmethod
    def _check_overlaps(segments: list[_Segment]) -> None:
        for i, a in enumerate(segments):
            for b in segments[i + 1 :]:
                if b.first > a.last:
                    break
                if a.agreement.agreement_id == b.agreement.agreement_id:
                    continue
                month = month_from_index(max(a.first, b.first)).label
                shared = sorted(set(a.agreement.taxes) & set(b.agreement.taxes))
                if shared:
                    raise AgreementError(
                        "overlapping_agreements",
                        f"agreements {a.agreement.ref} and {b.agreement.ref} both share {shared[0]} of enterprise "
                        f"{a.agreement.enterprise} in {month}",
                    )
                if a.agreement.statistics_weights is not None and b.agreement.statistics_weights is not None:
                    raise AgreementError(
                        "overlapping_agreements",
                        f"agreements {a.agreement.ref} and {b.agreement.ref} both share the statistics of enterprise "
                        f"{a.agreement.enterprise} in {month}",
                    )

    # -- queries ------------------------------------------------------------------------------
    def agreement_ids(self) -> tuple[str, ...]:
        return tuple(self._versions)

    def versions(self, agreement_id: str) -> tuple[RevenueSharingAgreement, ...]:
        return self._versions.get(agreement_id, ())

    def version_in_force(self, agreement_id: str, on: date) -> RevenueSharingAgreement | None:
        """The latest version whose ``effective_from`` is on or before ``on`` (None before the first)."""
        found = None
        for v in self._versions.get(agreement_id, ()):
            if v.effective_from <= on:
                found = v
        return found

    def final_month(self, agreement_id: str) -> Period | None:
        """The last month the agreement covers, by all its versions: its last agreement year ends there. An amendment
        may end the agreement before its own ``effective_from`` (from July, ``end`` June 30): then no version's terms
        end that year where the agreement stops."""
        i = self._final.get(agreement_id)
        return None if i is None else month_from_index(i)

    def governing(self, agreement_id: str, month: Period) -> RevenueSharingAgreement | None:
        """The version in force for ``month`` if its terms cover that month."""
        v = self.version_in_force(agreement_id, month.start)
        return v if v is not None and v.covers(month) else None

    def resolve(self, enterprise: str, tax_kind: str, month: Period) -> RevenueSharingAgreement | None:
        """The agreement version that shares ``tax_kind`` of ``enterprise`` for tax month ``month``, or None."""
        return self._find(enterprise, tax_kind, month)

    def resolve_statistics(self, enterprise: str, month: Period) -> RevenueSharingAgreement | None:
        """The agreement version that shares the statistics of ``enterprise`` for ``month``, or None."""
        return self._find(enterprise, None, month)

    def _find(self, enterprise: str, tax_kind: str | None, month: Period) -> RevenueSharingAgreement | None:
        segments = self._segments.get(enterprise)
        if not segments:
            return None
        m = month.index
        for s in segments:
            if s.first > m:
                break
            if s.last < m:
                continue
            if (tax_kind is None and s.agreement.statistics_weights is not None) or (
                tax_kind is not None and tax_kind in s.agreement.local_shares_bp
            ):
                return s.agreement
        return None
