"""Bulk insert of many rows (a county-year statement has hundreds of thousands of lines): PostgreSQL ``COPY``
through the session's own connection (same transaction), batched ``executemany`` elsewhere. Rows are tuples in
the table's column order: no dictionary per row, and psycopg's C copy writer adapts the values."""
from __future__ import annotations

import json
from contextlib import contextmanager
from itertools import islice
from typing import Iterable, Iterator

from psycopg.copy import QueuedLibpqWriter
from psycopg.adapt import Dumper
from psycopg.postgres import types as pg_types
from psycopg.pq import Format
from sqlalchemy import BigInteger, Integer, String, Table
from sqlalchemy.orm import Session

from services.settlement.storage.rows import CHUNK

try:  # a dependency; json does the same, slower
    import orjson
except ImportError:  # pragma: no cover
    orjson = None


def _binary_types(table: Table) -> list[str] | None:
    """The PostgreSQL types to send the columns as in binary ``COPY`` (None: a column of another type)."""
    out = []
    for c in table.columns:
        t = c.type
        if isinstance(t, BigInteger):
            out.append("int8")
        elif isinstance(t, Integer):
            out.append("int4")
        elif isinstance(t, String):  # varchar and text are received alike
            out.append("text")
        else:
            return None
    return out


@contextmanager
def copy_into(session: Session, table: Table, types: list[str] | None = None) -> Iterator:
    """An open ``COPY table FROM STDIN`` (PostgreSQL; psycopg's ``Copy``, rows in the table's column order). In
    binary format when the table has only integers and strings, or ``types`` says how to send each column:
    psycopg writes that at half the CPU of text. A column sent as ``json`` (into a text column: the bytes are the
    same) takes any Python value, written as compact JSON."""
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    raw = session.connection().connection.driver_connection  # psycopg.Connection, inside our transaction
    types = types or _binary_types(table)
    binary = " (FORMAT BINARY)" if types else ""
    with raw.cursor() as cur:
        cur.adapters.register_dumper(None, _JsonDumper)  # by OID: the columns ``types`` sends as json
        # a writer thread sends the data, so formatting the next rows goes on while the server reads these
        with cur.copy(f'COPY "{table.name}" ({columns}) FROM STDIN{binary}', writer=QueuedLibpqWriter(cur)) as copy:
            if types:
                copy.set_types(types)
            yield copy


def _json_dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` as UTF-8; orjson writes the same, faster
compact_json = orjson.dumps if orjson is not None else _json_dumps


class _JsonDumper(Dumper):
    """Compact JSON for a column sent as ``json`` in binary ``COPY``: ``compact_json`` called straight from
    psycopg's row formatting (psycopg's own json dumper adds two Python calls per value: half a million here)."""

    format = Format.BINARY
    oid = pg_types["json"].oid

    def __init__(self, cls, context=None):
        super().__init__(cls, context)
        self.dump = compact_json  # an instance attribute: no Python method in between

    def dump(self, obj) -> bytes:  # what the attribute above stands for
        return compact_json(obj)


def bulk_insert(session: Session, table: Table, rows: Iterable[tuple]) -> int:
    if session.get_bind().dialect.name == "postgresql":
        n = 0
        with copy_into(session, table) as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        return n
    columns = [c.name for c in table.columns]
    n = 0
    it = iter(rows)
    while batch := list(islice(it, CHUNK)):
        session.execute(table.insert(), [dict(zip(columns, row)) for row in batch])
        n += len(batch)
    return n
