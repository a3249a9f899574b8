"""Department releases of freed quota (收储), who may publish what, and exit verification.

A release is taken into the pool only once it is accepted. When the enterprise is not yet known to
have exited or relocated, ``PoolPolicy.verification`` decides: hold it as pending_verification (the
default; accepted later by ``releases_verified_by`` when EnterpriseExited/EnterpriseRelocated arrives),
accept it on the department's word, or reject it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Container, Iterable, Mapping

from shared.amounts import AmountError, parse_amount
from services.quota.domain.assets import ASSETS, MONEY_SCALE, asset_problem
from services.quota.domain.identifiers import county_code_problem, credit_code_problem, township_code_problem
from services.quota.domain.policy import PoolPolicy, VerificationMode
from services.quota.domain.problems import Problem, QuotaDomainError


class ReleaseReason(StrEnum):
    CLOSURE = "closure"  # 关闭退出
    RELOCATION = "relocation"  # 搬迁入园
    BANKRUPTCY = "bankruptcy"
    UPGRADE_SAVINGS = "upgrade_savings"  # 改造升级 saved quota; the enterprise stays


# Reasons that only make sense once the enterprise has left; upgrade savings need no exit.
EXIT_REASONS = frozenset({ReleaseReason.CLOSURE, ReleaseReason.RELOCATION, ReleaseReason.BANKRUPTCY})


class Basis(StrEnum):
    FREE = "free"  # granted free, taken back free
    PAID = "paid"  # paid for, bought back at buyback_price_fen_per_unit


@dataclass(frozen=True)
class QuotaRelease:
    release_id: str
    department: str
    enterprise_credit_code: str
    township_code: str  # the township the enterprise leaves
    county_code: str
    asset: str
    amount: int  # smallest units of the asset
    reason: ReleaseReason
    basis: Basis
    buyback_price_fen_per_unit: int | None  # fen per display unit (t, tce, 亩); only when paid
    document_ref: str
    released_on: date


def _text(data: Mapping[str, Any], name: str, problems: list[Problem]) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem(f"{name}_missing", name))
        return ""
    return value.strip()


def _enum(kind: type[StrEnum], data: Mapping[str, Any], name: str, reason: str, problems: list[Problem]) -> Any:
    try:
        return kind(data.get(name))
    except ValueError:
        problems.append(Problem(reason, name, f"one of {[k.value for k in kind]}"))
        return None


# A lot's date orders it (first in, first out): a typo such as 0024-05-01 would put it before every other lot
# and make it the provenance, and the compensation, of the next allocations. No pooled quota is that old.
EARLIEST_DATE = date(2000, 1, 1)


def date_problem(day: date, field: str, today: date | None) -> Problem | None:
    """A lot's date must be one that has been: not before EARLIEST_DATE, nor after ``today`` (the county's day,
    China time) when given. A typo such as 2042 for 2024 pooled quota not freed yet, behind every other lot."""
    if day < EARLIEST_DATE:
        return Problem("date_implausible", field, f"{day.isoformat()} is before {EARLIEST_DATE.isoformat()} "
                                                  "(a typo such as 0024 for 2024?)")
    if today is not None and day > today:
        return Problem("date_implausible", field, f"{day.isoformat()} is after today ({today.isoformat()}, China "
                                                  "time): quota is pooled once it is freed")
    return None


def parse_release(data: Mapping[str, Any], policy: PoolPolicy, today: date | None = None) -> QuotaRelease:
    """Validate a release as a department sends it (amounts and prices as decimal strings; the buyback
    price in CNY per display unit, e.g. "12000.00" per t). Raises QuotaDomainError with every problem.
    ``today``: the county's day; a release dated after it is refused (see date_problem)."""
    problems: list[Problem] = []
    release_id = _text(data, "release_id", problems)
    document_ref = _text(data, "document_ref", problems)
    department = data.get("department")
    asset = data.get("asset")
    entitled = policy.department_assets.get(department) if isinstance(department, str) else None
    if entitled is None:
        problems.append(Problem("unknown_department", "department", f"one of {sorted(policy.department_assets)}"))
    if (p := asset_problem(asset)) is not None:
        problems.append(p)
    elif entitled is not None and asset not in entitled:
        problems.append(Problem("department_not_entitled", "asset", f"{department} may not publish {asset}"))
    county_p = county_code_problem(data.get("county_code"))
    if county_p is None and data.get("county_code") != policy.county_code:
        county_p = Problem("county_not_served", "county_code", f"this pool serves {policy.county_code}")
    for p in (
        credit_code_problem(data.get("enterprise_credit_code")),
        county_p,
        township_code_problem(data.get("township_code"), data.get("county_code")),
    ):
        if p is not None:
            problems.append(p)

    amount = 0
    if asset in ASSETS:
        try:
            amount = parse_amount(data.get("amount"), ASSETS[asset].scale)  # type: ignore[arg-type]
        except AmountError as e:
            problems.append(Problem(e.reason, "amount", str(e)))

    reason = _enum(ReleaseReason, data, "reason", "unknown_release_reason", problems)
    basis = _enum(Basis, data, "basis", "unknown_basis", problems)
    price_text = data.get("buyback_price_per_unit")
    price: int | None = None
    if basis is Basis.PAID:
        if price_text is None:
            problems.append(Problem("buyback_price_missing", "buyback_price_per_unit", "a paid release names it"))
        else:
            try:
                price = parse_amount(price_text, MONEY_SCALE)
            except AmountError as e:
                problems.append(Problem(e.reason, "buyback_price_per_unit", str(e)))
    elif basis is Basis.FREE and price_text is not None:
        problems.append(Problem("buyback_price_on_free_release", "buyback_price_per_unit"))

    released_on = data.get("released_on")
    if isinstance(released_on, str):
        try:
            released_on = date.fromisoformat(released_on)
        except ValueError:
            released_on = None
    if not isinstance(released_on, date):
        problems.append(Problem("released_on_malformed", "released_on", "an ISO date, e.g. 2024-03-31"))
    elif (problem := date_problem(released_on, "released_on", today)) is not None:
        problems.append(problem)

    if problems:
        raise QuotaDomainError(problems)
    return QuotaRelease(
        release_id=release_id,
        department=str(department),
        enterprise_credit_code=str(data["enterprise_credit_code"]),
        township_code=str(data["township_code"]),
        county_code=str(data["county_code"]),
        asset=str(asset),
        amount=amount,
        reason=reason,
        basis=basis,
        buyback_price_fen_per_unit=price,
        document_ref=document_ref,
        released_on=released_on,  # type: ignore[arg-type]
    )


class ReleaseStatus(StrEnum):
    ACCEPTED = "accepted"
    PENDING_VERIFICATION = "pending_verification"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ReleaseDecision:
    status: ReleaseStatus
    reason: str


def verify_release(release: QuotaRelease, departed: Container[str], mode: VerificationMode) -> ReleaseDecision:
    """``departed``: credit codes known (from EnterpriseExited/EnterpriseRelocated) to have left."""
    if release.reason not in EXIT_REASONS:
        return ReleaseDecision(ReleaseStatus.ACCEPTED, "verification_not_required")
    if release.enterprise_credit_code in departed:
        return ReleaseDecision(ReleaseStatus.ACCEPTED, "exit_known")
    if mode is VerificationMode.ACCEPT:
        return ReleaseDecision(ReleaseStatus.ACCEPTED, "accepted_unverified")
    if mode is VerificationMode.REJECT:
        return ReleaseDecision(ReleaseStatus.REJECTED, "exit_not_known")
    return ReleaseDecision(ReleaseStatus.PENDING_VERIFICATION, "exit_not_known")


def releases_verified_by(credit_code: str, pending: Iterable[QuotaRelease]) -> tuple[QuotaRelease, ...]:
    """The held releases an EnterpriseExited/EnterpriseRelocated for ``credit_code`` lets in (in id order)."""
    return tuple(
        sorted(
            (r for r in pending if r.enterprise_credit_code == credit_code and r.reason in EXIT_REASONS),
            key=lambda r: r.release_id,
        )
    )
