"""What finalized statements have already settled: the input a new statement needs to compute adjustments.

It holds aggregates, not events: per agreement, tax kind and tax month the tax total and origin share settled so
far, per agreement, statistics measure and month the statistic and the origin's part of it settled so far, per
agreement year the top-up settled so far, and the closed periods with their cut-off times. The service
stores these rows when it finalizes a statement (``SettlementHistory.after``) and loads them for the next one.

Which statement takes an event (a receipt, allocation, ...) — decided only from the event and the cut-offs, so a
re-run gives the same answer:
- an event of a month in the statement's period, received by ``as_of``, is settled there;
- an event of an earlier month, received after the last cut-off (the moment the previous period was finalized)
  and by ``as_of``, arrived late: it is settled in this statement (as an adjustment for tax, as the difference of
  the recomputed split for statistics — rounding rule 6); events received
  before the last cut-off were settled by earlier statements and are ignored;
- events of later months, or received after ``as_of``, wait for a later statement.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable, Literal, NamedTuple

from .errors import PeriodError, StatementError
from .periods import Period, ensure_next_to_close

Placement = Literal["current", "late"]


@dataclass(frozen=True)
class ClosedPeriod:
    period: Period
    finalized_at: datetime  # the cut-off: events received after it go to later statements
    content_hash: str = ""


class SettledMonth(NamedTuple):  # one per agreement, tax and month: many (a tuple is the cheapest to build)
    agreement_id: str
    tax_kind: str
    month: Period
    tax_fen: int  # the month's tax total settled so far
    origin_share_fen: int  # the origin's share of it settled so far

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.agreement_id, self.tax_kind, self.month.label)


class SettledStatistic(NamedTuple):  # one per agreement, measure and month (rounding rules 3 and 6)
    agreement_id: str
    measure: str
    month: Period
    total: int  # the month's statistic settled so far (all reports of that measure and month taken so far)
    origin_part: int  # the origin's part of it attributed so far: ``origin_statistics(total)``

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.agreement_id, self.measure, self.month.label)


class SettledTopup(NamedTuple):
    agreement_id: str
    agreement_year: int
    amount_fen: int  # guaranteed-minimum top-up settled so far for that year
    # who paid it to whom: an amendment may change who tops up. None: settled before these were kept (the
    # parties of the version in force are taken to be them, as they were then unless an amendment changed them)
    payer: str | None = None
    payee: str | None = None


class SettlementHistory:
    """Immutable once built; ``after`` returns a new one."""

    __slots__ = ("closed", "months", "topups", "statistics", "_by_agreement")

    def __init__(self, closed: Iterable[ClosedPeriod] = (), months: Iterable[SettledMonth] = (),
                 topups: Iterable[SettledTopup] = (), statistics: Iterable[SettledStatistic] = ()):
        closed = tuple(closed)
        for i, c in enumerate(closed):
            if c.finalized_at.tzinfo is None:
                raise StatementError("finalized_at_not_timezone_aware", f"{c.period.label}: finalized_at must be timezone-aware")
            if i:
                try:
                    ensure_next_to_close(c.period, closed[i - 1].period)
                except PeriodError as exc:
                    raise StatementError(exc.reason, str(exc)) from None
                if c.finalized_at < closed[i - 1].finalized_at:
                    raise StatementError("cutoffs_out_of_order", f"{c.period.label} was finalized before {closed[i - 1].period.label}")
        self.closed: tuple[ClosedPeriod, ...] = closed
        self.months: dict[tuple[str, str, str], SettledMonth] = {m.key: m for m in months}
        self.topups: dict[tuple[str, int], SettledTopup] = {(t.agreement_id, t.agreement_year): t for t in topups}
        self.statistics: dict[tuple[str, str, str], SettledStatistic] = {m.key: m for m in statistics}
        self._by_agreement: dict[str, list[SettledMonth]] = {}
        for m in self.months.values():
            self._by_agreement.setdefault(m.agreement_id, []).append(m)

    @staticmethod
    def empty() -> "SettlementHistory":
        return SettlementHistory()

    @property
    def last_closed(self) -> ClosedPeriod | None:
        return self.closed[-1] if self.closed else None

    @property
    def cutoff(self) -> datetime | None:
        return self.closed[-1].finalized_at if self.closed else None

    @property
    def first_closed_start(self) -> date | None:
        return self.closed[0].period.start if self.closed else None

    def month(self, agreement_id: str, tax_kind: str, month: Period) -> SettledMonth | None:
        return self.months.get((agreement_id, tax_kind, month.label))

    def months_of(self, agreement_id: str) -> list[SettledMonth]:
        return list(self._by_agreement.get(agreement_id, ()))

    def topup(self, agreement_id: str, year: int) -> int:
        t = self.topups.get((agreement_id, year))
        return 0 if t is None else t.amount_fen

    def topup_parties(self, agreement_id: str, year: int) -> tuple[str, str] | None:
        """(payer, payee) of the year's top-up settled so far, if known."""
        t = self.topups.get((agreement_id, year))
        return None if t is None or t.payer is None or t.payee is None else (t.payer, t.payee)

    def placement(self, period: Period, own_start: date, received_at: datetime, as_of: datetime) -> Placement | None:
        """Whether an event of the month starting ``own_start`` is settled by the statement of ``period``
        computed as of ``as_of`` (see the module docstring)."""
        if received_at > as_of or own_start > period.end:
            return None
        if own_start >= period.start:
            return "current"
        cutoff = self.cutoff
        if cutoff is None or received_at > cutoff:
            return "late"
        return None

    def after(self, statement) -> "SettlementHistory":  # statement: statement.Statement (avoids an import cycle)
        """The history once ``statement`` (finalized) is added: its period closed at its cut-off, its settled
        months, statistics and top-ups replacing the earlier figures."""
        if statement.status != "finalized" or statement.finalized_at is None:
            raise StatementError("statement_not_finalized", "only a finalized statement becomes history")
        months = dict(self.months)
        for m in statement.settled_months:
            months[m.key] = m
        topups = dict(self.topups)
        for t in statement.settled_topups:
            topups[(t.agreement_id, t.agreement_year)] = t
        statistics = dict(self.statistics)
        for m in statement.settled_statistics:
            statistics[m.key] = m
        closed = self.closed + (ClosedPeriod(statement.period, statement.finalized_at, statement.content_hash),)
        return SettlementHistory(
            closed,
            months.values(),
            topups.values(),
            statistics.values(),
        )
