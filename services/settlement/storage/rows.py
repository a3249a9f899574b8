"""Small helpers shared by the repositories: UTC at rest, insert-or-ignore and upsert on both dialects."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone
from functools import lru_cache
from typing import Iterable, Iterator, Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.settlement.domain.periods import Period

CHUNK = 5000  # rows per INSERT, parameters per IN (...): within every driver's limits


def to_db(d: datetime) -> datetime:
    """Stored as UTC: SQLite keeps no offset, so a CST wall time would come back 8 hours off."""
    return d.astimezone(timezone.utc)


def from_db(d: datetime | None) -> datetime | None:
    if d is not None and d.tzinfo is None:
        return d.replace(tzinfo=timezone.utc)
    return d


@lru_cache(maxsize=4096)
def period(label: str) -> Period:
    """Periods parsed once per label: streaming a county-year parses the same few labels 100,000s of times."""
    return Period.parse(label)


def chunks(items: Sequence, n: int = CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _insert(session: Session, table: Table):
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


def insert_or_ignore(session: Session, table: Table, rows: Iterable[dict]) -> None:
    rows = list(rows)
    for part in chunks(rows):
        session.execute(_insert(session, table).on_conflict_do_nothing(), list(part))


def upsert(session: Session, table: Table, rows: Iterable[dict], keys: Sequence[str]) -> None:
    rows = list(rows)
    for part in chunks(rows):
        stmt = _insert(session, table)
        update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=update), list(part))


def fetch_rows(session: Session, stmt, size: int = 5000) -> Iterator[tuple]:
    """Rows of ``stmt`` as plain tuples, ``size`` at a time. On PostgreSQL straight from a psycopg server-side
    cursor (no SQLAlchemy row objects; between fetches the connection is idle, so a caller that stops early leaves
    nothing behind that would block the rollback); elsewhere through the session."""
    if session.get_bind().dialect.name != "postgresql":
        yield from session.execute(stmt.execution_options(yield_per=size))
        return
    compiled = stmt.compile(dialect=session.get_bind().dialect)
    raw = session.connection().connection.driver_connection  # psycopg.Connection, inside our transaction
    with raw.cursor(name=f"fetch_{next(_cursor_numbers)}") as cur:
        cur.execute(compiled.string, compiled.params)
        while rows := cur.fetchmany(size):
            yield from rows


_cursor_numbers = itertools.count(1)
