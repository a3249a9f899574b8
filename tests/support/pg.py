"""Throw-away PostgreSQL databases for tests: created beside the server URL's database, dropped afterwards."""
from __future__ import annotations

import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    base = make_url(server_url)
    name = f"cp_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield base.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


# Debian's layout, newest version first (what deploy/postgres/postgres.sh runs)
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
                 else 0, reverse=True)


def pg_tool(name: str) -> str:
    """The path of a PostgreSQL program (initdb, pg_ctl, pg_dump...); missing: a failure under CI, else a skip."""
    from tests.conftest import require_or_skip

    for d in PG_BINS:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if not found:
        require_or_skip(f"PostgreSQL's {name}")
    return found

