"""Database access shared by every service: engines (SQLite embedded default, PostgreSQL in production),
the unit of work (one transaction per request or message, events go to the outbox inside it) and the
retry of deadlocks and serialization failures."""
from __future__ import annotations

import logging
import random
import sqlite3
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.metrics import DB_RETRIES

log = logging.getLogger(__name__)
T = TypeVar("T")


CONNECT_TIMEOUT_SECONDS = 10


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_transactions(engine)
        return engine
    ensure_postgres_database(url)
    # libpq waits for a connection as long as TCP does (minutes when packets are dropped): every /readyz probe and
    # request would hold a worker that long. A URL's own ?connect_timeout= wins.
    connect_args = {} if "connect_timeout" in u.query else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                           connect_args=connect_args)
    _postgres_planning(engine)
    return engine


# How every service's connections plan (PostgreSQL). The services look rows up by key, many at a time
# ("id = ANY(array)": a poll's inbox ids, the ledger's transfers and accounts, quota's lots). Two defaults made
# those lookups scan whole tables, at a cost growing with the table:
# * psycopg prepares a statement run 5 times and PostgreSQL then keeps one generic plan for it; planned while a
#   table was small (a fresh service), that plan is a sequential scan until the table is next ANALYZEd (the
#   ledger's lookup of a poll's transfer ids took 35-70 ms at 50k rows, a third of a core: bench/e2e_load.py).
#   force_custom_plan plans each execution for its actual keys and the table's current size (microseconds).
# * random_page_cost 4 (a spinning disk's figure) prices a few hundred index probes above reading a table of
#   ~100k rows; the tables the services probe live in memory or on SSD.
PLANNER_SETTINGS = {"plan_cache_mode": "force_custom_plan", "random_page_cost": "1.1"}
# Times come back in UTC whatever the server's default zone (a county's server is often Asia/Shanghai): what the
# services hash and compare is the UTC text they wrote.
SESSION_SETTINGS = {**PLANNER_SETTINGS, "TimeZone": "UTC"}


def _postgres_planning(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        with dbapi_conn.cursor() as cur:
            for name, value in SESSION_SETTINGS.items():
                cur.execute("SELECT set_config(%s, %s, false)", (name, value))
        dbapi_conn.commit()  # session-level settings: kept for the connection's life in the pool


def _sqlite_transactions(engine: Engine) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and defers BEGIN; take it over (the
    # SQLAlchemy-documented recipe) and use WAL so readers do not block the writer.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it returns. With WAL's NORMAL a power cut could lose a transaction
        # whose outbox rows the relay had already published (an event on Kafka its service no longer has, and
        # its position given to another). Measured here: 0.27 ms a commit, against 0.02.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # writers take the lock up front (no lock upgrade deadlocks); a long read-only snapshot (a replay)
        # asks for a deferred BEGIN so it does not block the service's writers
        deferred = conn.get_execution_options().get("sqlite_read_snapshot", False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def ensure_postgres_database(url: str) -> None:
    """Create the service's database if the server lets us (a fresh PostgreSQL has only 'postgres')."""
    u = make_url(url)
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database}).scalar()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{u.database}"')
    except DBAPIError as exc:
        # The database may exist and we may lack rights on 'postgres': connecting later will tell.
        log.debug("could not ensure database %s: %s", u.database, exc)
    finally:
        admin.dispose()


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


_RETRYABLE_PG = {"40001": "serialization_failure", "40P01": "deadlock_detected"}

try:  # the hot paths write through the transaction's psycopg connection (shared.bulk, the ledger's batches): its
    # errors arrive as psycopg's own, not wrapped by SQLAlchemy, and are database errors all the same
    from psycopg import Error as _RawError
    from psycopg import OperationalError as _RawOperationalError
except ImportError:  # pragma: no cover - psycopg is a declared dependency
    class _RawError(Exception):
        pass

    class _RawOperationalError(_RawError):
        pass

# SQLite's raw executemany path (shared.bulk.insert_tuples) raises sqlite3's own errors the same way
DB_ERRORS = (DBAPIError, _RawError, sqlite3.Error)


def retry_reason(exc: BaseException) -> str | None:
    """Name the transient failure worth retrying, or None (a SQLAlchemy error or a raw psycopg one)."""
    if isinstance(exc, DB_ERRORS):
        code = getattr(exc.orig if isinstance(exc, DBAPIError) else exc, "sqlstate", None)
        if code in _RETRYABLE_PG:
            return _RETRYABLE_PG[code]
        if isinstance(exc, OperationalError) and "database is locked" in str(exc):
            return "sqlite_locked"
    return None


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception: what SQLAlchemy wrapped, or the raw one."""
    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


def over_a_limit(exc: BaseException) -> bool:
    """PostgreSQL's "program limit exceeded" (class 54: an index row or a value too large), and SQLite's "integer
    overflow" (a sum past 64 bits): the drivers call them operational errors, but they are this statement's data, not
    a lost database, and trying again cannot help."""
    raw = driver_error(exc)
    if isinstance(raw, sqlite3.OperationalError):
        return str(raw) == "integer overflow"
    return (getattr(raw, "sqlstate", None) or "").startswith("54")


def data_exception(exc: BaseException) -> bool:
    """A value the database refuses (SQLSTATE class 22: too long for its column, out of range, a NUL in text; or
    over a limit): the input's, not a fault of ours, and the same on every try. HTTP answers it 422 invalid_value,
    a consumer dead-letters it so at once."""
    raw = driver_error(exc)
    return isinstance(exc, DataError) or over_a_limit(exc) or (getattr(raw, "sqlstate", None) or "").startswith("22")


def database_unavailable(exc: BaseException) -> bool:
    """A lost or refused connection, not this statement's data: worth the whole transaction again."""
    raw = driver_error(exc)
    operational = isinstance(exc, OperationalError) or isinstance(raw, (_RawOperationalError, sqlite3.OperationalError))
    return operational and not over_a_limit(exc)


def unique_violation(exc: BaseException) -> bool:
    """Another writer took the same key between our read and our insert (SQLAlchemy's error or the raw drivers')."""
    raw = driver_error(exc)
    return isinstance(raw, sqlite3.IntegrityError) and "UNIQUE" in str(raw) or getattr(raw, "sqlstate", None) == "23505"


def run_with_retry(service: str, fn: Callable[[], T], *, attempts: int = 8, key_races: int = 2) -> T:
    """Run ``fn`` (one whole transaction) again after a deadlock or serialization failure, and (at most
    ``key_races`` times) after another writer inserted the key it was inserting: the new run reads that row, so an
    identical re-send racing its first copy is answered as a re-send, a different one refused for what differs,
    where both once got 409 concurrent_change. A key that breaks again every time is a 409 after that."""
    races = 0
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except DB_ERRORS as exc:
            reason = retry_reason(exc)
            if reason is None and unique_violation(exc) and races < key_races:
                races, reason = races + 1, "unique_violation"
            if reason is None or attempt == attempts:
                raise
            DB_RETRIES.labels(service, reason).inc()
            time.sleep(min(0.5, 0.005 * 2**attempt) * random.random())
    raise AssertionError("unreachable")


@contextmanager
def one_moment(session: Session) -> Iterator[Session]:
    """Where a writing transaction reads, in several statements, what must be of one moment (a county's register and
    its figures): on PostgreSQL a REPEATABLE READ session of its own on the same engine, its snapshot taken at its
    first statement, as Database.read_snapshot's; under READ COMMITTED each statement saw what writers had committed
    by then. On SQLite ``session`` itself: every writer there takes the write lock at its start, none commits meanwhile."""
    engine = session.get_bind()
    if not is_postgres(engine):
        yield session
        return
    with Session(engine) as snapshot:
        snapshot.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield snapshot


class Database:
    """One service's database: engine + session factory."""

    def __init__(self, url: str, service: str):
        self.url = url
        self.service = service
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return is_postgres(self.engine)

    @contextmanager
    def read_snapshot(self) -> Iterator[Session]:
        """A session to read in whose statements all see one moment and that holds no writer up: PostgreSQL a
        REPEATABLE READ transaction (read committed gives each statement its own); SQLite a deferred BEGIN, a WAL
        snapshot without the write lock every other session takes at its start (``_sqlite_transactions``)."""
        with self.sessions() as s:
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"} if self.is_postgres
                         else {"sqlite_read_snapshot": True})
            yield s

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness only reports
            return False

    def dispose(self) -> None:
        self.engine.dispose()
