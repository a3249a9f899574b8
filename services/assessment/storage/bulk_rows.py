"""Inserting a county's rows (100,000 at a time) as tuples straight into the driver: binary COPY on PostgreSQL
(shared.bulk.copy_binary: the column types come from the table), one executemany of the raw sqlite3 cursor on SQLite, with the values put through the
same SQLAlchemy type processors a Core insert would use (so a DateTime is stored as SQLAlchemy stores it),
but without building and processing a parameter dict per row, which costs as much as SQLite's own work."""
from __future__ import annotations

from operator import itemgetter
from typing import Sequence

from sqlalchemy import Table
from sqlalchemy.orm import Session

from shared.bulk import copy_binary, is_pg


def insert_tuples(session: Session, table: Table, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Insert ``rows`` (tuples of values in ``columns`` order) in the session's transaction."""
    if not rows:
        return
    if is_pg(session):
        copy_binary(session, table, columns, rows)
        return
    quoted = ", ".join(f'"{c}"' for c in columns)
    raw = session.connection().connection.driver_connection  # the DBAPI connection of this transaction
    dialect = session.get_bind().dialect
    procs = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    if any(procs):
        rows = _processed(rows, procs)
    marks = ", ".join("?" * len(columns))
    raw.executemany(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})', rows)


def insert_dicts(session: Session, table: Table, rows: Sequence[dict]) -> None:
    """shared.bulk.bulk_insert's contract (rows with the same keys; columns not given keep their defaults)."""
    if rows:
        columns = list(rows[0])
        get = itemgetter(*columns)
        insert_tuples(session, table, columns, [get(r) for r in rows] if len(columns) > 1 else [(get(r),) for r in rows])


def _processed(rows: Sequence[tuple], procs: list) -> list[tuple]:
    # a column often holds one value for the whole batch (the time, the principal): process it once
    out_cols = []
    for i, proc in enumerate(procs):
        column = [r[i] for r in rows]
        if proc is not None:
            seen: dict = {}
            column = [seen[v] if v in seen else seen.setdefault(v, proc(v)) for v in column]
        out_cols.append(column)
    return list(zip(*out_cols))
