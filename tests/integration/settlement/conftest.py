"""The settlement service built on the test database, without relay or consumer; and a second database for the
ledger when settlement and the ledger run side by side (one database each)."""
from __future__ import annotations

import pytest

from services.settlement.main import build
from shared.settings import load_settings
from tests.support.pg import fresh_database


@pytest.fixture
def ledger_db_url(db_url, tmp_path, request):
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    with fresh_database(request.getfixturevalue("pg_server_url")) as url:
        yield url


@pytest.fixture
def runtime(db_url):
    rt, _ = build(load_settings("settlement", database_url=db_url, relay_enabled=False, consumer_enabled=False,
                                log_json=False))
    rt.migrate()
    yield rt
    rt.db.dispose()
