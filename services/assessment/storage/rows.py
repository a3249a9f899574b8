"""Rows <-> domain values, and the small queries every part of the service shares."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Iterable, Iterator

import orjson
from sqlalchemy import String, bindparam, func, select
from sqlalchemy.orm import Session

from services.assessment.domain.canonical import PLAIN_OPTIONS, canonical_json
from services.assessment.domain.enterprise import (
    FLAG_NAMES,
    Enterprise,
    YearlyIndicators,
    checked_enterprise,
    checked_indicators,
)
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import indicators as I
from shared.bulk import id_in, is_pg

CHUNK = 5000  # keeps IN (...) lists within every driver's parameter limits


def chunks(items: list, n: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def code_in(column, codes: list[str], s: Session):
    """``column IN codes`` with one parameter whatever the count: an array on PostgreSQL (shared.bulk.id_in),
    a JSON array read by json_each on SQLite (which still searches the column's index), instead of a bound
    parameter per code that SQLAlchemy renders and processes for every query of a 5,000-row chunk."""
    if is_pg(s):
        return id_in(column, codes, s)
    listed = func.json_each(bindparam(f"codes_{column.name}", value=orjson.dumps(codes).decode(), type_=String))
    return column.in_(select(listed.table_valued("value").c.value))


def dumps(value) -> str:
    """canonical_json of a stored value. Those are mostly plain already (figures, sources, flags), which
    orjson writes directly; anything else (Decimals, dataclasses ...) goes through to_plain first."""
    try:
        return orjson.dumps(value, option=PLAIN_OPTIONS).decode()
    except TypeError:
        return canonical_json(value)


def loads(text: str):
    """json.loads, faster: orjson reads the same values, except an integer beyond 64 bits (19 digits or more),
    which it makes a float; such a text goes to the json module."""
    if not _LONG_DIGITS.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # the json module says what is wrong (or reads what orjson refuses, such as 1e400)
    return json.loads(text)


_LONG_DIGITS = re.compile(r"[0-9]{19}")


def utc(d: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything we store is UTC
    if d is not None and d.tzinfo is None:
        return d.replace(tzinfo=timezone.utc)
    return d


def enterprise_values(e: Enterprise) -> dict:
    """The register columns an Enterprise decides (not status, revision or timestamps)."""
    return {
        "credit_code": e.credit_code, "name": e.name, "county_code": e.county_code,
        "township_code": e.township_code, "in_park": e.in_park, "park_id": e.park_id,
        "industry_code": e.industry_code, "flags": dumps(sorted(e.flags())), "scale": e.scale,
    }


ENTERPRISE_COLUMNS = tuple(E.c[k] for k in ("credit_code", "name", "township_code", "in_park", "industry_code", "park_id",
                                           "scale", "flags"))  # what enterprise_from_row reads


_NO_FLAGS = (False,) * len(FLAG_NAMES)
_EMPTY: frozenset[str] = frozenset()
_FLAG_SET = frozenset(FLAG_NAMES)


def enterprise_from_row(r) -> Enterprise:
    """The register row as the Enterprise it was written from (checked then: not checked again, as a county's
    evaluation reads 100,000 of them)."""
    if r.flags == "[]":  # most enterprises have none
        named, extra = _NO_FLAGS, _EMPTY
    else:
        flags = frozenset(loads(r.flags))
        named, extra = tuple(n in flags for n in FLAG_NAMES), flags - _FLAG_SET
    return checked_enterprise(r.credit_code, r.name, r.township_code, r.in_park, r.industry_code, r.park_id, named,
                              extra, r.scale)


_REGISTER_COLUMNS = (*(E.c[k] for k in ("credit_code", "name", "county_code", "township_code", "in_park", "park_id",
                                          "industry_code", "flags", "scale")), E.c.revision)


def enterprises_by_code(s: Session, codes: Iterable[str], *, lock: bool = False) -> dict[str, object]:
    """code -> its row (the columns enterprise_values gives, and revision), for the codes registered. ``lock``: the
    rows are held to the end of the transaction, as registered_codes(lock=True) holds them."""
    out: dict[str, object] = {}
    for chunk in chunks(sorted(set(codes))):
        q = select(*_REGISTER_COLUMNS).where(code_in(E.c.credit_code, chunk, s))
        if lock and is_pg(s):
            q = q.order_by(E.c.credit_code).with_for_update(key_share=True)
        rows = s.execute(q).all()
        out.update((r.credit_code, r) for r in rows)
    return out


def registered_codes(s: Session, codes: Iterable[str], *, lock: bool = False) -> set[str]:
    """Which of ``codes`` are in the register (any status). ``lock``: their register rows are held to the end of
    the transaction (PostgreSQL, in code order; SQLite has one writer at a time), so that writers of one
    enterprise's figures take turns: each reads the merged record the one before it wrote."""
    out: set[str] = set()
    for chunk in chunks(sorted(set(codes))):
        q = select(E.c.credit_code).where(code_in(E.c.credit_code, chunk, s))
        if lock and is_pg(s):
            q = q.order_by(E.c.credit_code).with_for_update(key_share=True)  # FOR NO KEY UPDATE
        out.update(s.execute(q).scalars())
    return out


def merged_indicators(s: Session, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], YearlyIndicators]:
    """(credit code, year) -> the merged figures known, for the keys that have any."""
    by_year: dict[int, set[str]] = {}
    for code, year in keys:
        by_year.setdefault(year, set()).add(code)
    out: dict[tuple[str, int], YearlyIndicators] = {}
    for year, codes in by_year.items():
        for chunk in chunks(sorted(codes)):
            rows = s.execute(select(I.c.credit_code, I.c.year, I.c.figures, I.c.sources)
                             .where(I.c.year == year, code_in(I.c.credit_code, chunk, s))).all()
            out.update(((r.credit_code, r.year), indicators_from_row(r)) for r in rows)
    return out


def indicators_from_row(r) -> YearlyIndicators:
    """The stored merged figures as the YearlyIndicators they were written from (fields.indicators_from, not
    checked again: the values were checked when recorded). Both JSON texts were written with sorted keys
    (storage dumps), the order YearlyIndicators keeps its dicts in."""
    values = loads(r.figures)
    emissions = None
    if any(k[:10] == "emissions." for k in values):
        emissions = {k[10:]: v for k, v in values.items() if k[:10] == "emissions."}
        values = {k: v for k, v in values.items() if k[:10] != "emissions."}
    return checked_indicators(r.credit_code, r.year, values, emissions, loads(r.sources))
