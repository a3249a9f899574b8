"""Replay on an operator's host whose clock is set to China time (TZ=Asia/Shanghai, as county machines are).

SQLite keeps UTC timestamps without an offset; settlement's replay reads its live tables with raw SQL, so SQLite
hands it text like '2026-06-10 08:00:00.000000'. That text was taken for the host's local time: every statement
of a SQLite settlement differed from its events by 8 hours (and a real difference drowned among them)."""
from __future__ import annotations

import time
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import create_engine, insert
from sqlalchemy.orm import Session

from services.assessment.replay import utc_iso
from services.settlement.replay import SettlementProjection, iso
from services.settlement.storage import tables
from shared.contracts.settlement import SettlementDrafted
from shared.envelope import new_envelope
from shared.replay import compare, fold

COUNTY = "320612"


@pytest.fixture
def china_time(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_naive_timestamp_is_utc_whatever_the_hosts_zone(china_time):
    assert iso("2026-06-10 08:00:00.000000") == "2026-06-10T08:00:00+00:00"
    assert iso(datetime(2026, 6, 10, 8)) == "2026-06-10T08:00:00+00:00"
    assert iso("2026-06-10T08:00:00Z") == "2026-06-10T08:00:00+00:00"
    assert utc_iso("2026-06-10T08:00:00") == "2026-06-10T08:00:00+00:00"
    assert utc_iso("2026-06-10T16:00:00+08:00") == "2026-06-10T08:00:00+00:00"


def test_settlement_replay_of_a_sqlite_database_on_a_china_time_host(china_time):
    as_of = datetime(2026, 6, 10, 8, 0, tzinfo=timezone.utc)
    drafted = SettlementDrafted(statement_id=f"{COUNTY}/2026-06", county_code=COUNTY, period="2026-06",
                                content_hash="h", line_count=1, total="12.34", as_of=as_of, policy_id="POL",
                                policy_version=3, unmatched_receipts=0, party_totals=[], statistics_totals=[])
    p = SettlementProjection()
    fold(p, iter([(drafted.type_name(), new_envelope(drafted, subject="s", source="/x").to_json())]))

    engine = create_engine("sqlite://")
    tables.metadata.create_all(engine)
    with Session(engine) as s, s.begin():
        s.execute(insert(tables.statements), [dict(
            county_code=COUNTY, period="2026-06", period_kind="month", period_start=date(2026, 6, 1),
            period_end=date(2026, 6, 30), status="draft", as_of=as_of, finalized_at=None, content_hash="h",
            line_count=1, money_total_fen=1234, policy_id="POL", policy_version=3, unmatched_receipts=0,
            computed_at=as_of, computed_by="x")])
    with Session(engine) as s:
        live = p.live(s)
    assert compare(live, p.rebuilt()) == []

    # and a real difference is still one
    with Session(engine) as s, s.begin():
        s.execute(tables.statements.update().values(money_total_fen=1235))
    with Session(engine) as s:
        diffs = compare(p.live(s), p.rebuilt())
    assert [(d.model, d.key) for d in diffs] == [("statements", (COUNTY, "2026-06"))]
