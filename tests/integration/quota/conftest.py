"""One quota service and one ledger service per database kind for the whole module (starting them costs
seconds); every test works in its own county."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from tests.integration.quota.harness import platform


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_pair(request, tmp_path_factory):
    """(quota database url, ledger database url), fresh for the module, on the same backend."""
    if request.param == "sqlite":
        d = tmp_path_factory.mktemp("quota")
        yield f"sqlite:///{d / 'quota.sqlite3'}", f"sqlite:///{d / 'ledger.sqlite3'}"
        return
    base = make_url(request.getfixturevalue("pg_server_url"))
    names = [f"cp_quota_{uuid.uuid4().hex[:8]}", f"cp_ledger_{uuid.uuid4().hex[:8]}"]
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        for n in names:
            c.exec_driver_sql(f'CREATE DATABASE "{n}"')
    yield tuple(base.set(database=n).render_as_string(hide_password=False) for n in names)
    with admin.connect() as c:
        for n in names:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="module")
def plat(db_pair, kafka_bootstrap):
    with platform(*db_pair, kafka_bootstrap) as p:
        yield p
