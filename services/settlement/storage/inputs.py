"""Reading and writing the facts statements are computed from: agreements, policies, receipts, statistics,
quota proceeds, the enterprise register.

Receipts and statistics reach a statement summed per month by the database (``sums``); allocations and buy-backs
are streamed (``stream_*``). All of them are narrowed to what the statement may take (``in_scope``: later months,
facts settled before the last cut-off, facts received after ``as_of`` stay out).
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from typing import Iterator

from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.orm import Session

from shared.bulk import id_in

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
from services.settlement.storage.rows import fetch_rows, from_db, insert_or_ignore, period, to_db

STREAM_BATCH = 5000


# -- rows <-> domain ---------------------------------------------------------------------------------------

@lru_cache(maxsize=1024)  # a county's agreements follow a few templates: parse each text once
def _schedule(text: str) -> tuple[ScheduleStep, ...]:
    return tuple(ScheduleStep(*s) for s in json.loads(text))


def agreement_from_row(r) -> RevenueSharingAgreement:
    stats = None
    if r.statistics_origin_weight is not None:
        stats = (r.statistics_origin_weight, r.statistics_destination_weight)
    return RevenueSharingAgreement(
        agreement_id=r.agreement_id, version=r.version, effective_from=r.effective_from, enterprise=r.enterprise,
        origin=r.origin, destination=r.destination, local_shares_bp=json.loads(r.local_shares),
        schedule=_schedule(r.schedule), start=r.starts_on, end=r.ends_on,
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


_new = tuple.__new__


def allocations_of(rows: list[tuple]) -> Iterator[QuotaAllocation]:
    """``InputsRepository.allocation_rows`` (ordered: an allocation's lots in a row) as allocations."""
    for _, group in groupby(rows, key=itemgetter(0)):
        group = list(group)
        aid, project_id, asset, units, price, due, destination, on, received_at = group[0][:9]
        yield QuotaAllocation(
            allocation_id=aid, project_id=project_id, asset=asset, amount_units=units, price=price,
            amount_due_fen=due, destination=destination, allocated_on=on, received_at=from_db(received_at),
            lots=tuple([_new(ConsumedLot, g[9:13]) for g in group]))


def policy_from_row(r) -> SettlementPolicy:
    return SettlementPolicy(policy_id=r.policy_id, version=r.version, county=r.county_code,
                            compensation_bp=r.compensation_bp, township_weight=r.township_weight,
                            park_weight=r.park_weight, fund_weight=r.fund_weight, effective_from=r.effective_from)


def in_scope(month_col, received_col, p: Period, cutoff: datetime | None, as_of: datetime):
    """What a statement of ``p`` may take (``history.placement`` decides exactly; this only narrows the scan).
    Before any period is closed nothing has settled an earlier month's fact, so the first statement takes them all
    (as late facts): leaving them out would leave them out for good, the next cut-off being after them."""
    if cutoff is None:
        return and_(month_col <= p.end, received_col <= to_db(as_of))
    current = and_(month_col >= p.start, month_col <= p.end)
    late = and_(month_col < p.start, received_col > to_db(cutoff))
    return and_(or_(current, late), received_col <= to_db(as_of))


class InputsRepository:
    def __init__(self, session: Session):
        self.s = session

    # -- enterprise register --------------------------------------------------------------------------
    def enterprise_known(self, credit_code: str) -> bool:
        return self.s.execute(select(t.enterprises.c.credit_code).where(t.enterprises.c.credit_code == credit_code)).first() is not None

    def known_among(self, codes: list[str]) -> set[str]:
        e = t.enterprises
        out: set[str] = set()
        for i in range(0, len(codes), 500):
            out.update(self.s.execute(select(e.c.credit_code).where(e.c.credit_code.in_(codes[i:i + 500]))).scalars())
        return out

    def remember_enterprise(self, credit_code: str, known_from: str, now: datetime, *, county: str | None = None,
                            name: str | None = None) -> None:
        self.remember_enterprises([(credit_code, county, name)], known_from, now)

    def remember_enterprises(self, enterprises: list[tuple[str, str | None, str | None]], known_from: str,
                             now: datetime) -> None:
        """(credit code, county, name) of each; the first to be known stays as it was."""
        if enterprises:
            insert_or_ignore(self.s, t.enterprises, [dict(credit_code=code, county_code=county, name=name,
                                                          known_from=known_from, recorded_at=to_db(now))
                                                     for code, county, name in enterprises])

    # -- inputs waiting for their enterprise ---------------------------------------------------------------
    def waiting_row(self, kind: str, input_id: str):
        w = t.waiting_inputs
        return self.s.execute(select(w).where(w.c.kind == kind, w.c.input_id == input_id)).first()

    def add_waiting(self, kind: str, input_id: str, enterprise: str, payload: str, event_id: str | None,
                    now: datetime) -> None:
        self.s.execute(t.waiting_inputs.insert().values(kind=kind, input_id=input_id, enterprise=enterprise,
                                                        payload=payload, event_id=event_id, waiting_since=to_db(now)))

    def waiting_of(self, codes: list[str]) -> list:
        """Those still waiting (not refused) of these enterprises, in the order they came."""
        w = t.waiting_inputs
        rows = []
        for i in range(0, len(codes), 500):
            rows += self.s.execute(select(w).where(w.c.enterprise.in_(codes[i:i + 500]), w.c.refused_reason.is_(None))
                                   .with_for_update()).all()
        return sorted(rows, key=lambda r: (from_db(r.waiting_since), r.kind, r.input_id))

    def drop_waiting(self, kind: str, input_id: str) -> None:
        w = t.waiting_inputs
        self.s.execute(w.delete().where(w.c.kind == kind, w.c.input_id == input_id))

    def refuse_waiting(self, kind: str, input_id: str, reason: str, message: str, now: datetime) -> None:
        w = t.waiting_inputs
        self.s.execute(w.update().where(w.c.kind == kind, w.c.input_id == input_id)
                       .values(refused_reason=reason, refused_message=message[:2000], refused_at=to_db(now)))

    def waiting(self, *, enterprise: str | None = None, refused: bool | None = None, after: tuple[str, str] = ("", ""),
                limit: int = 100) -> list:
        w = t.waiting_inputs
        q = select(w).where(tuple_(w.c.kind, w.c.input_id) > tuple_(*after))
        if enterprise:
            q = q.where(w.c.enterprise == enterprise)
        if refused is not None:
            q = q.where(w.c.refused_reason.is_not(None) if refused else w.c.refused_reason.is_(None))
        return self.s.execute(q.order_by(w.c.kind, w.c.input_id).limit(limit)).all()

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

    def recorded_between(self, county: str, since: datetime, until: datetime) -> bool:
        """Whether any fact a statement of the county reads — agreement, policy, receipt, statistic, allocation,
        buy-back — was recorded after ``since`` and by ``until`` (facts are only ever added)."""
        lo, hi = to_db(since), to_db(until)
        av, sp, tr, sr = t.agreement_versions, t.settlement_policies, t.tax_receipts, t.statistics_reports
        qa, bb = t.quota_allocations, t.buybacks
        enterprises = select(av.c.enterprise).where(av.c.county_code == county)
        probes = (
            select(av.c.agreement_id).where(av.c.county_code == county, av.c.recorded_at > lo, av.c.recorded_at <= hi),
            select(sp.c.policy_id).where(sp.c.county_code == county, sp.c.recorded_at > lo, sp.c.recorded_at <= hi),
            select(tr.c.receipt_id).where(tr.c.received_at > lo, tr.c.received_at <= hi, tr.c.enterprise.in_(enterprises)),
            select(sr.c.report_id).where(sr.c.received_at > lo, sr.c.received_at <= hi, sr.c.enterprise.in_(enterprises)),
            select(qa.c.allocation_id).where(qa.c.county_code == county, qa.c.received_at > lo, qa.c.received_at <= hi),
            select(bb.c.buyback_id).where(bb.c.county_code == county, bb.c.received_at > lo, bb.c.received_at <= hi),
        )
        return any(self.s.execute(q.limit(1)).first() is not None for q in probes)

    # -- policy ---------------------------------------------------------------------------------------
    def latest_policy_row(self, county: str):
        """The version with the latest ``effective_from``, of a month's two the later (``PolicyBook``): the one that
        applies from then on, maybe from a later month. Not the one recorded last: that may take effect before it."""
        sp = t.settlement_policies
        return self.s.execute(select(sp).where(sp.c.county_code == county).order_by(
            sp.c.effective_from.is_(None), sp.c.effective_from.desc(), sp.c.version.desc()).limit(1)).first()

    def policy_rows(self, county: str) -> list:
        """Every version of the county's policy, by version (``PolicyBook`` picks the one in force)."""
        sp = t.settlement_policies
        return self.s.execute(select(sp).where(sp.c.county_code == county).order_by(sp.c.version)).all()

    def add_policy(self, p: SettlementPolicy, by: str, now: datetime) -> None:
        self.s.execute(t.settlement_policies.insert().values(
            county_code=p.county, version=p.version, policy_id=p.policy_id, compensation_bp=p.compensation_bp,
            township_weight=p.township_weight, park_weight=p.park_weight, fund_weight=p.fund_weight,
            effective_from=p.effective_from, recorded_at=to_db(now), recorded_by=by))

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

    # -- statistics -----------------------------------------------------------------------------------
    def statistics_row(self, report_id: str):
        return self.s.execute(select(t.statistics_reports).where(t.statistics_reports.c.report_id == report_id)).first()

    def add_statistics(self, r: StatisticsReport, channel: str) -> None:
        self.s.execute(t.statistics_reports.insert().values(
            report_id=r.report_id, enterprise=r.enterprise, month=r.month.label, month_start=r.month.start,
            measure=r.measure, amount_fen=r.amount_fen, received_at=to_db(r.received_at), channel=channel))

    # -- quota proceeds -------------------------------------------------------------------------------
    def add_lots(self, rows: list[dict]) -> None:
        insert_or_ignore(self.s, t.quota_lots, rows)

    def allocation_row(self, allocation_id: str):
        return self.s.execute(select(t.quota_allocations).where(t.quota_allocations.c.allocation_id == allocation_id)).first()

    def allocation_lots(self, allocation_id: str) -> list[ConsumedLot]:
        """The lots of a recorded allocation, by lot id (sorted here: a collation may order text otherwise)."""
        al = t.allocation_lots
        rows = self.s.execute(select(al.c.lot_id, al.c.enterprise, al.c.township, al.c.units)
                              .where(al.c.allocation_id == allocation_id)).all()
        return sorted((ConsumedLot(*r) for r in rows), key=lambda lot: lot.lot_id)

    def add_allocation(self, a: QuotaAllocation, county: str, request_id: str, event_id: str) -> None:
        self.s.execute(t.quota_allocations.insert().values(
            allocation_id=a.allocation_id, county_code=county, request_id=request_id, project_id=a.project_id,
            asset=a.asset, amount_units=a.amount_units, price=a.price, amount_due_fen=a.amount_due_fen,
            destination=a.destination, allocated_on=a.allocated_on, received_at=to_db(a.received_at),
            event_id=event_id))
        self.s.execute(t.allocation_lots.insert(), [
            dict(allocation_id=a.allocation_id, lot_id=lot.lot_id, enterprise=lot.enterprise, township=lot.township,
                 units=lot.units) for lot in a.lots])

    def allocation_rows(self, county: str, p: Period, cutoff: datetime | None, as_of: datetime) -> list[tuple]:
        """The allocations a statement may take, with their lots, as rows (``allocations_of`` makes them
        allocations): read in one go, so the connection is free for the statement's lines afterwards."""
        qa, al = t.quota_allocations, t.allocation_lots
        q = (select(qa.c.allocation_id, qa.c.project_id, qa.c.asset, qa.c.amount_units, qa.c.price, qa.c.amount_due_fen,
                    qa.c.destination, qa.c.allocated_on, qa.c.received_at, al.c.lot_id, al.c.enterprise, al.c.township,
                    al.c.units)
             .join(al, al.c.allocation_id == qa.c.allocation_id)
             .where(qa.c.county_code == county)
             .where(in_scope(qa.c.allocated_on, qa.c.received_at, p, cutoff, as_of))
             .order_by(qa.c.allocation_id, al.c.lot_id))
        return list(fetch_rows(self.s, q))

    def buyback_rows(self, buyback_ids: list[str]) -> list:
        if not buyback_ids:
            return []
        bb = t.buybacks
        return self.s.execute(select(bb).where(id_in(bb.c.buyback_id, buyback_ids, self.s))).all()

    def add_buybacks(self, buybacks: list[tuple[BuyBack, str, str]]) -> None:
        """(buy-back, county, event id) of each; new ids only (the caller looked them up under the intake lock)."""
        if buybacks:
            self.s.execute(t.buybacks.insert(), [
                dict(buyback_id=b.buyback_id, county_code=county, enterprise=b.enterprise, lot_id=b.lot_id,
                     amount_fen=b.amount_fen, agreed_on=b.agreed_on, received_at=to_db(b.received_at),
                     event_id=event_id) for b, county, event_id in buybacks])

    def stream_buybacks(self, county: str, p: Period, cutoff: datetime | None, as_of: datetime) -> Iterator[BuyBack]:
        bb = t.buybacks
        q = select(bb).where(bb.c.county_code == county).where(in_scope(bb.c.agreed_on, bb.c.received_at, p, cutoff, as_of))
        for r in self.s.execute(q.execution_options(yield_per=STREAM_BATCH)):
            yield BuyBack(buyback_id=r.buyback_id, enterprise=r.enterprise, lot_id=r.lot_id, amount_fen=r.amount_fen,
                          agreed_on=r.agreed_on, received_at=from_db(r.received_at))

    def count(self, table_name: str) -> int:
        return self.s.execute(select(func.count()).select_from(t.metadata.tables[table_name])).scalar_one()
