"""Inserting a county's rows (100,000 at a time) straight into the driver, through shared.bulk.insert_tuples: binary
COPY on PostgreSQL (the column types come from the table), the raw sqlite3 executemany on SQLite."""
from __future__ import annotations

from operator import itemgetter
from typing import Sequence

from sqlalchemy import Table
from sqlalchemy.orm import Session

from shared.bulk import insert_tuples

__all__ = ["insert_dicts", "insert_tuples"]


def insert_dicts(session: Session, table: Table, rows: Sequence[dict]) -> None:
    """shared.bulk.bulk_insert's contract (rows with the same keys; columns not given keep their defaults)."""
    if rows:
        columns = list(rows[0])
        get = itemgetter(*columns)
        insert_tuples(session, table, columns, [get(r) for r in rows] if len(columns) > 1 else [(get(r),) for r in rows])
