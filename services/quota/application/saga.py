"""Carrying out a request's transition: store the new state, send the ledger moves it implies, publish
its events, and on allocation consume lots (provenance) and publish what is due."""
from __future__ import annotations

from shared.contracts.quota import ConsumedLotOut, QuotaAllocated
from services.quota.application.formats import cny, qty
from services.quota.application.ledger_commands import send_moves
from services.quota.application.request_events import transition_event
from services.quota.application.tx import Tx
from services.quota.domain.lots import SourceKind
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.provenance import allocate_request
from services.quota.domain.requests import QuotaRequest, RequestEvent, RequestTransition, withdraw
from services.quota.metrics import RESERVE_LATENCY, SAGA_TRANSITIONS
from services.quota.storage import intake_store, provenance_store, request_store

# LotCreated / QuotaAllocated speak of where a lot came from as "release" or "reclamation".
SOURCE_KIND_OUT = {SourceKind.ENTERPRISE: "release", SourceKind.RECLAMATION: "reclamation"}


def carry_out(tx: Tx, policy: PoolPolicy, tr: RequestTransition) -> RequestTransition:
    """Call under the county's lock. A transition that changed nothing may still carry moves (a late void)."""
    req = tr.request
    if tr.changed:
        reserved_now = RequestEvent.RESERVED in tr.events
        request_store.save_request(tx.session, req, reserved_at=tx.now if reserved_now else None)
        SAGA_TRANSITIONS.labels(req.state.value).inc()
        if reserved_now:
            RESERVE_LATENCY.observe(max(0.0, (tx.now - req.requested_at).total_seconds()))
    send_moves(tx, tr.moves, county_code=req.county_code, request_id=req.request_id)
    for kind in tr.events:
        if kind is RequestEvent.ALLOCATED:
            _allocate(tx, policy, req)
        else:
            tx.emit(transition_event(kind, req), req.request_id)
    return tr


def unless_withdrawn(tx: Tx, before: QuotaRequest, tr: RequestTransition) -> RequestTransition:
    """No quota for a project no longer admitted: a transition of ``before`` that would allocate becomes its
    withdrawal instead (reservation voided). Read under the county's lock, which a withdrawal also holds."""
    if tr.allocated_now and not request_store.project_admitted(tx.session, before.project_id):
        return withdraw(before, tx.now)
    return tr


def _allocate(tx: Tx, policy: PoolPolicy, req: QuotaRequest) -> None:
    lines = dict(req.line_amounts)
    lots = intake_store.grantable_lots(tx.session, req.county_code, sorted(lines))
    prov = allocate_request(req, lots, policy)
    intake_store.save_lot_remaining(tx.session, list(prov.lots))
    prices = {asset: policy.price(asset) for asset in lines}
    provenance_store.record_allocation(tx.session, prov, req.county_code, lines, prices, tx.now)
    row = request_store.request_row(tx.session, req.request_id)
    for asset, amount in req.line_amounts:
        consumed = [c for c in prov.consumptions if c.asset == asset]
        tx.emit(QuotaAllocated(
            request_id=req.request_id, project_id=req.project_id, county_code=req.county_code, asset=asset,
            amount=qty(asset, amount), price_per_unit=cny(prices[asset]), amount_due=cny(prov.due_fen_by_asset[asset]),
            park_id=row.park_id if row is not None else None, allocated_on=tx.now.date(),
            lots=[ConsumedLotOut(lot_id=c.lot_id, source_kind=SOURCE_KIND_OUT[c.source_kind], source_ref=c.source_ref,
                                 township_code=c.township_code, amount=qty(asset, c.amount),
                                 amount_due=cny(c.amount_due_fen)) for c in consumed],
        ), req.request_id)
