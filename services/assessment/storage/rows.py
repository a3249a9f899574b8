"""Rows <-> domain values, and the small queries every part of the service shares."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.assessment.domain.canonical import canonical_json
from services.assessment.domain.enterprise import FLAG_NAMES, Enterprise, YearlyIndicators
from services.assessment.fields import indicators_from
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import indicators as I

CHUNK = 5000  # keeps IN (...) lists within every driver's parameter limits


def chunks(items: list, n: int = CHUNK) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def dumps(value) -> str:
    return canonical_json(value)


def loads(text: str):
    return json.loads(text)


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


def enterprise_from_row(r) -> Enterprise:
    flags = set(loads(r.flags))
    named = {n: n in flags for n in FLAG_NAMES}
    return Enterprise(credit_code=r.credit_code, name=r.name, township_code=r.township_code, in_park=r.in_park,
                      industry_code=r.industry_code, park_id=r.park_id, scale=r.scale,
                      extra_flags=frozenset(flags - set(FLAG_NAMES)), **named)


def enterprises_by_code(s: Session, codes: Iterable[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for chunk in chunks(sorted(set(codes))):
        out.update((r.credit_code, r) for r in s.execute(select(E).where(E.c.credit_code.in_(chunk))).all())
    return out


def merged_indicators(s: Session, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], YearlyIndicators]:
    """(credit code, year) -> the merged figures known, for the keys that have any."""
    by_year: dict[int, set[str]] = {}
    for code, year in keys:
        by_year.setdefault(year, set()).add(code)
    out: dict[tuple[str, int], YearlyIndicators] = {}
    for year, codes in by_year.items():
        for chunk in chunks(sorted(codes)):
            rows = s.execute(select(I).where(I.c.year == year, I.c.credit_code.in_(chunk))).all()
            out.update(((r.credit_code, r.year), indicators_from_row(r)) for r in rows)
    return out


def indicators_from_row(r) -> YearlyIndicators:
    return indicators_from(r.credit_code, r.year, loads(r.figures), loads(r.sources))
