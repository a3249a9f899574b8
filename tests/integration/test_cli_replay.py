"""`countypool replay ledger [--write]` on PostgreSQL: exit status 0 when the rebuilt balances equal the live
ones, 1 when a row differs (each differing row printed); --write rewrites it from the journal (0 once nothing
differs)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from ops.cli import main
from services.ledger.domain import NewAccount, TransferRequest
from tests.integration.ledger.harness import SqlLedger


def replay(capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["replay", "ledger", *extra])
    return exited.value.code, capsys.readouterr().out


def test_replay_exit_status_follows_the_differences(pg_url, monkeypatch, capsys):
    led = SqlLedger(pg_url, datetime(2026, 3, 1, tzinfo=timezone.utc))
    try:
        led.open([NewAccount("mint", "CNY", "external:mint"), NewAccount("a", "CNY", "county:320612/a")])
        assert led.submit([TransferRequest("t1", "mint", "a", 10_000, code="fund")]).ok
        monkeypatch.setenv("COUNTYPOOL_LEDGER_DATABASE_URL", pg_url)

        code, out = replay(capsys)
        assert code == 0 and "equal the live ones" in out

        with led.db.sessions() as s, s.begin():
            s.execute(text("UPDATE accounts SET credits_posted = 9 WHERE id = 'a'"))
        code, out = replay(capsys)
        assert code == 1 and "1 rows differ" in out and "[a]" in out

        code, out = replay(capsys, "--write")
        assert code == 0 and "1 rows rewritten" in out and "0 still differ" in out
        code, out = replay(capsys)
        assert code == 0 and led.balances()["a"] == (0, 0, 0, 10_000)
    finally:
        led.db.dispose()
