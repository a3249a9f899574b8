"""The service's one clock. China Standard Time, because periods are Chinese calendar months: a statement is
"as of" a CST moment and a period has ended once its last CST day is over. Stored as UTC (see storage.rows)."""
from __future__ import annotations

from datetime import date, datetime

from shared.china_time import CST


def now() -> datetime:
    return datetime.now(CST)


def today() -> date:
    return now().date()
