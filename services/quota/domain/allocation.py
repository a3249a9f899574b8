"""An explicit allocation round for competing requests.

Requests waiting in ``requested`` are ordered by the county's PriorityPolicy (its keys in turn, then the
request id, so the order is total) and decided one by one against what is still available: granted in
full, or insufficient. All or nothing per request: a request whose lines do not all fit takes nothing,
and later (lower-priority) requests that do fit are still granted, since an insufficient request is
rejected, not kept waiting, and holding quota back for it would help nobody.
A request the figures can grant may still be refused (outcome ``refused``, reason ``too_many_lots``) when the
caller's ``fits`` says its allocation could not be written (application/allocations.py): it takes nothing either.
Same input, same decisions: nothing here reads a clock or depends on input order.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Callable, Mapping, Sequence

from services.quota.domain.policy import PoolPolicy, PriorityKey, PriorityPolicy
from shared.amounts import format_amount
from services.quota.domain.requests import (
    TOO_MANY_LOTS, QuotaRequest, RequestState, RequestTransition, begin_reserving, reject,
)


class Outcome(StrEnum):
    GRANTED = "granted"
    INSUFFICIENT = "insufficient"
    REFUSED = "refused"  # the figures allow it, its allocation could not be carried out (too_many_lots)


@dataclass(frozen=True)
class Shortfall:
    asset: str
    requested: int
    available: int  # what was left when the request's turn came (too_many_lots: about the most one allocation
    # of the asset could take then)


# Asked, in rank order, about each request the figures can grant: () to grant it (the asker then counts it as
# granted), or the lines that make it too_many_lots.
Fits = Callable[[QuotaRequest], Sequence[Shortfall]]


@dataclass(frozen=True)
class RoundDecision:
    request_id: str
    rank: int  # 1 = first served
    outcome: Outcome
    reason: str  # "granted" | "insufficient_quota" | "too_many_lots"
    ordered_by: tuple[tuple[str, str], ...]  # the priority facts that placed it, for the record
    shortfalls: tuple[Shortfall, ...] = ()


@dataclass(frozen=True)
class RoundResult:
    decisions: tuple[RoundDecision, ...]  # in rank order
    available_after: Mapping[str, int]


def _covers(prefix: str, code: str) -> bool:
    """Whether the industry ``prefix`` (GB/T 4754) covers ``code``, as the assessment service matches them: a class
    is under its division ('C39' covers 'C3911', which projects carry), the door letter may be left out, case aside.
    It was equality: a county naming C39 strategic never saw its C3911 project served first."""
    p, c = prefix.strip().upper(), code.strip().upper()
    p_door, p_digits = (p[0], p[1:]) if p[:1].isalpha() else (None, p)
    c_door, c_digits = (c[0], c[1:]) if c[:1].isalpha() else (None, c)
    if not p or (p_door is not None and c_door is not None and p_door != c_door):
        return False
    return c_digits.startswith(p_digits)


def _key_part(request: QuotaRequest, key: PriorityKey, policy: PriorityPolicy) -> tuple[tuple[Any, ...], str]:
    """(sortable value, recorded value) of one priority key; unknown facts sort last."""
    p = request.project
    if key is PriorityKey.PROJECT_CLASS:
        order = policy.class_order
        rank = order.index(p.project_class) if p.project_class in order else len(order)
        return (rank,), str(p.project_class)
    if key is PriorityKey.STRATEGIC_INDUSTRY:
        member = p.industry_code is not None and any(_covers(s, p.industry_code) for s in policy.strategic_industries)
        return (0 if member else 1,), "yes" if member else "no"
    if key is PriorityKey.TAX_PER_MU:
        known = p.tax_per_mu_fen is not None
        # recorded in CNY, as every money figure the API shows (it was fen: 100 times the promise)
        shown = format_amount(p.tax_per_mu_fen, 2) if known else "unknown"
        return ((0, -p.tax_per_mu_fen) if known else (1, 0)), shown  # type: ignore[operator]
    if key is PriorityKey.ARRIVAL:
        return (request.requested_at,), request.requested_at.isoformat()
    raise ValueError(f"unknown priority key {key}")


def priority_key(request: QuotaRequest, policy: PriorityPolicy) -> tuple[Any, ...]:
    return tuple(_key_part(request, k, policy)[0] for k in policy.keys) + (request.request_id,)


def run_allocation_round(
    available: Mapping[str, int], requests: Sequence[QuotaRequest], policy: PriorityPolicy, fits: Fits | None = None
) -> RoundResult:
    """``available``: per asset, what the pool may grant now (pool_view.available_by_asset). ``fits`` (see Fits),
    if given: whether a request the figures can grant can be allocated too."""
    if any(r.state is not RequestState.REQUESTED for r in requests):
        raise ValueError("a round decides requests in state requested only")
    if len({r.request_id for r in requests}) != len(requests):
        raise ValueError("a request appears twice in the round")
    if len({r.county_code for r in requests}) > 1:
        raise ValueError("a round serves one county")
    left = {a: n for a, n in available.items()}
    decisions = []
    for rank, request in enumerate(sorted(requests, key=lambda r: priority_key(r, policy)), start=1):
        ordered_by = tuple((k.value, _key_part(request, k, policy)[1]) for k in policy.keys)
        short = tuple(
            Shortfall(asset, amount, left.get(asset, 0))
            for asset, amount in request.line_amounts
            if amount > left.get(asset, 0)
        )
        if short:
            decisions.append(RoundDecision(request.request_id, rank, Outcome.INSUFFICIENT, "insufficient_quota",
                                           ordered_by, short))
            continue
        unfit = tuple(fits(request)) if fits is not None else ()
        if unfit:
            decisions.append(RoundDecision(request.request_id, rank, Outcome.REFUSED, TOO_MANY_LOTS, ordered_by, unfit))
            continue
        for asset, amount in request.line_amounts:
            left[asset] = left.get(asset, 0) - amount
        decisions.append(RoundDecision(request.request_id, rank, Outcome.GRANTED, "granted", ordered_by))
    return RoundResult(tuple(decisions), left)


def apply_decision(request: QuotaRequest, decision: RoundDecision, now: datetime,
                   policy: PoolPolicy) -> RequestTransition:
    """Granted -> reserving (pending transfers asked); insufficient or refused -> rejected with the round's reason."""
    if decision.request_id != request.request_id:
        raise ValueError("the decision is for another request")
    if decision.outcome is Outcome.GRANTED:
        return begin_reserving(request, now, policy)
    return reject(request, decision.reason, now)
