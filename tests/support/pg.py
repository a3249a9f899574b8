"""Throw-away PostgreSQL databases for tests: created beside the server URL's database, dropped afterwards."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
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


class ThrowawayServer:
    """A PostgreSQL cluster of its own (initdb: its transaction ids start again) on a private port, that a test may
    crash and start again; ``url`` names the server (no database). As root it runs as the postgres OS user
    (postgres refuses root)."""

    def __init__(self, prefix: str, *settings: str):
        for tool in ("initdb", "pg_ctl"):
            pg_tool(tool)
        self._root = os.geteuid() == 0
        self.home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.data = self.home / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"
        self._options = " ".join([f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1",
                                  *(f"-c {x}" for x in settings)])
        if self._root:
            shutil.chown(self.home, "postgres", "postgres")
        self._as_pg(pg_tool("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync")

    def _as_pg(self, *cmd) -> None:
        subprocess.run((["runuser", "-u", "postgres", "--"] if self._root else []) + list(cmd), check=True,
                       capture_output=True, cwd="/")

    def start(self) -> None:
        self._as_pg(pg_tool("pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.home / "log"), "-o", self._options,
                    "start")

    def crash(self) -> None:
        """Stopped as a crash would stop it (immediate: no checkpoint)."""
        self._as_pg(pg_tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


@contextmanager
def throwaway_server(prefix: str, *settings: str) -> Iterator[ThrowawayServer]:
    """A started ThrowawayServer with the given ``-c`` settings; stopped and removed afterwards."""
    server = ThrowawayServer(prefix, *settings)
    server.start()
    try:
        yield server
    finally:
        try:
            server.crash()
        except subprocess.CalledProcessError:  # already stopped by the test
            pass
        shutil.rmtree(server.home, ignore_errors=True)

