"""Bulk insert of many rows (a county-year statement has hundreds of thousands of lines): PostgreSQL ``COPY``
through the session's own connection (same transaction), batched ``executemany`` elsewhere. Rows are tuples in
the table's column order: no dictionary per row, and psycopg's C copy writer adapts the values."""
from __future__ import annotations

from itertools import islice
from typing import Iterable

from sqlalchemy import Table
from sqlalchemy.orm import Session

from services.settlement.storage.rows import CHUNK


def bulk_insert(session: Session, table: Table, rows: Iterable[tuple]) -> int:
    columns = [c.name for c in table.columns]
    if session.get_bind().dialect.name == "postgresql":
        raw = session.connection().connection.driver_connection  # psycopg.Connection, inside our transaction
        quoted = ", ".join(f'"{c}"' for c in columns)
        n = 0
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as cp:
            for row in rows:
                cp.write_row(row)
                n += 1
        return n
    n = 0
    it = iter(rows)
    while batch := list(islice(it, CHUNK)):
        session.execute(table.insert(), [dict(zip(columns, row)) for row in batch])
        n += len(batch)
    return n
