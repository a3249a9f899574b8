"""Rows <-> domain values, and the small queries every part of the service shares."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Iterable, Iterator

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.assessment.domain.canonical import PLAIN_OPTIONS, canonical_json
from services.assessment.domain.enterprise import FLAG_NAMES, Enterprise, YearlyIndicators
from services.assessment.fields import indicators_from
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import indicators as I
from shared.bulk import id_in

CHUNK = 5000  # keeps IN (...) lists within every driver's parameter limits


def chunks(items: list, n: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


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


_LONG_DIGITS = re.compile(r"\d{19}")


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


def enterprise_from_row(r) -> Enterprise:
    flags = set(loads(r.flags)) if r.flags != "[]" else None  # most enterprises have none
    named = {n: n in flags for n in FLAG_NAMES} if flags else {}
    return Enterprise(credit_code=r.credit_code, name=r.name, township_code=r.township_code, in_park=r.in_park,
                      industry_code=r.industry_code, park_id=r.park_id, scale=r.scale,
                      extra_flags=frozenset(flags - set(FLAG_NAMES)) if flags else frozenset(), **named)


_REGISTER_COLUMNS = (*(E.c[k] for k in ("credit_code", "name", "county_code", "township_code", "in_park", "park_id",
                                          "industry_code", "flags", "scale")), E.c.revision)


def enterprises_by_code(s: Session, codes: Iterable[str]) -> dict[str, object]:
    """code -> its row (the columns enterprise_values gives, and revision), for the codes registered."""
    out: dict[str, object] = {}
    for chunk in chunks(sorted(set(codes))):
        rows = s.execute(select(*_REGISTER_COLUMNS).where(id_in(E.c.credit_code, chunk, s))).all()
        out.update((r.credit_code, r) for r in rows)
    return out


def registered_codes(s: Session, codes: Iterable[str]) -> set[str]:
    """Which of ``codes`` are in the register (any status)."""
    out: set[str] = set()
    for chunk in chunks(sorted(set(codes))):
        out.update(s.execute(select(E.c.credit_code).where(id_in(E.c.credit_code, chunk, s))).scalars())
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
                             .where(I.c.year == year, id_in(I.c.credit_code, chunk, s))).all()
            out.update(((r.credit_code, r.year), indicators_from_row(r)) for r in rows)
    return out


def indicators_from_row(r) -> YearlyIndicators:
    return indicators_from(r.credit_code, r.year, loads(r.figures), loads(r.sources))
