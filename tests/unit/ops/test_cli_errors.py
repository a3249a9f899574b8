"""`countypool` when its arguments are wrong or what it talks to is away: one line on stderr and a non-zero
exit status, never a traceback (and no request made with arguments the API would refuse)."""
from __future__ import annotations

import socket
import time

import pytest

from tests.support.cli import run_cli


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nothing_listens(monkeypatch, tmp_path):
    port = closed_port()
    for service in ("ledger", "quota", "settlement", "assessment"):
        monkeypatch.setenv(f"COUNTYPOOL_{service.upper()}_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv(f"COUNTYPOOL_{service.upper()}_DATABASE_URL",
                           f"postgresql+psycopg://countypool:countypool@127.0.0.1:{port}/countypool_{service}")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    monkeypatch.chdir(tmp_path)
    return port


@pytest.mark.parametrize("county, period, says", [
    ("3206", "2026-03", "county code"), ("320612/../../ledger", "2026-03", "county code"),
    ("320612", "2026-13", "period"), ("320612", "2026/03", "period"), ("320612", "2026-03?x=1", "period"),
    ("３２０６１２", "2026-03", "county code"),
])
def test_settlement_refuses_a_bad_county_or_period_before_any_request(nothing_listens, capsys, county, period, says):
    for action in ("run", "finalize", "export"):
        code, _, err = run_cli(capsys, "settlement", action, county, period)
        assert code == 2 and says in err and "Traceback" not in err, (action, err)


def test_settlement_refuses_a_bad_format(nothing_listens, capsys):
    code, _, err = run_cli(capsys, "settlement", "export", "320612", "2026", "--format", "pdf")
    assert code == 2 and "invalid choice" in err


@pytest.mark.parametrize("argv", [("verify",), ("settlement", "run", "320612", "2026-03"),
                                  ("settlement", "finalize", "320612", "2026-Q1"),
                                  ("settlement", "export", "320612", "2026", "--format", "xlsx")])
def test_a_service_that_is_away_is_an_error_not_a_traceback(nothing_listens, capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and f"cannot reach http://127.0.0.1:{nothing_listens}" in err, (out, err)


@pytest.mark.parametrize("argv", [("lag",), ("dlq", "list", "countypool.intake.quota"),
                                  ("dlq", "redrive", "countypool.intake.quota", "--reason", "handler_error")])
def test_kafka_away_is_an_error_at_once(nothing_listens, capsys, argv):
    started = time.monotonic()
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "not reachable" in err, err
    assert time.monotonic() - started < 15


def test_import_of_a_missing_file_is_an_error_before_the_database_is_touched(nothing_listens, capsys):
    code, _, err = run_cli(capsys, "import", "assessment", "no-such-file.csv", "--kind", "enterprises")
    assert code == 2 and "cannot read no-such-file.csv" in err, err


def test_import_and_replay_with_the_database_away(nothing_listens, capsys, tmp_path):
    (tmp_path / "e.csv").write_text("credit_code,name,township_code,industry_code,in_park\n", encoding="utf-8")
    for argv in (("import", "assessment", str(tmp_path / "e.csv"), "--kind", "enterprises"), ("replay", "ledger")):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "error: database: OperationalError" in err and "Traceback" not in err, (argv, err)
