"""Small SQL helpers the quota stores share: insert-or-ignore on both dialects, JSON columns, UTC times."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, table: Table, rows: dict | list[dict]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; returns how many rows were inserted (a redelivery inserts none)."""
    if not rows:
        return 0
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    result = session.execute(dialect.insert(table).on_conflict_do_nothing(), rows if isinstance(rows, list) else [rows])
    return max(result.rowcount or 0, 0)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive: they were written in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
