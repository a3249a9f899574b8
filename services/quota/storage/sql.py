"""Small SQL helpers the quota stores share: insert-or-ignore on both dialects, JSON columns, UTC times."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.bulk import bulk_insert, copy_binary, is_pg


def insert_ignore(session: Session, table: Table, row: dict) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING of one row; True when it was inserted (a redelivery inserts none).
    RETURNING tells, since rowcount is not reliable on every driver (psycopg 3 here reports -1)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).on_conflict_do_nothing().values(**row).returning(*table.primary_key.columns)
    return session.execute(stmt).first() is not None


def copy_rows(session: Session, table: Table, rows: list[dict]) -> None:
    """``bulk_insert`` of rows (dicts with the same keys, values of the columns' Python types), on PostgreSQL as
    a binary COPY: a batch's releases, lots and transfers asked are thousands of rows, and text COPY formats
    every value on the client. The server checks values as it does for text COPY (lengths, NOT NULL)."""
    if not rows:
        return
    if not is_pg(session):
        bulk_insert(session, table, rows)
        return
    cols = list(rows[0])
    copy_binary(session, table, cols, [[r[c] for c in cols] for r in rows])


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive: they were written in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
