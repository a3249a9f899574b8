"""A second database for the ledger when settlement and the ledger run side by side (one database each)."""
from __future__ import annotations

import pytest
from tests.support.pg import fresh_database


@pytest.fixture
def ledger_db_url(db_url, tmp_path, request):
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    with fresh_database(request.getfixturevalue("pg_server_url")) as url:
        yield url
