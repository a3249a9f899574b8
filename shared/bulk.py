"""Bulk writes used on hot paths (the ledger's batches, the outbox): PostgreSQL gets COPY and one-statement
array updates, which cut per-row parsing and round trips; SQLite gets executemany."""
from __future__ import annotations

from typing import Sequence

from sqlalchemy import Table, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import String


def is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def bulk_insert(session: Session, table: Table, rows: Sequence[dict]) -> None:
    """Insert ``rows`` (all with the same keys). Columns not given keep their server defaults."""
    if not rows:
        return
    if not is_pg(session):
        session.execute(table.insert(), list(rows))
        return
    cols = list(rows[0])
    quoted = ", ".join(f'"{c}"' for c in cols)
    raw = session.connection().connection.driver_connection  # the psycopg connection of this transaction
    with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
        for r in rows:
            copy.write_row([r[c] for c in cols])


def id_in(column, ids: Sequence[str], session: Session):
    """``column IN ids``; on PostgreSQL as ``= ANY(:array)``, one parameter whatever the count."""
    if is_pg(session):
        return column == any_(bindparam(f"ids_{column.name}", value=list(ids), type_=ARRAY(String)))
    return column.in_(list(ids))
