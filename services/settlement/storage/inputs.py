"""Reading and writing the facts statements are computed from: agreements, policies, receipts, statistics,
quota proceeds, the enterprise register.

The ``stream_*`` methods feed ``compute_statement`` row by row from a server-side cursor (``yield_per``), so a
county-year of receipts is never held in memory at once; they already drop what the statement would skip
(other months, facts settled before the last cut-off, facts received after ``as_of``).
"""
from __future__ import annotations

import json
from datetime import datetime
from itertools import groupby
from typing import Iterator

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from services.settlement.domain import (
    BuyBack,
    ConsumedLot,
    QuotaAllocation,
    RevenueSharingAgreement,
    ScheduleStep,
    SettlementPolicy,
    StatisticsReport,
    TaxReceipt,
)
from services.settlement.domain.periods import Period
from services.settlement.storage import tables as t
from services.settlement.storage.rows import from_db, insert_or_ignore, period, to_db

STREAM_BATCH = 5000


# -- rows <-> domain ---------------------------------------------------------------------------------------

def agreement_from_row(r) -> RevenueSharingAgreement:
    stats = None
    if r.statistics_origin_weight is not None:
        stats = (r.statistics_origin_weight, r.statistics_destination_weight)
    return RevenueSharingAgreement(
        agreement_id=r.agreement_id, version=r.version, effective_from=r.effective_from, enterprise=r.enterprise,
        origin=r.origin, destination=r.destination, local_shares_bp=json.loads(r.local_shares),
        schedule=tuple(ScheduleStep(*s) for s in json.loads(r.schedule)), start=r.starts_on, end=r.ends_on,
        remainder_to=r.remainder_to, guaranteed_minimum_fen=r.guaranteed_minimum_fen, minimum_payer=r.minimum_payer,
        statistics_weights=stats, project_id=r.project_id,
    )


def agreement_row(a: RevenueSharingAgreement, county: str, by: str, now: datetime) -> dict:
    return dict(
        agreement_id=a.agreement_id, version=a.version, county_code=county, effective_from=a.effective_from,
        enterprise=a.enterprise, project_id=a.project_id, origin=a.origin, destination=a.destination,
        remainder_to=a.remainder_to, starts_on=a.start, ends_on=a.end,
        local_shares=json.dumps(dict(a.local_shares_bp), sort_keys=True),
        schedule=json.dumps([[s.first_year, s.last_year, s.origin_weight, s.destination_weight] for s in a.schedule]),
        guaranteed_minimum_fen=a.guaranteed_minimum_fen, minimum_payer=a.minimum_payer,
        statistics_origin_weight=a.statistics_weights[0] if a.statistics_weights else None,
        statistics_destination_weight=a.statistics_weights[1] if a.statistics_weights else None,
        recorded_at=to_db(now), recorded_by=by,
    )


def receipt_from_row(r) -> TaxReceipt:
    return TaxReceipt(receipt_id=r.receipt_id, enterprise=r.enterprise, month=period(r.month), tax_kind=r.tax_kind,
                      amount_fen=r.amount_fen, received_at=from_db(r.received_at), corrects=r.corrects,
                      replaced_amount_fen=r.replaced_amount_fen)


def policy_from_row(r) -> SettlementPolicy:
    return SettlementPolicy(policy_id=r.policy_id, version=r.version, county=r.county_code,
                            compensation_bp=r.compensation_bp, township_weight=r.township_weight,
                            park_weight=r.park_weight, fund_weight=r.fund_weight)


def _in_scope(month_col, received_col, p: Period, cutoff: datetime | None, as_of: datetime):
    """What a statement of ``p`` may take (``history.placement`` decides exactly; this only narrows the scan)."""
    current = and_(month_col >= p.start, month_col <= p.end)
    cond = current if cutoff is None else or_(current, and_(month_col < p.start, received_col > to_db(cutoff)))
    return and_(cond, received_col <= to_db(as_of))


class InputsRepository:
    def __init__(self, session: Session):
        self.s = session

    # -- enterprise register --------------------------------------------------------------------------
    def enterprise_known(self, credit_code: str) -> bool:
        return self.s.execute(select(t.enterprises.c.credit_code).where(t.enterprises.c.credit_code == credit_code)).first() is not None

    def remember_enterprise(self, credit_code: str, known_from: str, now: datetime, *, county: str | None = None,
                            name: str | None = None) -> None:
        insert_or_ignore(self.s, t.enterprises, [dict(credit_code=credit_code, county_code=county, name=name,
                                                       known_from=known_from, recorded_at=to_db(now))])

    # -- agreements -----------------------------------------------------------------------------------
    def agreement_rows(self, agreement_id: str) -> list:
        av = t.agreement_versions
        return self.s.execute(select(av).where(av.c.agreement_id == agreement_id).order_by(av.c.version)).all()

    def agreements_of_enterprise(self, credit_code: str) -> list[RevenueSharingAgreement]:
        av = t.agreement_versions
        return [agreement_from_row(r) for r in self.s.execute(select(av).where(av.c.enterprise == credit_code)).all()]

    def agreements_of_county(self, county: str) -> list[RevenueSharingAgreement]:
        av = t.agreement_versions
        rows = self.s.execute(select(av).where(av.c.county_code == county).execution_options(yield_per=STREAM_BATCH))
        return [agreement_from_row(r) for r in rows]

    def agreement_ids(self, *, county: str | None = None, enterprise: str | None = None, after: str = "",
                      limit: int = 100) -> list[str]:
        av = t.agreement_versions
        q = select(av.c.agreement_id).distinct().where(av.c.agreement_id > after)
        if county:
            q = q.where(av.c.county_code == county)
        if enterprise:
            q = q.where(av.c.enterprise == enterprise)
        return [r[0] for r in self.s.execute(q.order_by(av.c.agreement_id).limit(limit)).all()]

    def add_agreement(self, a: RevenueSharingAgreement, county: str, by: str, now: datetime) -> None:
        self.s.execute(t.agreement_versions.insert().values(**agreement_row(a, county, by, now)))

    # -- policy ---------------------------------------------------------------------------------------
    def latest_policy_row(self, county: str):
        sp = t.settlement_policies
        return self.s.execute(select(sp).where(sp.c.county_code == county).order_by(sp.c.version.desc()).limit(1)).first()

    def add_policy(self, p: SettlementPolicy, by: str, now: datetime) -> None:
        self.s.execute(t.settlement_policies.insert().values(
            county_code=p.county, version=p.version, policy_id=p.policy_id, compensation_bp=p.compensation_bp,
            township_weight=p.township_weight, park_weight=p.park_weight, fund_weight=p.fund_weight,
            recorded_at=to_db(now), recorded_by=by))

    # -- tax receipts ---------------------------------------------------------------------------------
    def receipt_row(self, receipt_id: str, *, for_update: bool = False):
        q = select(t.tax_receipts).where(t.tax_receipts.c.receipt_id == receipt_id)
        return self.s.execute(q.with_for_update() if for_update else q).first()

    def add_receipt(self, r: TaxReceipt, channel: str, event_id: str | None) -> None:
        self.s.execute(t.tax_receipts.insert().values(
            receipt_id=r.receipt_id, enterprise=r.enterprise, month=r.month.label, month_start=r.month.start,
            tax_kind=r.tax_kind, amount_fen=r.amount_fen, corrects=r.corrects, replaced_amount_fen=r.replaced_amount_fen,
            corrected_by=None, received_at=to_db(r.received_at), channel=channel, event_id=event_id))
        if r.corrects:
            self.s.execute(t.tax_receipts.update().where(t.tax_receipts.c.receipt_id == r.corrects)
                           .values(corrected_by=r.receipt_id))

    def receipts(self, *, enterprise: str | None = None, month: str | None = None, after: str = "",
                 limit: int = 100) -> list:
        tr = t.tax_receipts
        q = select(tr).where(tr.c.receipt_id > after)
        if enterprise:
            q = q.where(tr.c.enterprise == enterprise)
        if month:
            q = q.where(tr.c.month == month)
        return self.s.execute(q.order_by(tr.c.receipt_id).limit(limit)).all()

    def _county_enterprises(self, county: str):
        av = t.agreement_versions
        return select(av.c.enterprise).where(av.c.county_code == county).distinct()

    def stream_receipts(self, county: str, p: Period, cutoff: datetime | None, as_of: datetime) -> Iterator[TaxReceipt]:
        tr = t.tax_receipts
        cols = (tr.c.receipt_id, tr.c.enterprise, tr.c.month, tr.c.tax_kind, tr.c.amount_fen, tr.c.received_at,
                tr.c.corrects, tr.c.replaced_amount_fen)
        q = (select(*cols).where(tr.c.enterprise.in_(self._county_enterprises(county)))
             .where(_in_scope(tr.c.month_start, tr.c.received_at, p, cutoff, as_of)))
        for r in self.s.execute(q.execution_options(yield_per=STREAM_BATCH)):
            yield receipt_from_row(r)

    # -- statistics -----------------------------------------------------------------------------------
    def statistics_row(self, report_id: str):
        return self.s.execute(select(t.statistics_reports).where(t.statistics_reports.c.report_id == report_id)).first()

    def add_statistics(self, r: StatisticsReport, channel: str) -> None:
        self.s.execute(t.statistics_reports.insert().values(
            report_id=r.report_id, enterprise=r.enterprise, month=r.month.label, month_start=r.month.start,
            measure=r.measure, amount_fen=r.amount_fen, received_at=to_db(r.received_at), channel=channel))

    def stream_statistics(self, county: str, p: Period, cutoff: datetime | None, as_of: datetime) -> Iterator[StatisticsReport]:
        sr = t.statistics_reports
        q = (select(sr).where(sr.c.enterprise.in_(self._county_enterprises(county)))
             .where(_in_scope(sr.c.month_start, sr.c.received_at, p, cutoff, as_of)))
        for r in self.s.execute(q.execution_options(yield_per=STREAM_BATCH)):
            yield StatisticsReport(report_id=r.report_id, enterprise=r.enterprise, month=period(r.month),
                                   measure=r.measure, amount_fen=r.amount_fen, received_at=from_db(r.received_at))

    # -- quota proceeds -------------------------------------------------------------------------------
    def add_lot(self, row: dict) -> None:
        insert_or_ignore(self.s, t.quota_lots, [row])

    def allocation_row(self, allocation_id: str):
        return self.s.execute(select(t.quota_allocations).where(t.quota_allocations.c.allocation_id == allocation_id)).first()

    def add_allocation(self, a: QuotaAllocation, county: str, request_id: str, event_id: str) -> None:
        self.s.execute(t.quota_allocations.insert().values(
            allocation_id=a.allocation_id, county_code=county, request_id=request_id, project_id=a.project_id,
            asset=a.asset, amount_units=a.amount_units, price=a.price, amount_due_fen=a.amount_due_fen,
            destination=a.destination, allocated_on=a.allocated_on, received_at=to_db(a.received_at),
            event_id=event_id))
        self.s.execute(t.allocation_lots.insert(), [
            dict(allocation_id=a.allocation_id, lot_id=lot.lot_id, enterprise=lot.enterprise, township=lot.township,
                 units=lot.units) for lot in a.lots])

    def stream_allocations(self, county: str, p: Period, cutoff: datetime | None, as_of: datetime) -> Iterator[QuotaAllocation]:
        qa, al = t.quota_allocations, t.allocation_lots
        q = (select(qa, al.c.lot_id, al.c.enterprise.label("lot_enterprise"), al.c.township, al.c.units)
             .join(al, al.c.allocation_id == qa.c.allocation_id)
             .where(qa.c.county_code == county)
             .where(_in_scope(qa.c.allocated_on, qa.c.received_at, p, cutoff, as_of))
             .order_by(qa.c.allocation_id, al.c.lot_id))
        rows = self.s.execute(q.execution_options(yield_per=STREAM_BATCH))
        for _, group in groupby(rows, key=lambda r: r.allocation_id):  # ordered: one allocation's lots in a row
            group = list(group)
            r = group[0]
            yield QuotaAllocation(
                allocation_id=r.allocation_id, project_id=r.project_id, asset=r.asset, amount_units=r.amount_units,
                price=r.price, amount_due_fen=r.amount_due_fen, destination=r.destination,
                lots=tuple(ConsumedLot(g.lot_id, g.lot_enterprise, g.township, g.units) for g in group),
                allocated_on=r.allocated_on, received_at=from_db(r.received_at))

    def buyback_row(self, buyback_id: str):
        return self.s.execute(select(t.buybacks).where(t.buybacks.c.buyback_id == buyback_id)).first()

    def add_buyback(self, b: BuyBack, county: str, event_id: str) -> None:
        self.s.execute(t.buybacks.insert().values(
            buyback_id=b.buyback_id, county_code=county, enterprise=b.enterprise, lot_id=b.lot_id,
            amount_fen=b.amount_fen, agreed_on=b.agreed_on, received_at=to_db(b.received_at), event_id=event_id))

    def stream_buybacks(self, county: str, p: Period, cutoff: datetime | None, as_of: datetime) -> Iterator[BuyBack]:
        bb = t.buybacks
        q = select(bb).where(bb.c.county_code == county).where(_in_scope(bb.c.agreed_on, bb.c.received_at, p, cutoff, as_of))
        for r in self.s.execute(q.execution_options(yield_per=STREAM_BATCH)):
            yield BuyBack(buyback_id=r.buyback_id, enterprise=r.enterprise, lot_id=r.lot_id, amount_fen=r.amount_fen,
                          agreed_on=r.agreed_on, received_at=from_db(r.received_at))

    def count(self, table_name: str) -> int:
        return self.s.execute(select(func.count()).select_from(t.metadata.tables[table_name])).scalar_one()
