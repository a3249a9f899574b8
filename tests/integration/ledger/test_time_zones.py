"""Times in other zones than UTC: a moment given with an offset (the API's example is Beijing time), and a
PostgreSQL server whose default zone is Asia/Shanghai, as a county's often is."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.ledger.domain import NewAccount
from services.ledger.domain import TransferRequest as T
from services.ledger.storage.repository import LedgerRepository
from tests.integration.ledger.harness import SqlLedger

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
CST = timezone(timedelta(hours=8))
MINT, POOL = "external:mint/COD", "county:320612/pool/COD"


def _ledger(url: str) -> SqlLedger:
    led = SqlLedger(url, T0)
    led.open([NewAccount(MINT, "COD", "external:mint"), NewAccount(POOL, "COD", "county:320612/pool")])
    led.advance(3600)  # the transfer is recorded at 10:00 UTC
    led.submit([T("t1", MINT, POOL, 100)])
    return led


def test_a_moment_with_an_offset_is_that_instant(db_url):
    led = _ledger(db_url)
    try:
        with led.db.sessions() as s:
            repo = LedgerRepository(s)
            for moment, credited in [(T0 + timedelta(minutes=30), 0), (T0 + timedelta(minutes=90), 100)]:
                for written in (moment, moment.astimezone(CST)):  # 09:30Z is 17:30+08:00
                    assert repo.balance_upto(POOL, repo.seq_as_of(written))[3] == credited, written
    finally:
        led.close()


def test_the_journal_verifies_on_a_server_whose_zone_is_not_utc(pg_url):
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'ALTER DATABASE "{make_url(pg_url).database}" SET timezone = \'Asia/Shanghai\''))
    admin.dispose()
    led = _ledger(pg_url)
    try:
        with led.db.sessions() as s:
            assert s.execute(text("SHOW timezone")).scalar() == "UTC", "services read times in UTC"
        res = led.verify()
        assert res.ok, res
        with led.db.sessions() as s:
            seq = LedgerRepository(s).seq_as_of((T0 + timedelta(minutes=30)).astimezone(CST))
            assert LedgerRepository(s).balance_upto(POOL, seq)[3] == 0
    finally:
        led.close()


def test_a_journal_row_read_in_another_zone_gives_the_text_that_was_hashed():
    from types import SimpleNamespace

    from services.ledger.storage.repository import journal_entry_from_row

    at = datetime(2026, 3, 2, 10, 0, 0, 123456, tzinfo=timezone.utc)
    row = SimpleNamespace(seq=1, kind="posted", transfer_id="t1", payload="{}", recorded_at=at.astimezone(CST),
                          prev_hash="0" * 64, hash="h")
    assert journal_entry_from_row(row).recorded_at == "2026-03-02T10:00:00.123456+00:00"
