"""Carrying out a request's transition: store the new state, send the ledger moves it implies, publish
its events, and on allocation consume lots (provenance) and publish what is due."""
from __future__ import annotations

import functools
import logging

from shared.china_time import cst_date
from shared.metrics import when_committed
from services.quota.application.allocations import (
    ALLOCATED_EVENT_BYTES, PlannedAllocation, event_bytes, plan_allocation,
)
from services.quota.application.ledger_commands import send_moves
from services.quota.application.request_events import transition_event
from services.quota.application.tx import Tx
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.requests import (
    TOO_MANY_LOTS, QuotaRequest, RequestEvent, RequestTransition, unallocatable, withdraw,
)
from services.quota.metrics import RESERVE_LATENCY, SAGA_TRANSITIONS
from services.quota.storage import intake_store, provenance_store, request_store

log = logging.getLogger(__name__)


def carry_out(tx: Tx, policy: PoolPolicy, tr: RequestTransition) -> RequestTransition:
    """Call under the county's lock. A transition that changed nothing may still carry moves (a late void).
    An allocation whose QuotaAllocated would be too big to write becomes the reservation's cancellation
    (``too_many_lots``, see application/allocations.py); the transition carried out is returned."""
    planned = None
    if tr.allocated_now:
        planned = _plan(tx, policy, tr.request)
        if too_large := planned.too_large():
            log.warning("request %s cannot be allocated: its QuotaAllocated of %s would list %d lots in %d bytes "
                        "(at most %d); its reservation is cancelled (%s)", tr.request.request_id, too_large[0].asset,
                        len(too_large[0].lots), event_bytes(too_large[0]), ALLOCATED_EVENT_BYTES, TOO_MANY_LOTS)
            tr, planned = unallocatable(tr, tx.now, TOO_MANY_LOTS), None
    req = tr.request
    if tr.changed:
        reserved_now = RequestEvent.RESERVED in tr.events
        if request_store.save_request(tx.session, req, reserved_at=tx.now if reserved_now else None):
            # a change of state (not a line reserved or an approval remembered), counted once committed: a batch
            # retried, or applied again one message at a time, counted twice
            when_committed(tx.session, SAGA_TRANSITIONS.labels(req.state.value).inc)
        if reserved_now:
            when_committed(tx.session, functools.partial(
                RESERVE_LATENCY.observe, max(0.0, (tx.now - req.requested_at).total_seconds())))
    send_moves(tx, tr.moves, county_code=req.county_code, request_id=req.request_id)
    for kind in tr.events:
        if kind is RequestEvent.ALLOCATED:
            _allocate(tx, req, planned)
        else:
            tx.emit(transition_event(kind, req), req.request_id)
    return tr


def unless_withdrawn(tx: Tx, before: QuotaRequest, tr: RequestTransition) -> RequestTransition:
    """No quota for a project no longer admitted: a transition of ``before`` that would allocate becomes its
    withdrawal instead (reservation voided). Read under the county's lock, which a withdrawal also holds."""
    if tr.allocated_now and not request_store.project_admitted(tx.session, before.project_id):
        return withdraw(before, tx.now)
    return tr


def _plan(tx: Tx, policy: PoolPolicy, req: QuotaRequest) -> PlannedAllocation:
    lots = intake_store.grantable_lots(tx.session, req.county_code, sorted(dict(req.line_amounts)))
    row = request_store.request_row(tx.session, req.request_id)
    return plan_allocation(req, lots, policy, row.park_id if row is not None else None,
                           cst_date(tx.now))  # the county's day, as settlement's periods


def _allocate(tx: Tx, req: QuotaRequest, planned: PlannedAllocation) -> None:
    prov = planned.provenance
    intake_store.save_lot_remaining(tx.session, list(prov.lots))
    provenance_store.record_allocation(tx.session, prov, req.county_code, dict(req.line_amounts),
                                       dict(planned.prices), tx.now)
    for event in planned.events:
        tx.emit(event, req.request_id)
