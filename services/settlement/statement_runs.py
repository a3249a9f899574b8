"""Running a county's statement for a period: draft (any number of times) and finalize (once).

Both compute the statement from the database in one pass: agreements and history are loaded (they are few),
receipts, statistics, allocations and buy-backs are streamed into ``compute_statement`` (see
``storage.inputs``), so memory does not grow with the number of receipts. A draft replaces the stored draft and
announces ``SettlementDrafted``. Finalizing takes the cut-off lock (``storage.locks``), recomputes as of that
moment — the finalized statement is exactly what the inputs say at its cut-off — then stores it with the history
rows the next period needs, and writes to the outbox in the same transaction: the ledger commands, one
``AdjustmentRecorded`` per adjustment line and ``SettlementFinalized``.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
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
    compute_statement,
    finalize,
)
from services.settlement.domain.export import yuan
from services.settlement.domain.statement import DEFAULT_SOURCES_PER_LINE, FINALIZED
from services.settlement.ledger_postings import ledger_commands
from services.settlement.storage.inputs import InputsRepository, policy_from_row
from services.settlement.storage.locks import hold_county, hold_cutoff
from services.settlement.storage.statements import StatementsRepository, money_total
from shared.contracts import topics
from shared.contracts.settlement import AdjustmentRecorded, SettlementDrafted, SettlementFinalized
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork


def parse_period(label: str) -> Period:
    return Period.parse(label)


def statement_id(county: str, label: str) -> str:
    return f"{county}/{label}"


@contextmanager
def collector_paused():
    """A county-year builds ~10^6 small, acyclic objects; the cyclic garbage collector would walk the growing
    heap again and again while they are made (20-40 % of the run). Paused for the computation only."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compute_from_database(session: Session, county: str, period: Period, as_of: datetime,
                          max_sources_per_line: int | None = DEFAULT_SOURCES_PER_LINE) -> Statement:
    with collector_paused():
        return _compute(session, county, period, as_of, max_sources_per_line)


def _compute(session: Session, county: str, period: Period, as_of: datetime, max_sources_per_line: int | None) -> Statement:
    inputs = InputsRepository(session)
    policy_row = inputs.latest_policy_row(county)
    if policy_row is None:
        raise StatementError("policy_missing", f"county {county} has no settlement policy yet (PUT one first)")
    history = StatementsRepository(session).load_history(county)
    book = AgreementBook(inputs.agreements_of_county(county))
    cutoff = history.cutoff
    return compute_statement(
        county, period, agreements=book, policy=policy_from_row(policy_row), as_of=as_of,
        receipts=inputs.stream_receipts(county, period, cutoff, as_of),
        statistics=inputs.stream_statistics(county, period, cutoff, as_of),
        allocations=inputs.stream_allocations(county, period, cutoff, as_of),
        buybacks=inputs.stream_buybacks(county, period, cutoff, as_of),
        finalized_prior=history, max_sources_per_line=max_sources_per_line,
    )


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
        return self.runtime.transaction(lambda uow: self._draft(uow, county, period, by))

    def _draft(self, uow: UnitOfWork, county: str, period: Period, by: str) -> RunResult:
        s = uow.session
        hold_county(s, county)
        now = self.now()
        if period.start > now.date():
            raise PeriodError("period_in_future", f"{period.label} has not started yet (today is {now.date()})")
        repo = StatementsRepository(s)
        current = repo.header(county, period.label)
        if current is not None and current.status == FINALIZED:
            raise StatementError("already_finalized", f"{statement_id(county, period.label)} is finalized; "
                                 "corrections go into the next open period")
        st = compute_from_database(s, county, period, now, self.max_sources_per_line)
        repo.replace_statement(st, by, now)
        uow.emit(SettlementDrafted(statement_id=st.statement_id, county_code=county, period=period.label,
                                   content_hash=st.content_hash, line_count=len(st.lines), total=yuan(money_total(st))),
                 subject=st.statement_id)
        return RunResult(st, repo.header(county, period.label), True)

    # -- finalize ---------------------------------------------------------------------------------------
    def finalize(self, county: str, label: str, by: str, expected_hash: str | None = None) -> RunResult:
        period = parse_period(label)
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
        if period.start > now.date():
            raise PeriodError("period_in_future", f"{period.label} has not started yet (today is {now.date()})")
        draft = compute_from_database(s, county, period, now, self.max_sources_per_line)
        if expected_hash and expected_hash != draft.content_hash:
            raise StatementError("content_changed", f"the statement now has hash {draft.content_hash}, not the "
                                 f"{expected_hash} that was reviewed: run and review the draft again")
        final, postings = finalize(draft)
        repo.replace_statement(final, by, now)
        repo.store_history(final)
        repo.add_postings(county, period.label, postings, now)
        repo.drop_drafts_overlapping(county, period.end)
        self._announce(uow, final, postings)
        return RunResult(final, repo.header(county, period.label), True)

    @staticmethod
    def _announce(uow: UnitOfWork, st: Statement, postings) -> None:
        sid = st.statement_id
        for event_id, command in ledger_commands(st, postings):
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
                                     finalized_at=st.finalized_at), subject=sid)
