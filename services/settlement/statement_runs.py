"""Running a county's statement for a period: draft (any number of times) and finalize (once).

Both compute the statement from the database in one pass (``builder_from_database``): agreements, policy versions
and history are loaded (they are few); receipts and statistics are summed by the database per enterprise, kind and month
(``storage.sums``), so memory does not grow with the number of receipts; allocations and buy-backs are read. The
lines are then handed out in order and written (``COPY`` on PostgreSQL) while the content hash and totals are
tallied over them, so the database stores one batch while the next is computed. A draft replaces the stored
draft and announces ``SettlementDrafted``. Finalizing takes the cut-off lock (``storage.locks``), recomputes as
of that moment — the finalized statement is exactly what the inputs say at its cut-off — then stores it with the
history rows the next period needs, and writes to the outbox in the same transaction: the ledger commands, one
``AdjustmentRecorded`` per adjustment line and ``SettlementFinalized``.
"""
from __future__ import annotations

import uuid

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from sqlalchemy.orm import Session

from services.settlement import clock
from services.settlement.domain import (
    AgreementBook,
    LineKind,
    Period,
    PeriodError,
    Statement,
    StatementError,
    finalize,
)
from services.settlement.domain.build import StatementBuilder
from services.settlement.domain.export import yuan
from services.settlement.domain.statement import DEFAULT_SOURCES_PER_LINE, FINALIZED, assemble
from services.settlement.ledger_postings import ledger_commands
from services.settlement.storage.inputs import InputsRepository, allocations_of, policy_from_row
from services.settlement.storage.locks import hold_county, hold_cutoff
from services.settlement.storage.rows import from_db
from services.settlement.storage.statements import StatementsRepository, money_total
from services.settlement.storage.sums import MonthSums
from shared.china_time import cst_date
from shared.contracts import topics
from shared.contracts.settlement import (
    TOTALS_IN_EVENT_MAX,
    AdjustmentRecorded,
    SettlementDrafted,
    SettlementFinalized,
    StatementPartyTotal,
    StatementStatisticsTotal,
)
from shared.db import one_moment
from shared.gc_pause import collector_paused
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork


def parse_period(label: str) -> Period:
    return Period.parse(label)


def statement_id(county: str, label: str) -> str:
    return f"{county}/{label}"


def builder_from_database(session: Session, county: str, period: Period, as_of: datetime,
                          max_sources_per_line: int | None = DEFAULT_SOURCES_PER_LINE) -> StatementBuilder:
    """A statement's inputs, read: tax and statistics summed, allocations and buy-backs held until their lines
    are made (by then the connection is busy writing lines)."""
    inputs = InputsRepository(session)
    policies = [policy_from_row(r) for r in inputs.policy_rows(county)]
    if not policies:
        raise StatementError("policy_missing", f"county {county} has no settlement policy yet (PUT one first)")
    history = StatementsRepository(session).load_history(county)
    # every version: each allocation is split by the version in force on its day, not by the latest
    b = StatementBuilder(county, period, agreements=AgreementBook(inputs.agreements_of_county(county)),
                         policy=policies, as_of=as_of, history=history,
                         max_sources_per_line=max_sources_per_line)
    cutoff = history.cutoff
    # allocations read as rows first and made into allocations only when their lines are made, while the
    # database is storing the lines before them
    b.add_allocations(allocations_of(inputs.allocation_rows(county, period, cutoff, as_of)))
    b.add_buybacks(inputs.stream_buybacks(county, period, cutoff, as_of))
    sums = MonthSums(session, county, period, cutoff, as_of, max_sources_per_line)
    b.add_tax(sums.tax())
    b.add_statistics(sums.statistics())
    return b


def compute_from_database(session: Session, county: str, period: Period, as_of: datetime,
                          max_sources_per_line: int | None = DEFAULT_SOURCES_PER_LINE) -> Statement:
    """The statement, computed and not stored."""
    with collector_paused():
        return assemble(builder_from_database(session, county, period, as_of, max_sources_per_line))


def compute_and_write_lines(session: Session, county: str, period: Period, as_of: datetime,
                            max_sources_per_line: int | None = DEFAULT_SOURCES_PER_LINE,
                            stored=None) -> tuple[Statement, bool]:
    """The (draft) statement and whether its lines had to be written over the period's ``stored`` statement (its
    header row, if any), which is then removed; the caller writes the summary (``StatementsRepository
    .write_summary``) of this draft or of its finalized form.

    Lines are written while they are computed — unless a stored draft may well be this very statement (no fact
    recorded since it was computed): then the statement is computed first, and if it is the stored one — same
    content hash, hence the same lines, and no line's sources cut by a cap on either side (the kept ids are not in
    the hash) — the stored lines stay; otherwise they are replaced."""
    repo = StatementsRepository(session)
    label = period.label
    # the facts read in one snapshot (PostgreSQL): a draft holds the county's lock, not intake's, and under READ
    # COMMITTED a receipt committing between a month's sum and the re-read of its ids gave a line the amount of one
    # view and the sources of the other, a hash of neither
    with collector_paused(), one_moment(session) as reads:
        maybe_same = stored is not None and not InputsRepository(reads).recorded_between(
            county, from_db(stored.as_of), as_of)
        b = builder_from_database(reads, county, period, as_of, max_sources_per_line)
        if not maybe_same:
            repo.clear(county, label)
            with repo.line_writer() as write:
                return assemble(b, write), True
        st = assemble(b)
        if st.content_hash == stored.content_hash and not st.lines.capped() and not repo.sources_capped(county, label):
            return st, False
        repo.clear(county, label)
        records = st.lines.records
        with repo.line_writer() as write:
            for i in range(0, len(records), 5000):
                write(records[i : i + 5000])
        return st, True


def summary_fields(st: Statement, *, party_totals: bool) -> dict:
    """What the statement events carry besides hash and total, so that replay can rebuild the summary and totals
    (services/settlement/replay.py). Totals only up to TOTALS_IN_EVENT_MAX rows: see the contract."""
    out: dict = dict(policy_id=st.policy_id, policy_version=st.policy_version, unmatched_receipts=st.unmatched_receipts)
    if party_totals and len(st.totals) <= TOTALS_IN_EVENT_MAX:
        out["party_totals"] = [StatementPartyTotal(party=t.party, receivable=yuan(t.receivable_fen),
                                                   payable=yuan(t.payable_fen)) for t in st.totals]
    if len(st.statistics_totals) <= TOTALS_IN_EVENT_MAX:
        out["statistics_totals"] = [StatementStatisticsTotal(party=t.party, measure=t.measure, gained=yuan(t.gained),
                                                             ceded=yuan(t.ceded)) for t in st.statistics_totals]
    return out


@dataclass(frozen=True)
class RunResult:
    statement: Statement | None  # None when finalize found the period already finalized
    header: object  # the stored statements row
    created: bool


class StatementRuns:
    def __init__(self, runtime: ServiceRuntime, *, now: Callable[[], datetime] = clock.now,
                 max_sources_per_line: int | None = DEFAULT_SOURCES_PER_LINE):
        self.runtime = runtime
        self.now = now
        self.max_sources_per_line = max_sources_per_line

    # -- draft ------------------------------------------------------------------------------------------
    def draft(self, county: str, label: str, by: str) -> RunResult:
        period = parse_period(label)
        with collector_paused():  # until the commit: the lines and rows of the whole run are made meanwhile
            return self.runtime.transaction(lambda uow: self._draft(uow, county, period, by))

    def _draft(self, uow: UnitOfWork, county: str, period: Period, by: str) -> RunResult:
        s = uow.session
        hold_county(s, county)
        now = self.now()
        today = cst_date(now)  # periods are CST months, whatever offset the clock gives
        if period.start > today:
            raise PeriodError("period_in_future", f"{period.label} has not started yet (today is {today})")
        repo = StatementsRepository(s)
        current = repo.header(county, period.label)
        if current is not None and current.status == FINALIZED:
            raise StatementError("already_finalized", f"{statement_id(county, period.label)} is finalized; "
                                 "corrections go into the next open period")
        st, written = compute_and_write_lines(s, county, period, now, self.max_sources_per_line, current)
        repo.write_summary(st, by, now, lines_written=written)
        uow.emit(SettlementDrafted(statement_id=st.statement_id, county_code=county, period=period.label,
                                   content_hash=st.content_hash, line_count=len(st.lines), total=yuan(money_total(st)),
                                   as_of=st.as_of, **summary_fields(st, party_totals=True)),
                 subject=st.statement_id)
        return RunResult(st, repo.header(county, period.label), True)

    # -- finalize ---------------------------------------------------------------------------------------
    def finalize(self, county: str, label: str, by: str, expected_hash: str | None = None) -> RunResult:
        period = parse_period(label)
        with collector_paused():
            return self.runtime.transaction(lambda uow: self._finalize(uow, county, period, by, expected_hash))

    def _finalize(self, uow: UnitOfWork, county: str, period: Period, by: str, expected_hash: str | None) -> RunResult:
        s = uow.session
        hold_county(s, county)
        hold_cutoff(s)  # from here on no fact can slip in with a received_at before our cut-off
        now = self.now()
        repo = StatementsRepository(s)
        current = repo.header(county, period.label)
        if current is not None and current.status == FINALIZED:
            if expected_hash and expected_hash != current.content_hash:
                raise StatementError("content_changed", f"{statement_id(county, period.label)} was finalized with "
                                     f"hash {current.content_hash}, not {expected_hash}")
            return RunResult(None, current, False)  # finalizing twice is answered, not repeated
        today = cst_date(now)  # periods are CST months, whatever offset the clock gives
        if period.start > today:
            raise PeriodError("period_in_future", f"{period.label} has not started yet (today is {today})")
        if today <= period.end:  # what ``finalize`` refuses, refused before the work
            raise StatementError("period_not_ended", f"{period.label} ends {period.end}; the statement is as of {now}")
        draft, written = compute_and_write_lines(s, county, period, now, self.max_sources_per_line, current)
        if expected_hash and expected_hash != draft.content_hash:  # the lines written are rolled back
            raise StatementError("content_changed", f"the statement now has hash {draft.content_hash}, not the "
                                 f"{expected_hash} that was reviewed: run and review the draft again")
        final, postings = finalize(draft)
        repo.write_summary(final, by, now, lines_written=written)
        repo.store_history(final)
        repo.add_postings(county, period.label, postings, now)
        repo.drop_drafts(county)  # each computed against the history before this finalization
        self._announce(uow, final, postings)
        return RunResult(final, repo.header(county, period.label), True)

    @staticmethod
    def _announce(uow: UnitOfWork, st: Statement, postings) -> None:
        sid = st.statement_id
        for event_id, command in ledger_commands(st, postings, uuid.uuid4().hex[:12]):
            uow.emit(command, subject=sid, event_id=event_id, topic=topics.LEDGER_COMMANDS)
        for ln in st.lines:
            if ln.kind is LineKind.ADJUSTMENT:
                uow.emit(AdjustmentRecorded(
                    statement_id=sid, county_code=st.county, period=st.period.label, adjusts_period=ln.month or "",
                    amount=yuan(ln.amount_fen), sources=list(ln.sources), line_no=ln.line_no, payer=ln.payer,
                    payee=ln.payee, agreement_id=ln.agreement_id, tax_kind=ln.tax_kind,
                    adjusts=ln.adjusts.value if ln.adjusts else None), subject=sid)
        uow.emit(SettlementFinalized(statement_id=sid, county_code=st.county, period=st.period.label,
                                     content_hash=st.content_hash, line_count=len(st.lines), total=yuan(money_total(st)),
                                     finalized_at=st.finalized_at, **summary_fields(st, party_totals=False)), subject=sid)
