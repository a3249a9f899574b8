"""What the benchmarks share: throw-away PostgreSQL databases, Kafka checks, percentiles and a clock of the time
spent inside the database driver. Benchmarks only: the services never import this."""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url

from shared.kafka_admin import KafkaProbe

DEFAULT_PG = "postgresql+psycopg://countypool:countypool@127.0.0.1:55432/countypool_test"


class ScratchDatabases:
    """Databases ``cp_bench_<label>_<hex>`` created on the server of ``server_url`` (beside its database), each
    dropped by ``drop`` or, at the latest, by ``close`` unless ``keep`` was asked for it."""

    def __init__(self, server_url: str, label: str):
        self.base = make_url(server_url)
        self.label = label
        self.admin = create_engine(self.base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self) -> str:
        name = f"cp_bench_{self.label}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return self.url_of(name)

    def url_of(self, name: str) -> str:
        return self.base.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.names:
            self.names.remove(name)

    def keep(self, url: str) -> None:
        """Leave this one on the server (its name is the caller's to print)."""
        name = make_url(url).database
        if name in self.names:
            self.names.remove(name)

    @contextmanager
    def database(self) -> Iterator[str]:
        url = self.create()
        try:
            yield url
        finally:
            self.drop(url)

    def settings(self) -> dict:
        """The server settings a reader of the figures wants beside them."""
        with self.admin.connect() as c:
            return {k: c.exec_driver_sql(f"SHOW {k}").scalar()
                    for k in ("server_version", "synchronous_commit", "fsync", "shared_buffers", "max_wal_size")}

    def close(self) -> None:
        with self.admin.connect() as c:
            for name in self.names:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.names.clear()
        self.admin.dispose()

    def __enter__(self) -> "ScratchDatabases":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank value at ``fraction`` (0.5 = median, 0.99) of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(fraction * (len(s) - 1))))]


# -- Kafka ----------------------------------------------------------------------------------------------------
def wait_for_kafka(bootstrap: str, timeout: float = 60) -> None:
    probe = KafkaProbe(bootstrap, ttl=0)
    deadline = time.monotonic() + timeout
    while not probe.reachable():
        if time.monotonic() > deadline:
            raise SystemExit(f"Kafka at {bootstrap} is not reachable (make kafka, or pass --bootstrap)")
        time.sleep(1)


def records_in(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (the sum of its end offsets): a check that nothing was lost."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in (c.partitions_for_topic(topic) or ())]
        return sum(c.end_offsets(parts).values()) if parts else 0
    finally:
        c.close()


# -- where the time goes ----------------------------------------------------------------------------------------
class DbClock:
    """Wall time inside the database driver for one engine, by statement kind and table (and commits), counted
    while ``on``: the rest of a phase's time is Python's (or, for a relay, mostly the Kafka client's)."""

    def __init__(self, engine):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.on = False
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        dialect = engine.dialect
        orig_commit = dialect.do_commit

        def do_commit(dbapi_conn):
            t0 = time.perf_counter()
            try:
                return orig_commit(dbapi_conn)
            finally:
                self.add("COMMIT", time.perf_counter() - t0)

        dialect.do_commit = do_commit  # an instance attribute: this engine only

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def add(self, kind: str, dt: float) -> None:
        if self.on:
            self.seconds[kind] = self.seconds.get(kind, 0.0) + dt
            self.calls[kind] = self.calls.get(kind, 0) + 1

    def _before(self, conn, cursor, statement, params, context, executemany):
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn, cursor, statement, params, context, executemany):
        self.add(statement_kind(statement, executemany),
                 time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter()))


def statement_kind(statement: str, executemany: bool = False) -> str:
    """'INSERT outbox', 'SELECT transfers', 'SELECT count', 'SELECT lock' ...: a low-cardinality label."""
    words = statement.split()
    verb = words[0].upper() if words else "?"
    upper = [w.upper() for w in words]
    lower = statement.lower()
    table = ""
    if verb == "SELECT" and "count(" in lower:
        table = "count"
    elif verb == "SELECT" and "advisory" in lower:
        table = "lock"
    elif verb == "INSERT" and len(words) > 2:
        table = words[2]
    elif verb == "UPDATE" and len(words) > 1:
        table = words[1]
    elif verb == "SELECT" and "FROM" in upper:
        table = words[upper.index("FROM") + 1]
    return f"{verb} {table}".strip() + (" (many)" if executemany else "")
