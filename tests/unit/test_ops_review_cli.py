"""`countypool` review: what an operator meets when a setting is wrong, when something else answers at a service's
URL, and when `replay --write` is refused by the service."""
from __future__ import annotations

import http.server
import threading
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import insert

from tests.support.cli import run_cli


@pytest.mark.parametrize("url", ["garbage", "nosuchdialect://x@127.0.0.1/y"])
def test_a_database_url_sqlalchemy_cannot_take_is_one_line_and_status_2(monkeypatch, capsys, url):
    """It was a traceback and exit status 1 — the status `replay` gives for "rows differ"."""
    monkeypatch.setenv("COUNTYPOOL_LEDGER_DATABASE_URL", url)
    code, _, err = run_cli(capsys, "replay", "ledger")
    assert code == 2 and "error: database URL" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_setting_the_service_cannot_take_is_one_line_and_status_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("COUNTYPOOL_LEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'l.sqlite3'}")
    monkeypatch.setenv("COUNTYPOOL_LEDGER_RELAY_BATCH_SIZE", "lots")
    code, _, err = run_cli(capsys, "replay", "ledger")
    assert code == 2 and "relay_batch_size" in err and "Traceback" not in err, err


class _Other(http.server.BaseHTTPRequestHandler):
    """Not a CountyPool service: a proxy's pages, a JSON list."""

    def _answer(self):
        status, ctype, body = {
            "/v1/journal/verify": (200, "text/html", b"<html><body>Please log in</body></html>"),
        }.get(self.path.split("?")[0], (500, "application/json", b'["upstream", "down"]'))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def other_server(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Other)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    for service in ("ledger", "settlement"):
        monkeypatch.setenv(f"COUNTYPOOL_{service.upper()}_URL", url)
    yield url
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("argv, says", [
    (("verify",), "without JSON"),  # 200 with an HTML page: was a JSONDecodeError traceback
    (("settlement", "run", "320612", "2026-03"), '["upstream", "down"]'),  # a JSON list: was an AttributeError
    (("settlement", "export", "320612", "2026-03"), "error 500"),
])
def test_something_else_at_the_service_url_is_one_line_and_status_2(other_server, capsys, tmp_path, monkeypatch,
                                                                      argv, says):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and says in err and "Traceback" not in err, err
    assert out == ""


def test_replay_write_refused_by_the_service_still_names_the_rows_that_differ(monkeypatch, capsys, tmp_path):
    """settlement rewrites nothing from its events: `replay settlement --write` said only "not rewritten", and the
    operator had to run the replay again to learn which rows differ."""
    monkeypatch.setenv("COUNTYPOOL_SETTLEMENT_DATABASE_URL", f"sqlite:///{tmp_path / 's.sqlite3'}")
    monkeypatch.setenv("COUNTYPOOL_DATA_DIR", str(tmp_path))
    from services.settlement.main import build
    from services.settlement.storage import tables

    runtime, _ = build()
    try:
        runtime.migrate()
        at = datetime(2026, 4, 2, tzinfo=timezone.utc)
        with runtime.db.sessions() as s, s.begin():  # a statement no event announced
            s.execute(insert(tables.statements), [dict(
                county_code="320612", period="2026-03", period_kind="month", period_start=date(2026, 3, 1),
                period_end=date(2026, 3, 31), status="draft", as_of=at, finalized_at=None, content_hash="h",
                line_count=1, money_total_fen=1234, policy_id="POL", policy_version=3, unmatched_receipts=0,
                computed_at=at, computed_by="x")])
    finally:
        runtime.db.dispose()

    code, out, err = run_cli(capsys, "replay", "settlement", "--write")
    assert code == 1 and "not rewritten" in err
    assert "statements[('320612', '2026-03')]" in out and "1 rows differ; none rewritten" in out

    code, out, _ = run_cli(capsys, "replay", "settlement")
    assert code == 1 and "statements[('320612', '2026-03')]" in out and "1 rows differ" in out
