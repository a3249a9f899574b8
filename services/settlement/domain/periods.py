"""Settlement periods: a calendar month (``2026-03``), quarter (``2026-Q1``) or year (``2026``).

``start`` and ``end`` are both inclusive dates. Periods order by (start, end), so within one year
``2026-01 < 2026-Q1 < 2026``. Periods are closed (finalized) strictly in order: the next period to close
starts the day after the last closed one ended (``ensure_next_to_close``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum
from functools import cached_property, total_ordering
from typing import Iterator

from .errors import PeriodError


class PeriodKind(str, Enum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


_MONTH_RE = re.compile(r"^([0-9]{4})-([0-9]{2})$")
_QUARTER_RE = re.compile(r"^([0-9]{4})-Q([1-4])$")
_YEAR_RE = re.compile(r"^([0-9]{4})$")


def _month_end(year: int, month: int) -> date:
    if month == 12:
        return date(year, 12, 31)
    return date(year, month + 1, 1) - timedelta(days=1)


def month_index(d: date) -> int:
    """Months since year 0: makes month arithmetic plain integer arithmetic."""
    return d.year * 12 + d.month - 1


def month_from_index(i: int) -> "Period":
    return Period.month(i // 12, i % 12 + 1)


@total_ordering
@dataclass(frozen=True)
class Period:
    kind: PeriodKind
    start: date
    end: date
    label: str

    # -- construction -------------------------------------------------------------------------
    @staticmethod
    def month(year: int, month: int) -> "Period":
        if not 1 <= month <= 12:
            raise PeriodError("invalid_period", f"month {month} is not 1..12")
        return Period(PeriodKind.MONTH, date(year, month, 1), _month_end(year, month), f"{year:04d}-{month:02d}")

    @staticmethod
    def quarter(year: int, quarter: int) -> "Period":
        if not 1 <= quarter <= 4:
            raise PeriodError("invalid_period", f"quarter {quarter} is not 1..4")
        first = 3 * (quarter - 1) + 1
        return Period(PeriodKind.QUARTER, date(year, first, 1), _month_end(year, first + 2), f"{year:04d}-Q{quarter}")

    @staticmethod
    def year(year: int) -> "Period":
        return Period(PeriodKind.YEAR, date(year, 1, 1), date(year, 12, 31), f"{year:04d}")

    @staticmethod
    def parse(label: str) -> "Period":
        """'2026-03' | '2026-Q1' | '2026'."""
        if not isinstance(label, str):
            raise PeriodError("invalid_period", f"period {label!r} is not a string")
        s = label.strip()
        try:
            if m := _MONTH_RE.match(s):
                return Period.month(int(m.group(1)), int(m.group(2)))
            if m := _QUARTER_RE.match(s):
                return Period.quarter(int(m.group(1)), int(m.group(2)))
            if m := _YEAR_RE.match(s):
                return Period.year(int(m.group(1)))
        except ValueError as exc:  # e.g. year 0000
            raise PeriodError("invalid_period", f"period {label!r}: {exc}") from None
        raise PeriodError("invalid_period", f"period {label!r} is not YYYY-MM, YYYY-Qn or YYYY")

    @staticmethod
    def containing(d: date, kind: PeriodKind | str) -> "Period":
        kind = PeriodKind(kind)
        if kind is PeriodKind.MONTH:
            return Period.month(d.year, d.month)
        if kind is PeriodKind.QUARTER:
            return Period.quarter(d.year, (d.month - 1) // 3 + 1)
        return Period.year(d.year)

    # -- queries ------------------------------------------------------------------------------
    @cached_property
    def index(self) -> int:
        """``month_index(self.start)``, kept: statements look it up for every month total."""
        return month_index(self.start)

    def contains(self, item: "date | Period") -> bool:
        if isinstance(item, Period):
            return self.start <= item.start and item.end <= self.end
        return self.start <= item <= self.end

    def next(self) -> "Period":
        return Period.containing(self.end + timedelta(days=1), self.kind)

    def previous(self) -> "Period":
        return Period.containing(self.start - timedelta(days=1), self.kind)

    def months(self) -> Iterator["Period"]:
        for i in range(month_index(self.start), month_index(self.end) + 1):
            yield month_from_index(i)

    def _key(self) -> tuple[date, date]:
        return (self.start, self.end)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Period):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return self.label


def ensure_next_to_close(period: Period, last_closed: Period | None) -> None:
    """Periods are closed in order, with no gap and no overlap: the period to close must start the day after
    the last closed one ended. The first period ever closed may be any period."""
    if last_closed is None:
        return
    if period.start <= last_closed.end:
        raise PeriodError(
            "period_already_closed", f"{period.label} overlaps {last_closed.label}, which is already closed"
        )
    expected = last_closed.end + timedelta(days=1)
    if period.start != expected:
        raise PeriodError(
            "previous_period_not_closed",
            f"{period.label} cannot be closed before the period starting {expected.isoformat()} "
            f"(last closed: {last_closed.label})",
        )


def ensure_period_ended(period: Period, today: date) -> None:
    """A period is finalized only once it is over (``today`` is passed in: the domain reads no clock)."""
    if today <= period.end:
        raise PeriodError("period_not_ended", f"{period.label} ends {period.end.isoformat()}; today is {today.isoformat()}")
