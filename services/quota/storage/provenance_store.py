"""Rows of allocations and the lot consumptions behind them (every allocated unit -> its lot)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.china_time import cst_date
from services.quota.domain.provenance import AllocationProvenance
from services.quota.storage.tables import allocations, consumptions


def record_allocation(session: Session, prov: AllocationProvenance, county_code: str, lines: dict[str, int],
                      prices: dict[str, int], now: datetime) -> None:
    session.execute(consumptions.insert(), [
        dict(request_id=c.request_id, project_id=c.project_id, county_code=county_code, lot_id=c.lot_id,
             asset=c.asset, source_kind=c.source_kind.value, source_ref=c.source_ref, township_code=c.township_code,
             amount=c.amount, amount_due_fen=c.amount_due_fen, allocated_at=now,
             earns_compensation=c.earns_compensation)
        for c in prov.consumptions])
    session.execute(allocations.insert(), [
        dict(request_id=prov.request_id, asset=asset, project_id=prov.project_id, county_code=county_code,
             amount=amount, price_fen_per_unit=prices[asset], amount_due_fen=prov.due_fen_by_asset[asset],
             allocated_on=cst_date(now), allocated_at=now)
        for asset, amount in lines.items()])


def consumptions_where(session: Session, *, project_id: str | None = None, request_id: str | None = None,
                       lot_ids: list[str] | None = None) -> list:
    q = select(consumptions)
    if project_id is not None:
        q = q.where(consumptions.c.project_id == project_id)
    if request_id is not None:
        q = q.where(consumptions.c.request_id == request_id)
    if lot_ids is not None:
        if not lot_ids:
            return []
        q = q.where(consumptions.c.lot_id.in_(lot_ids))
    return session.execute(q.order_by(consumptions.c.id)).all()


def allocations_where(session: Session, *, project_id: str | None = None, request_id: str | None = None) -> list:
    q = select(allocations)
    if project_id is not None:
        q = q.where(allocations.c.project_id == project_id)
    if request_id is not None:
        q = q.where(allocations.c.request_id == request_id)
    return session.execute(q.order_by(allocations.c.request_id, allocations.c.asset)).all()
