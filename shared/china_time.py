"""China Standard Time: counties count days, months and years by it, whatever offset a moment is given in
(times are stored in UTC). China has no daylight saving, so a fixed +08:00 is exact."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

CST = timezone(timedelta(hours=8), "CST")


def cst_date(moment: datetime) -> date:
    """The Chinese calendar day of ``moment``: what a deadline, a period's end or "this year" is judged by."""
    return moment.astimezone(CST).date()
