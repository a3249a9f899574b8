"""Quota dates its facts by the county's calendar (China Standard Time), as settlement's periods are: an allocation
at 01:00 on 1 April in China (17:00 UTC on 31 March) is April's, or settlement puts it in March's statement
under March's policy version."""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.quota.storage import tables as T
from tests.integration.quota.test_quota_application import Pool, db  # noqa: F401 - db is the fixture

CHINA_1_APRIL = datetime(2024, 3, 31, 17, 0, tzinfo=timezone.utc)


def test_an_allocation_after_midnight_in_china_is_dated_that_day(db):  # noqa: F811
    pool = Pool(db)
    pool.now = CHINA_1_APRIL
    pool.evaluate("P1")
    pool.release("10")
    pool.request("R1", "P1", "6")
    pool.round()
    pool.pending("R1", "P1", "6")
    pool.approve("P1")
    allocated = [e for e, _ in pool.events if type(e).__name__ == "QuotaAllocated"]
    assert [e.allocated_on for e in allocated] == [date(2024, 4, 1)]
    with Session(pool.engine) as s:
        assert s.execute(select(T.allocations.c.allocated_on)).scalars().all() == [date(2024, 4, 1)]
