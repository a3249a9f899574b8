"""The quota request saga, one per request of an admitted project.

    requested --(round grants)--> reserving --(ledger made every pending transfer)--> reserved
    requested --(round: insufficient, too_many_lots)--> rejected   reserving --(ledger refused)--> rejected
    reserved --(every confirming approval in: 环评 / 能评 / 用地)--> allocated
    requested | reserving | reserved --> cancelled | expired (deadline passed, or the ledger expired it)
    requested --(project no longer admitted)--> rejected    reserving | reserved --(idem)--> cancelled
    reserved --(would allocate, but its QuotaAllocated is too big to write: too_many_lots)--> cancelled

Every transition is a pure function ``(request, event..., now) -> RequestTransition``. Events may come
twice or out of order: a repeated event returns ``changed=False`` and no new effect; an approval that
arrives before the ledger's answer is remembered and allocates as soon as the reservation stands.
A request never waits forever: in ``requested`` it expires ``request_wait_seconds`` after arrival; once
reservation is asked, ``reservation_timeout_seconds`` later. The ledger is given that timeout plus
``LEDGER_EXPIRY_GRACE_SECONDS`` (it starts counting only when it receives the transfer): an allocation we make
just before our deadline sends its post then, and the post must still find the reservation pending when it
reaches the ledger, else the allocation would stand here while the ledger returned the quota to the pool.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Mapping, Sequence

from shared.amounts import AmountError, parse_amount
from services.quota.domain.assets import ASSETS, ApprovalKind, Family, asset_problem, confirming_approval
from services.quota.domain.ledger_moves import (
    LedgerTransfer, allocate_moves, reserve_moves, reserve_transfer_id, void_moves,
)
from services.quota.domain.policy import LEDGER_EXPIRY_GRACE_SECONDS, LEDGER_MAX_TIMEOUT_SECONDS, PoolPolicy
from services.quota.domain.problems import Problem, QuotaDomainError
from services.quota.domain.projects import ProjectFacts, ProjectRegistry


class RequestState(StrEnum):
    REQUESTED = "requested"
    RESERVING = "reserving"
    RESERVED = "reserved"
    ALLOCATED = "allocated"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


OPEN_STATES = frozenset({RequestState.REQUESTED, RequestState.RESERVING, RequestState.RESERVED})
# States in which the request's amounts are held out of the pool's availability (the ledger may hold them).
HOLDING_STATES = frozenset({RequestState.RESERVING, RequestState.RESERVED})


class RequestEvent(StrEnum):
    """Event types a transition asks the service to publish."""

    RESERVED = "QuotaReserved"
    ALLOCATED = "QuotaAllocated"
    REJECTED = "QuotaRequestRejected"
    CANCELLED = "QuotaReservationCancelled"
    REQUEST_EXPIRED = "QuotaRequestExpired"
    RESERVATION_EXPIRED = "QuotaReservationExpired"


@dataclass(frozen=True)
class RequestLine:
    asset: str
    amount: int  # smallest units
    approval_kind: ApprovalKind  # the approval that confirms this line


@dataclass(frozen=True)
class QuotaRequest:
    request_id: str
    project: ProjectFacts  # snapshot at arrival: the allocation round orders by these facts
    county_code: str
    lines: tuple[RequestLine, ...]
    requested_at: datetime
    deadline: datetime
    state: RequestState = RequestState.REQUESTED
    approvals: frozenset[ApprovalKind] = frozenset()  # received, remembered even before reservation
    reserved_assets: frozenset[str] = frozenset()  # lines whose pending transfer the ledger confirmed
    reason: str | None = None  # why it closed (rejected / cancelled / expired)
    updated_at: datetime | None = None

    @property
    def project_id(self) -> str:
        return self.project.project_id

    @property
    def needed_approvals(self) -> frozenset[ApprovalKind]:
        return frozenset(line.approval_kind for line in self.lines)

    @property
    def line_amounts(self) -> tuple[tuple[str, int], ...]:
        return tuple((line.asset, line.amount) for line in self.lines)

    def held(self) -> dict[str, int]:
        """What this request keeps out of the pool's availability right now."""
        return dict(self.line_amounts) if self.state in HOLDING_STATES else {}


@dataclass(frozen=True)
class RequestTransition:
    request: QuotaRequest
    changed: bool
    reason: str  # why it changed, or why not ("duplicate", "request_closed", ...)
    moves: tuple[LedgerTransfer, ...] = ()  # for the ledger, in order
    events: tuple[RequestEvent, ...] = ()  # for the outbox, in order

    @property
    def allocated_now(self) -> bool:
        """True exactly once per request: the caller then consumes lots (provenance.allocate_request)."""
        return RequestEvent.ALLOCATED in self.events


def _parse_line(raw: RequestLine | Mapping[str, Any], i: int, problems: list[Problem]) -> RequestLine | None:
    asset = raw.asset if isinstance(raw, RequestLine) else raw.get("asset")
    if (p := asset_problem(asset, f"lines[{i}].asset")) is not None:
        problems.append(p)
        return None
    line_problems: list[Problem] = []
    amount = 0
    if isinstance(raw, RequestLine):  # already in smallest units
        amount, kind = raw.amount, raw.approval_kind
        if not isinstance(amount, int) or amount <= 0:
            line_problems.append(Problem("amount_must_be_positive", f"lines[{i}].amount"))
    else:
        try:
            amount = parse_amount(raw.get("amount"), ASSETS[asset].scale)
        except AmountError as e:
            line_problems.append(Problem(e.reason, f"lines[{i}].amount", str(e)))
        kind = raw.get("approval_kind") or confirming_approval(asset)
    try:
        kind = ApprovalKind(kind)
    except ValueError:
        line_problems.append(Problem("approval_kind_unknown", f"lines[{i}].approval_kind"))
    else:
        if kind is not confirming_approval(asset):
            line_problems.append(Problem("approval_kind_does_not_confirm_asset", f"lines[{i}].approval_kind",
                                         f"{asset} is confirmed by {confirming_approval(asset).value}"))
    problems.extend(line_problems)
    return None if line_problems else RequestLine(asset, amount, kind)


def open_request(
    request_id: str,
    project_id: str,
    county_code: str,
    lines: Sequence[RequestLine | Mapping[str, Any]],
    requested_at: datetime,
    projects: ProjectRegistry,
    policy: PoolPolicy,
) -> QuotaRequest:
    """A new request. Lines as parsed RequestLine or mappings {asset, amount: decimal string, approval_kind
    (optional: the asset's confirming approval)}. Only admitted projects of this county may ask; one line
    per asset. Raises QuotaDomainError with every problem."""
    if requested_at.tzinfo is None:
        raise ValueError("times are timezone-aware")
    problems: list[Problem] = []
    if not request_id:
        problems.append(Problem("request_id_missing", "request_id"))
    if county_code != policy.county_code:
        problems.append(Problem("county_not_served", "county_code", f"this pool serves {policy.county_code}"))
    project = projects.get(project_id)
    if project is None:
        problems.append(Problem("project_unknown", "project_id", "no ProjectEvaluated seen for it"))
    elif not project.admitted:
        problems.append(Problem("project_not_admitted", "project_id"))
    elif project.county_code != county_code:
        problems.append(Problem("project_in_other_county", "project_id"))
    if not lines:
        problems.append(Problem("no_lines", "lines"))
    parsed = [_parse_line(raw, i, problems) for i, raw in enumerate(lines)]
    assets = [line.asset for line in parsed if line is not None]
    if len(set(assets)) != len(assets):
        problems.append(Problem("duplicate_asset_line", "lines", "one line per asset"))
    if project is not None and project.admitted and not project.land_allowed:
        problems.extend(
            Problem("land_not_allowed_for_class", f"lines[{i}].asset",
                    f"the applicant's class {project.project_class} may have no construction land (the county's "
                    "treatment table: no new construction land for C, no industrial land for D)")
            for i, line in enumerate(parsed) if line is not None and ASSETS[line.asset].family is Family.LAND)
    if problems:
        raise QuotaDomainError(problems)
    assert project is not None
    return QuotaRequest(
        request_id=request_id,
        project=project,
        county_code=county_code,
        lines=tuple(line for line in parsed if line is not None),
        requested_at=requested_at,
        deadline=requested_at + timedelta(seconds=policy.request_wait_seconds),
        updated_at=requested_at,
    )


# ---- transitions -------------------------------------------------------------------------------

def _no_change(request: QuotaRequest, reason: str, moves: tuple[LedgerTransfer, ...] = ()) -> RequestTransition:
    return RequestTransition(request, False, reason, moves)


def _voids(request: QuotaRequest) -> tuple[LedgerTransfer, ...]:
    return void_moves(request.request_id, request.project_id, request.county_code, request.line_amounts)


def _close(request: QuotaRequest, state: RequestState, reason: str, now: datetime,
           event: RequestEvent) -> RequestTransition:
    # Whatever the ledger may hold for us is released: void every line (voids of absent ones fail harmlessly).
    moves = _voids(request) if request.state in HOLDING_STATES else ()
    closed = replace(request, state=state, reason=reason, updated_at=now)
    return RequestTransition(closed, True, reason, moves, (event,))


def _expire(request: QuotaRequest, now: datetime, reason: str) -> RequestTransition:
    waiting = request.state is RequestState.REQUESTED
    event = RequestEvent.REQUEST_EXPIRED if waiting else RequestEvent.RESERVATION_EXPIRED
    return _close(request, RequestState.EXPIRED, reason, now, event)


def _due(request: QuotaRequest, now: datetime) -> bool:
    return request.state in OPEN_STATES and now >= request.deadline


def _allocate_if_ready(request: QuotaRequest, now: datetime, events: tuple[RequestEvent, ...],
                       reason: str) -> RequestTransition:
    if request.state is RequestState.RESERVED and request.needed_approvals <= request.approvals:
        allocated = replace(request, state=RequestState.ALLOCATED, updated_at=now)
        moves = allocate_moves(request.request_id, request.project_id, request.county_code, request.line_amounts)
        return RequestTransition(allocated, True, "allocated", moves, events + (RequestEvent.ALLOCATED,))
    return RequestTransition(replace(request, updated_at=now), True, reason, (), events)


def expire_if_due(request: QuotaRequest, now: datetime) -> RequestTransition:
    """The clock's turn: run it periodically so no request waits forever."""
    if _due(request, now):
        return _expire(request, now, "deadline_passed")
    return _no_change(request, "not_due" if request.state in OPEN_STATES else "request_closed")


def begin_reserving(request: QuotaRequest, now: datetime, policy: PoolPolicy) -> RequestTransition:
    """A round granted the request: ask the ledger for the pending transfers."""
    if request.state is not RequestState.REQUESTED:
        return _no_change(request, "not_requested")
    if _due(request, now):
        return _expire(request, now, "deadline_passed")
    timeout = policy.reservation_timeout_seconds
    reserving = replace(request, state=RequestState.RESERVING, deadline=now + timedelta(seconds=timeout),
                        updated_at=now)
    # the ledger expires it a grace later than our deadline (see the module note): our own expiry voids it on time.
    # (Capped at the ledger's longest: a policy stored before its timeout was limited may be that long.)
    moves = reserve_moves(request.request_id, request.project_id, request.county_code, request.line_amounts,
                          min(timeout + LEDGER_EXPIRY_GRACE_SECONDS, LEDGER_MAX_TIMEOUT_SECONDS))
    return RequestTransition(reserving, True, "reservation_asked", moves)


def reject(request: QuotaRequest, reason: str, now: datetime) -> RequestTransition:
    """A round found the pool short (reason e.g. "insufficient_quota")."""
    if request.state is not RequestState.REQUESTED:
        return _no_change(request, "not_requested")
    return _close(request, RequestState.REJECTED, reason, now, RequestEvent.REJECTED)


def _line_asset(request: QuotaRequest, transfer_id: str) -> str | None:
    for line in request.lines:
        if reserve_transfer_id(request.request_id, line.asset) == transfer_id:
            return line.asset
    return None


def on_ledger_reserved(request: QuotaRequest, transfer_id: str, now: datetime) -> RequestTransition:
    """The ledger made the pending transfer ``transfer_id`` (one per line)."""
    asset = _line_asset(request, transfer_id)
    if asset is None:
        return _no_change(request, "unknown_transfer")
    if request.state in (RequestState.REJECTED, RequestState.CANCELLED, RequestState.EXPIRED):
        # Confirmed after we closed: release it again under a fresh id, in case our void came first.
        late = void_moves(request.request_id, request.project_id, request.county_code,
                          [(asset, dict(request.line_amounts)[asset])], late=True)
        return _no_change(request, "request_closed", late)
    if request.state is RequestState.REQUESTED:
        return _no_change(request, "not_reserving")
    if request.state is not RequestState.RESERVING or asset in request.reserved_assets:
        return _no_change(request, "duplicate")
    if _due(request, now):
        return _expire(request, now, "deadline_passed")
    seen = request.reserved_assets | {asset}
    if len(seen) < len(request.lines):
        return RequestTransition(replace(request, reserved_assets=seen, updated_at=now), True, "line_reserved")
    reserved = replace(request, state=RequestState.RESERVED, reserved_assets=seen)
    return _allocate_if_ready(reserved, now, (RequestEvent.RESERVED,), "reserved")


def on_ledger_refused(request: QuotaRequest, transfer_id: str, ledger_reason: str, now: datetime) -> RequestTransition:
    """The ledger refused a pending transfer (e.g. the pool account would go below zero)."""
    if _line_asset(request, transfer_id) is None:
        return _no_change(request, "unknown_transfer")
    if request.state is not RequestState.RESERVING:
        return _no_change(request, "not_reserving")
    return _close(request, RequestState.REJECTED, f"ledger_refused:{ledger_reason}", now, RequestEvent.REJECTED)


def on_ledger_expired(request: QuotaRequest, transfer_id: str, now: datetime) -> RequestTransition:
    """The ledger's own timeout expired a pending transfer of ours."""
    if _line_asset(request, transfer_id) is None:
        return _no_change(request, "unknown_transfer")
    if request.state not in HOLDING_STATES:
        return _no_change(request, "not_holding")
    return _expire(request, now, "ledger_expired")


LEDGER_VOIDED = "ledger_voided"


def on_ledger_voided(request: QuotaRequest, transfer_id: str, now: datetime) -> RequestTransition:
    """A pending transfer of ours was voided on the ledger by someone else (an operator through its API): the
    reservation holds nothing there any more, so it must not hold quota here either (nor be allocated later, whose
    post the ledger would refuse): cancelled, and the other lines voided too."""
    if _line_asset(request, transfer_id) is None:
        return _no_change(request, "unknown_transfer")
    if request.state not in HOLDING_STATES:
        return _no_change(request, "not_holding")
    return _close(request, RequestState.CANCELLED, LEDGER_VOIDED, now, RequestEvent.CANCELLED)


def on_approval(request: QuotaRequest, kind: ApprovalKind | str, now: datetime) -> RequestTransition:
    """A confirming approval (环评 / 能评 / 用地) for the request's project."""
    try:
        kind = ApprovalKind(kind)
    except ValueError:
        return _no_change(request, "approval_kind_unknown")
    if kind not in request.needed_approvals:
        return _no_change(request, "approval_not_needed")
    if request.state not in OPEN_STATES:
        return _no_change(request, "request_closed")
    if kind in request.approvals:
        return _no_change(request, "duplicate")
    if _due(request, now):
        return _expire(request, now, "deadline_passed")
    return _allocate_if_ready(replace(request, approvals=request.approvals | {kind}), now, (), "approval_remembered")


NOT_ADMITTED = "project_not_admitted"


def withdraw(request: QuotaRequest, now: datetime) -> RequestTransition:
    """The project is no longer admitted (a later evaluation said so): no quota for it. A waiting request is
    rejected; one that holds quota is cancelled and what it holds is voided."""
    if request.state not in OPEN_STATES:
        return _no_change(request, "request_closed")
    if request.state is RequestState.REQUESTED:
        return _close(request, RequestState.REJECTED, NOT_ADMITTED, now, RequestEvent.REJECTED)
    return _close(request, RequestState.CANCELLED, NOT_ADMITTED, now, RequestEvent.CANCELLED)


def cancel(request: QuotaRequest, now: datetime, reason: str = "cancelled") -> RequestTransition:
    if request.state not in OPEN_STATES:
        return _no_change(request, "request_closed")
    return _close(request, RequestState.CANCELLED, reason, now, RequestEvent.CANCELLED)


TOO_MANY_LOTS = "too_many_lots"


def unallocatable(tr: RequestTransition, now: datetime, reason: str = TOO_MANY_LOTS) -> RequestTransition:
    """An allocation that cannot be carried out (its QuotaAllocated, which lists every lot consumed, would be
    bigger than an event may be): the reservation is cancelled instead and voided, once, with ``reason``. The
    transition's other events stay (a reservation the ledger just confirmed was reserved, then cancelled), and
    the approvals it remembered are kept."""
    if not tr.allocated_now:
        raise ValueError("only an allocating transition can be refused")
    held = replace(tr.request, state=RequestState.RESERVED)
    closed = cancel(held, now, reason)
    events = tuple(e for e in tr.events if e is not RequestEvent.ALLOCATED) + closed.events
    return RequestTransition(closed.request, True, reason, closed.moves, events)
