"""Every county setting the pool obeys, in one place. Counties differ: nothing here is a constant of
the code, only a default (Nantong/Jiangsu where known)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Mapping

from services.quota.domain.assets import ASSETS, EMISSION_ASSETS
from services.quota.domain.identifiers import township_code_problem


class Department(StrEnum):
    ECOLOGY = "ecology"  # 生态环境局
    DEVELOPMENT_REFORM = "development_reform"  # 发改委
    NATURAL_RESOURCES = "natural_resources"  # 自然资源和规划局


# Who may publish a release of which asset.
DEFAULT_DEPARTMENT_ASSETS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        Department.ECOLOGY: EMISSION_ASSETS,
        Department.DEVELOPMENT_REFORM: frozenset({"ENERGY"}),
        Department.NATURAL_RESOURCES: frozenset({"LAND"}),
    }
)


class VerificationMode(StrEnum):
    """What to do with a release for an enterprise not (yet) known to have exited or relocated."""

    HOLD = "hold"  # keep it pending_verification until EnterpriseExited/EnterpriseRelocated arrives
    ACCEPT = "accept"  # trust the department
    REJECT = "reject"  # refuse it; the department must publish again after the exit is known


class ConsumptionOrder(StrEnum):
    FIFO = "fifo"  # oldest lot first (lot date, then lot id)
    TOWNSHIP_ORDER = "township_order"  # townships in PoolPolicy.township_order first, FIFO within


class PriorityKey(StrEnum):
    PROJECT_CLASS = "project_class"  # PriorityPolicy.class_order, unknown class last
    STRATEGIC_INDUSTRY = "strategic_industry"  # industries under strategic_industries (code prefixes) first
    TAX_PER_MU = "tax_per_mu"  # higher promised tax per 亩 first, unknown last
    ARRIVAL = "arrival"  # earlier request first


@dataclass(frozen=True)
class PriorityPolicy:
    """Order of competing requests; the request id always breaks the last tie, so the order is total."""

    keys: tuple[PriorityKey, ...] = (
        PriorityKey.PROJECT_CLASS,
        PriorityKey.STRATEGIC_INDUSTRY,
        PriorityKey.TAX_PER_MU,
        PriorityKey.ARRIVAL,
    )
    class_order: tuple[str, ...] = ("A", "B", "C", "D")
    strategic_industries: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(PriorityKey(k) for k in self.keys))
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("a priority key is named twice")
        object.__setattr__(self, "strategic_industries", frozenset(self.strategic_industries))


# The ledger holds a pending transfer this much longer than our deadline (domain/requests.py, begin_reserving): an
# approval taken just before the deadline sends its post then, and the post must still find the reservation when it
# reaches the ledger (a relay, Kafka or the ledger's consumer lagging, or the ledger down for a while). Our own expiry
# voids the reservation at the deadline, so the ledger's later expiry holds nothing longer unless we are down.
LEDGER_EXPIRY_GRACE_SECONDS = 24 * 3600
# The longest pending timeout the ledger takes (shared/contracts/ledger.py, TransferSpec.timeout_seconds).
LEDGER_MAX_TIMEOUT_SECONDS = 10 * 365 * 86400
# Limits of a policy's timeouts, checked where a policy is set (PUT /v1/counties/{c}/policy): a longer reservation
# timeout made every reservation command invalid (each round granting anything failed), a longer wait a deadline past
# what a date can hold (every request of the county refused). Ten years is far beyond any real approval.
MAX_RESERVATION_TIMEOUT_SECONDS = LEDGER_MAX_TIMEOUT_SECONDS - LEDGER_EXPIRY_GRACE_SECONDS
MAX_REQUEST_WAIT_SECONDS = LEDGER_MAX_TIMEOUT_SECONDS


def _default_retire_share() -> dict[str, int]:
    return {code: (2000 if code in EMISSION_ASSETS else 0) for code in ASSETS}


@dataclass(frozen=True)
class PoolPolicy:
    county_code: str
    # Share of each intake retired rather than reused, in basis points (2000 = 20 %). Missing asset = 0.
    retire_share_bp: Mapping[str, int] = field(default_factory=_default_retire_share)
    # County price for 有偿使用, fen per display unit (per t, per tce, per 亩). Missing asset = free.
    price_fen_per_unit: Mapping[str, int] = field(default_factory=dict)
    # How long a reservation may wait for its confirming approval; also given to the ledger as timeout.
    reservation_timeout_seconds: int = 60 * 24 * 3600
    # How long a request may wait for an allocation round before it expires.
    request_wait_seconds: int = 30 * 24 * 3600
    consumption_order: ConsumptionOrder = ConsumptionOrder.FIFO
    township_order: tuple[str, ...] = ()
    verification: VerificationMode = VerificationMode.HOLD
    department_assets: Mapping[str, frozenset[str]] = field(default_factory=lambda: dict(DEFAULT_DEPARTMENT_ASSETS))
    priority: PriorityPolicy = field(default_factory=PriorityPolicy)

    def __post_init__(self) -> None:
        for name in ("retire_share_bp", "price_fen_per_unit", "department_assets"):
            table = dict(getattr(self, name))
            named = set().union(*table.values()) if name == "department_assets" else set(table)
            unknown = named - set(ASSETS)
            if unknown:
                raise ValueError(f"{name} names unknown assets {sorted(unknown)}")
            if name == "department_assets":
                table = {dept: frozenset(assets) for dept, assets in table.items()}
            object.__setattr__(self, name, MappingProxyType(table))
        if any(not 0 <= bp <= 10_000 for bp in self.retire_share_bp.values()):
            raise ValueError("a retire share is between 0 and 10000 basis points")
        if any(p < 0 for p in self.price_fen_per_unit.values()):
            raise ValueError("a price is not negative")
        if self.reservation_timeout_seconds <= 0 or self.request_wait_seconds <= 0:
            raise ValueError("timeouts are positive")
        object.__setattr__(self, "consumption_order", ConsumptionOrder(self.consumption_order))
        object.__setattr__(self, "verification", VerificationMode(self.verification))
        object.__setattr__(self, "township_order", tuple(self.township_order))

    def limit_problems(self) -> list[str]:
        """What of this policy could not be carried out (see MAX_RESERVATION_TIMEOUT_SECONDS), or names what does not
        exist. Not checked on load: a county whose stored policy broke a limit still takes releases; only setting
        such a policy is refused."""
        out = []
        if self.reservation_timeout_seconds > MAX_RESERVATION_TIMEOUT_SECONDS:
            out.append(f"reservation_timeout_seconds is at most {MAX_RESERVATION_TIMEOUT_SECONDS}")
        if self.request_wait_seconds > MAX_REQUEST_WAIT_SECONDS:
            out.append(f"request_wait_seconds is at most {MAX_REQUEST_WAIT_SECONDS}")
        # a code no township of this county has (a typo) would silently give that township no priority
        bad = [t for t in self.township_order if township_code_problem(t, self.county_code) is not None]
        if bad:
            out.append(f"township_order names no township of county {self.county_code}: {', '.join(map(repr, bad[:10]))}"
                       + (f" and {len(bad) - 10} more" if len(bad) > 10 else ""))
        if len(set(self.township_order)) != len(self.township_order):
            out.append("township_order names a township more than once")
        return out

    def retire_bp(self, asset: str) -> int:
        return self.retire_share_bp.get(asset, 0)

    def price(self, asset: str) -> int:
        return self.price_fen_per_unit.get(asset, 0)
