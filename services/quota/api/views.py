"""Rows and domain objects -> response bodies (amounts as decimal strings in the asset's unit)."""
from __future__ import annotations

from services.quota.api import schemas as s
from services.quota.application.formats import cny, cny_or_none, qty
from services.quota.application.pool import CountyPool
from services.quota.application.policy_codec import policy_to_doc
from services.quota.application.reconciliation import Reconciliation
from services.quota.domain.assets import ASSETS
from services.quota.domain.requests import HOLDING_STATES, QuotaRequest
from services.quota.storage.counties import CountyPolicy
from services.quota.storage.sql import loads, utc


def policy_out(cp: CountyPolicy) -> s.PolicyOut:
    doc = policy_to_doc(cp.policy)
    prices = {a: cny(f) for a, f in doc.pop("price_fen_per_unit").items()}
    return s.PolicyOut(county_code=cp.policy.county_code, version=cp.version, updated_at=cp.updated_at,
                       updated_by=cp.updated_by, prices=prices, **doc)


def release_out(r) -> s.ReleaseOut:
    return s.ReleaseOut(
        release_id=r.release_id, county_code=r.county_code, enterprise_credit_code=r.enterprise_credit_code,
        township_code=r.township_code, asset=r.asset, amount=qty(r.asset, r.amount), reason=r.reason, basis=r.basis,
        buyback_price_per_unit=cny_or_none(r.buyback_price_fen), document_ref=r.document_ref,
        released_on=r.released_on, department=r.department, status=r.status, status_reason=r.status_reason,
        lot_id=f"release:{r.release_id}" if r.status == "accepted" else None)


def reclamation_out(r) -> s.ReclamationOut:
    return s.ReclamationOut(
        project_id=r.project_id, county_code=r.county_code, township_code=r.township_code, area=qty("LAND", r.area),
        registered_on=r.registered_on, state=r.state, accepted_on=r.accepted_on,
        accepted_area=qty("LAND", r.accepted_area) if r.accepted_area is not None else None,
        lot_id=f"reclamation:{r.project_id}" if r.state == "accepted" else None)


def request_out(req: QuotaRequest, transfers: list | None = None) -> s.QuotaRequestOut:
    return s.QuotaRequestOut(
        request_id=req.request_id, project_id=req.project_id, county_code=req.county_code, state=req.state.value,
        reason=req.reason,
        lines=[s.RequestLineOut(asset=l.asset, amount=qty(l.asset, l.amount), approval_kind=l.approval_kind.value,
                                # what the ledger holds for it now: nothing once the request closed
                                reserved=l.asset in req.reserved_assets and req.state in HOLDING_STATES)
               for l in req.lines],
        approvals=sorted(a.value for a in req.approvals), requested_at=req.requested_at, deadline=req.deadline,
        updated_at=req.updated_at,
        ledger_transfers=[s.LedgerTransferOut(transfer_id=t.transfer_id, purpose=t.purpose, asset=t.asset,
                                              amount=qty(t.asset, t.amount), state=t.state,
                                              ledger_reason=t.ledger_reason) for t in (transfers or [])])


def pool_assets(pool: CountyPool) -> list[s.PoolAssetOut]:
    return [s.PoolAssetOut(asset=a, unit=ASSETS[a].unit, released=qty(a, f.released), retired=qty(a, f.retired),
                           allocated=qty(a, f.allocated), reserved=qty(a, f.reserved), available=qty(a, f.available),
                           incoming=qty(a, pool.incoming[a]))
            for a, f in pool.figures.items()]


def lot_out(r) -> s.LotOut:
    a = r.asset
    return s.LotOut(lot_id=r.lot_id, county_code=r.county_code, asset=a, amount=qty(a, r.amount),
                    retired=qty(a, r.retired), allocated=qty(a, r.amount - r.retired - r.remaining),
                    remaining=qty(a, r.remaining), source_kind=r.source_kind, source_ref=r.source_ref,
                    township_code=r.township_code, dated=r.dated, basis=r.basis,
                    buyback_price_per_unit=cny_or_none(r.buyback_price_fen), ledger_state=r.ledger_state,
                    earns_compensation=r.earns_compensation)


def consumption_out(c) -> s.ConsumptionOut:
    return s.ConsumptionOut(request_id=c.request_id, project_id=c.project_id, lot_id=c.lot_id, asset=c.asset,
                            amount=qty(c.asset, c.amount), amount_due=cny(c.amount_due_fen), source_kind=c.source_kind,
                            source_ref=c.source_ref, township_code=c.township_code, allocated_at=utc(c.allocated_at),
                            earns_compensation=c.earns_compensation)


def round_out(row, decisions: list, reproducible: bool | None = None) -> s.RoundOut:
    inputs = loads(row.inputs)
    closed = inputs.get("closed_before", {})  # recorded since rounds keep it; older rounds: not known
    return s.RoundOut(
        round_id=row.round_id, county_code=row.county_code, seq=row.seq, ran_at=utc(row.ran_at), ran_by=row.ran_by,
        policy_version=row.policy_version,
        available_before={a: qty(a, n) for a, n in inputs["available"].items()},
        decisions=[s.DecisionOut(
            rank=d.rank, request_id=d.request_id, outcome=d.outcome, reason=d.reason,
            ordered_by=[[str(k), str(v)] for k, v in loads(d.ordered_by)],
            shortfalls=[s.ShortfallOut(asset=x["asset"], requested=qty(x["asset"], x["requested"]),
                                       available=qty(x["asset"], x["available"])) for x in loads(d.shortfalls)])
            for d in decisions],
        expired_before=list(closed.get("expired", ())), withdrawn_before=list(closed.get("withdrawn", ())),
        reproducible=reproducible)


def reconciliation_out(rep: Reconciliation) -> s.ReconciliationOut:
    return s.ReconciliationOut(
        county_code=rep.county_code, agrees=rep.agrees, settled=rep.settled, in_flight=rep.in_flight, stuck=rep.stuck,
        differences=[s.DifferenceOut(asset=d.asset, figure=d.figure, ours=qty(d.asset, d.ours),
                                     ledger=qty(d.asset, d.ledger), difference=qty(d.asset, d.diff))
                     for d in rep.differences],
        ours=pool_assets(rep.ours))
