"""Statements at rest: header, lines, party totals, statistics totals; the history finalized statements leave
behind (settled months of tax and statistics, top-ups, cut-offs); the ledger postings they asked for.

A finalized statement's rows are written once, in the transaction that finalizes it, and never touched again.
A draft's rows are replaced by every re-run.
"""
from __future__ import annotations

import json
from datetime import datetime
from contextlib import contextmanager
from typing import Callable, Iterator

from sqlalchemy import JSON, and_, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from services.settlement.domain import (
    ClosedPeriod,
    LineKind,
    Posting,
    SettledMonth,
    SettledStatistic,
    SettledTopup,
    SettlementHistory,
    Statement,
    StatementLine,
)
from services.settlement.domain.lines import StatementLines
from services.settlement.domain.statement import FINALIZED
from services.settlement.storage import tables as t
from services.settlement.storage.copy_rows import bulk_insert, compact_json, copy_into
from services.settlement.storage.rows import from_db, period, to_db, upsert

STREAM_BATCH = 5000


def line_from_row(r) -> StatementLine:
    return StatementLine(
        line_no=r.line_no, kind=LineKind(r.kind), payer=r.payer, payee=r.payee, amount_fen=r.amount_fen,
        agreement_id=r.agreement_id, agreement_version=r.agreement_version, tax_kind=r.tax_kind, month=r.month,
        agreement_year=r.agreement_year, adjusts=LineKind(r.adjusts) if r.adjusts else None, measure=r.measure,
        allocation_id=r.allocation_id, sources=tuple(json.loads(r.sources)), source_count=r.source_count,
        sources_digest=r.sources_digest,
    )


def _record_rows(records: list[tuple]) -> Iterator[tuple]:
    """Line records as ``statement_lines`` rows for a plain INSERT (kinds by value, sources as JSON text)."""
    kinds = _KIND_VALUES
    for (county, label, n, kind, payer, payee, amount, agreement_id, version, tax_kind, month, year, adjusts, measure,
         allocation_id, sources, count, digest) in records:
        yield (county, label, n, kinds[kind], payer, payee, amount, agreement_id, version, tax_kind, month, year,
               kinds[adjusts], measure, allocation_id, compact_json(list(sources)).decode(), count, digest)


_KIND_VALUES = {None: None, **{k: k.value for k in LineKind}}
# how ``line_writer`` sends a line record: kinds (str enums) as their text, the sources tuple as JSON text
_LINE_TYPES = ["text", "text", "int4", "text", "text", "text", "int8", "text", "int4", "text", "text", "int4", "text",
               "text", "text", "json", "int4", "text"]


def money_total(st: Statement) -> int:
    """What the money lines move: the sum of all receivables (each money line is one party's receivable)."""
    return sum(t.receivable_fen for t in st.totals)


class StatementsRepository:
    def __init__(self, session: Session):
        self.s = session

    # -- headers --------------------------------------------------------------------------------------
    def header(self, county: str, label: str):
        st = t.statements
        return self.s.execute(select(st).where(st.c.county_code == county, st.c.period == label)).first()

    def headers(self, county: str) -> list:
        st = t.statements
        return self.s.execute(select(st).where(st.c.county_code == county)
                              .order_by(st.c.period_start, st.c.period_end)).all()

    def finalized_headers(self, county: str) -> list:
        st = t.statements
        return self.s.execute(select(st).where(st.c.county_code == county, st.c.status == FINALIZED)
                              .order_by(st.c.period_start)).all()

    # -- history --------------------------------------------------------------------------------------
    def load_history(self, county: str) -> SettlementHistory:
        closed = [ClosedPeriod(period(h.period), from_db(h.finalized_at), h.content_hash) for h in self.finalized_headers(county)]
        sm, su, ss = t.settled_months, t.settled_topups, t.settled_statistics
        months = (SettledMonth(r.agreement_id, r.tax_kind, period(r.month), r.tax_fen, r.origin_share_fen)
                  for r in self.s.execute(select(sm).where(sm.c.county_code == county).execution_options(yield_per=STREAM_BATCH)))
        topups = (SettledTopup(r.agreement_id, r.agreement_year, r.amount_fen, r.payer, r.payee)
                  for r in self.s.execute(select(su).where(su.c.county_code == county)).all())
        statistics = (SettledStatistic(r.agreement_id, r.measure, period(r.month), r.total, r.origin_part)
                      for r in self.s.execute(select(ss).where(ss.c.county_code == county)
                                              .execution_options(yield_per=STREAM_BATCH)))
        return SettlementHistory(closed, list(months), list(topups), list(statistics))

    def store_history(self, st: Statement) -> None:
        label = st.period.label
        upsert(self.s, t.settled_months, (
            dict(agreement_id=m.agreement_id, tax_kind=m.tax_kind, month=m.month.label, county_code=st.county,
                 tax_fen=m.tax_fen, origin_share_fen=m.origin_share_fen, settled_in=label) for m in st.settled_months),
            ("agreement_id", "tax_kind", "month"))
        upsert(self.s, t.settled_statistics, (
            dict(agreement_id=m.agreement_id, measure=m.measure, month=m.month.label, county_code=st.county,
                 total=m.total, origin_part=m.origin_part, settled_in=label) for m in st.settled_statistics),
            ("agreement_id", "measure", "month"))
        upsert(self.s, t.settled_topups, (
            dict(agreement_id=u.agreement_id, agreement_year=u.agreement_year, county_code=st.county,
                 amount_fen=u.amount_fen, payer=u.payer, payee=u.payee, settled_in=label) for u in st.settled_topups),
            ("agreement_id", "agreement_year"))

    # -- writing a statement ---------------------------------------------------------------------------
    def replace_statement(self, st: Statement, by: str, now: datetime) -> None:
        """Write ``st`` (a draft, or the finalized statement) over whatever draft of its period was stored."""
        county, label = st.county, st.period.label
        self.clear(county, label)
        records = (st.lines.records if isinstance(st.lines, StatementLines)
                   else [(county, label, *ln) for ln in st.lines])
        with self.line_writer() as write:
            for i in range(0, len(records), 5000):
                write(records[i : i + 5000])
        self.write_summary(st, by, now)

    def clear(self, county: str, label: str) -> None:
        """Remove the stored statement of a period (a draft about to be replaced)."""
        for table in (t.statement_lines, t.statement_totals, t.statement_statistics, t.statements):
            self.s.execute(delete(table).where(table.c.county_code == county, table.c.period == label))

    @contextmanager
    def line_writer(self) -> Iterator[Callable[[list[tuple]], None]]:
        """A function that stores a batch of line records (``domain.lines.StatementLines``: each names its county
        and period). On PostgreSQL all batches go into one binary ``COPY`` of the records as they are,
        which the server works through while the caller computes the next batch."""
        if self.s.get_bind().dialect.name != "postgresql":
            yield lambda batch: bulk_insert(self.s, t.statement_lines, _record_rows(batch))
            return
        with copy_into(self.s, t.statement_lines, _LINE_TYPES) as copy:
            write_row = copy.write_row

            def write(batch: list[tuple]) -> None:
                for record in batch:
                    write_row(record)

            yield write

    def sources_capped(self, county: str, label: str) -> bool:
        """Whether a stored line of the statement keeps fewer source ids than it has."""
        sl = t.statement_lines
        stored = func.json_array_length(cast(sl.c.sources, JSON) if self.s.get_bind().dialect.name == "postgresql"
                                        else sl.c.sources)
        q = select(sl.c.line_no).where(sl.c.county_code == county, sl.c.period == label,
                                       or_(sl.c.source_count > 1, sl.c.sources == "[]"),
                                       sl.c.source_count > stored).limit(1)
        return self.s.execute(q).first() is not None

    def write_summary(self, st: Statement, by: str, now: datetime, *, lines_written: bool = True) -> None:
        """The header, party totals and statistics totals of ``st``, whose lines are written. With
        ``lines_written`` False the stored lines, totals and statistics totals are those of ``st`` already (the
        same content hash): only the header is replaced."""
        county, label = st.county, st.period.label
        if not lines_written:
            self.s.execute(delete(t.statements).where(t.statements.c.county_code == county, t.statements.c.period == label))
        self.s.execute(t.statements.insert().values(
            county_code=county, period=label, period_kind=st.period.kind.value, period_start=st.period.start,
            period_end=st.period.end, status=st.status, as_of=to_db(st.as_of),
            finalized_at=to_db(st.finalized_at) if st.finalized_at else None, content_hash=st.content_hash,
            policy_id=st.policy_id, policy_version=st.policy_version, line_count=len(st.lines),
            money_total_fen=money_total(st), unmatched_receipts=st.unmatched_receipts, computed_at=to_db(now),
            computed_by=by))
        if not lines_written:
            return
        bulk_insert(self.s, t.statement_totals, (
            (county, label, x.party, x.receivable_fen, x.payable_fen) for x in st.totals))
        bulk_insert(self.s, t.statement_statistics, (
            (county, label, x.party, x.measure, x.gained, x.ceded) for x in st.statistics_totals))

    def drop_drafts(self, county: str) -> list[str]:
        """Every draft of the county, when a finalization (under the county's lock) has just closed a period: each
        was computed against the history before it. While a county has closed nothing, any period may be drafted
        and takes every earlier month's facts; a draft of February made before January is finalized counts
        January's facts again (its compensation, its shares) beside the finalized January — in the enterprise's
        compensation, the parties' positions — until re-run. Judged by their as_of, drafts of a replica whose clock
        ran ahead of the finalizing one's survived."""
        st = t.statements
        labels = [r.period for r in self.s.execute(select(st.c.period).where(
            st.c.county_code == county, st.c.status != FINALIZED)).all()]
        for label in labels:
            for table in (t.statement_lines, t.statement_totals, t.statement_statistics, t.statements):
                self.s.execute(delete(table).where(table.c.county_code == county, table.c.period == label))
        return labels

    # -- ledger postings --------------------------------------------------------------------------------
    def add_postings(self, county: str, label: str, postings: tuple[Posting, ...], now: datetime) -> None:
        at = to_db(now)
        bulk_insert(self.s, t.ledger_postings, (
            (p.transfer_id, county, label, p.line_no, p.debit_account, p.credit_account, p.amount_fen, "requested",
             None, at) for p in postings))

    def mark_posting(self, transfer_id: str, status: str, reason: str | None, now: datetime) -> bool:
        lp = t.ledger_postings
        # posted is final: a transfer id the ledger posted stays posted, whatever answer comes later
        res = self.s.execute(update(lp).where(lp.c.transfer_id == transfer_id, lp.c.status != "posted")
                             .values(status=status, reason=reason, updated_at=to_db(now)))
        return bool(res.rowcount)

    def latest_cutoff(self) -> datetime | None:
        """The latest cut-off of any county (the instant its last finalized statement was taken as of)."""
        st = t.statements
        return from_db(self.s.execute(select(func.max(st.c.finalized_at))).scalar())

    def posting_counts(self, county: str, label: str) -> dict[str, int]:
        lp = t.ledger_postings
        rows = self.s.execute(select(lp.c.status, func.count()).where(lp.c.county_code == county, lp.c.period == label)
                              .group_by(lp.c.status)).all()
        return {status: n for status, n in rows}

    def rejected_postings(self, county: str, label: str, limit: int = 20) -> list:
        lp = t.ledger_postings
        return self.s.execute(select(lp).where(lp.c.county_code == county, lp.c.period == label, lp.c.status == "rejected")
                              .order_by(lp.c.line_no).limit(limit)).all()

    # -- reading lines and totals -------------------------------------------------------------------------
    def _line_filter(self, county: str, label: str, *, party: str | None, agreement: str | None, kind: str | None):
        sl = t.statement_lines
        cond = [sl.c.county_code == county, sl.c.period == label]
        if party:
            cond.append(or_(sl.c.payer == party, sl.c.payee == party))
        if agreement:
            cond.append(sl.c.agreement_id == agreement)
        if kind:
            cond.append(sl.c.kind == kind)
        return and_(*cond)

    def lines_page(self, county: str, label: str, *, party: str | None = None, agreement: str | None = None,
                   kind: str | None = None, after_line: int = 0, limit: int = 100) -> list[StatementLine]:
        sl = t.statement_lines
        q = (select(sl).where(self._line_filter(county, label, party=party, agreement=agreement, kind=kind))
             .where(sl.c.line_no > after_line).order_by(sl.c.line_no).limit(limit))
        return [line_from_row(r) for r in self.s.execute(q).all()]

    def count_lines(self, county: str, label: str, *, party: str | None = None, agreement: str | None = None,
                    kind: str | None = None) -> int:
        sl = t.statement_lines
        q = select(func.count()).select_from(sl).where(self._line_filter(county, label, party=party, agreement=agreement, kind=kind))
        return self.s.execute(q).scalar_one()

    def stream_lines(self, county: str, label: str, **filters) -> Iterator[StatementLine]:
        sl = t.statement_lines
        q = select(sl).where(self._line_filter(county, label, party=filters.get("party"), agreement=filters.get("agreement"),
                                               kind=filters.get("kind"))).order_by(sl.c.line_no)
        for r in self.s.execute(q.execution_options(yield_per=STREAM_BATCH)):
            yield line_from_row(r)

    def totals(self, county: str, label: str, party: str | None = None) -> list:
        tt = t.statement_totals
        q = select(tt).where(tt.c.county_code == county, tt.c.period == label)
        if party:
            q = q.where(tt.c.party == party)
        return self.s.execute(q.order_by(tt.c.party)).all()

    def statistics_totals(self, county: str, label: str, party: str | None = None) -> list:
        ss = t.statement_statistics
        q = select(ss).where(ss.c.county_code == county, ss.c.period == label)
        if party:
            q = q.where(ss.c.party == party)
        return self.s.execute(q.order_by(ss.c.party, ss.c.measure)).all()

    def party_totals_by_period(self, county: str, party: str) -> list:
        """(header, receivable, payable) of every statement of the county that names ``party``."""
        st, tt = t.statements, t.statement_totals
        q = (select(st.c.period, st.c.status, st.c.period_start, tt.c.receivable_fen, tt.c.payable_fen)
             .join(tt, and_(tt.c.county_code == st.c.county_code, tt.c.period == st.c.period))
             .where(st.c.county_code == county, tt.c.party == party)
             .order_by(st.c.period_start, st.c.period_end))
        return self.s.execute(q).all()

    def lines_to_payee(self, payee: str, kinds: tuple[str, ...], county: str | None = None) -> list:
        """Lines paying ``payee`` of the given kinds, with their statement's status, oldest period first."""
        sl, st = t.statement_lines, t.statements
        q = (select(sl, st.c.status, st.c.period_start, st.c.computed_at)
             .join(st, and_(st.c.county_code == sl.c.county_code, st.c.period == sl.c.period))
             .where(sl.c.payee == payee, sl.c.kind.in_(kinds)))
        if county:
            q = q.where(sl.c.county_code == county)
        # a month and its quarter start on one day: the period's end, then its label, keep the order stable
        return self.s.execute(q.order_by(st.c.period_start, st.c.period_end, sl.c.county_code, sl.c.period,
                                         sl.c.line_no)).all()
