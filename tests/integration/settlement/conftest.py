"""A second database for the ledger when settlement and the ledger run side by side (one database each)."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url


@pytest.fixture
def ledger_db_url(db_url, tmp_path, request):
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    base = make_url(request.getfixturevalue("pg_server_url"))
    name = f"cp_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()
