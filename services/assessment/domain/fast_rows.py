"""The CSV fast path of row parsing: a row is a list of strings, its columns are resolved once per file, and
only the common case is handled (every cell plain and valid). Anything else gives None, and the row goes
through rows.parse_*_row, which names every problem. A row the fast path takes gives exactly the value the
careful path gives (tests/unit/assessment/test_fast_rows.py)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .credit_code import is_valid_credit_code
from .enterprise import (
    FLAG_NAMES,
    MAY_BE_NEGATIVE,
    SCALES,
    Enterprise,
    YearlyIndicators,
    checked_enterprise,
    checked_indicators,
)
from .rows import SCALE_WORDS, UNIT_SCALES, ColumnMap, bool_of, split_extra_flags

_TOWNSHIP = re.compile(r"[0-9]{9}([0-9]{3})?")  # ASCII digits, as the careful path
_INDUSTRY = re.compile(r"[A-T]([0-9]{2,4})?|[0-9]{2,4}")
# figures of up to 18 digits of units stay below shared.amounts.MAX_UNITS; longer ones take the careful path,
# which refuses those the books cannot hold
_MAX_UNIT_DIGITS = 18
_POWERS = tuple(10**n for n in range(16))
_FLAG_SET = frozenset(FLAG_NAMES)


def plain_units(text: str, scale: int, negative_ok: bool) -> int | None:
    """'12.5' at scale 4 -> 125000 for plain ASCII decimals of at most ``scale`` places; None for
    anything else (thousands separators, exponents, signs not allowed, too many places ...)."""
    negative = text[:1] == "-"
    body = text[1:] if negative else text
    whole, _, frac = body.partition(".")
    if (not whole.isdigit() or not whole.isascii() or len(frac) > scale or len(whole) + scale > _MAX_UNIT_DIGITS
            or (frac and (not frac.isdigit() or not frac.isascii()))):
        return None
    units = int(whole + frac + "0" * (scale - len(frac)))
    if negative and units:
        if not negative_ok:
            return None
        units = -units
    return units


def _positions(headers: list[str], cmap: ColumnMap) -> dict[str, tuple[int, str]]:
    """field -> (index in a row, unit); a header written twice counts where dict(zip(...)) would take it."""
    last = {h: i for i, h in enumerate(headers)}
    return {c.field: (last[h], c.unit) for h, c in cmap.columns.items() if h in last}


@dataclass(frozen=True)
class IndicatorCells:
    width: int
    code: int
    year: int | None
    figures: tuple[tuple[int, str, int, bool], ...]  # (index, field, scale, may be negative)
    department: str
    file_year: int | None

    @classmethod
    def plan(cls, headers: list[str], cmap: ColumnMap, department: str, year: int | None) -> "IndicatorCells | None":
        pos = _positions(headers, cmap)
        if cmap.errors or "credit_code" not in pos or not department or (
                year is not None and not (type(year) is int and 1990 <= year <= 2200)):
            return None  # the careful path says what is wrong
        # in the order of their field names, which is the sorted order YearlyIndicators keeps its sources
        # (and emissions) in: the dicts are made in that order and need no sorting afterwards
        figures = tuple(sorted(((i, f, UNIT_SCALES[unit], f in MAY_BE_NEGATIVE)
                                for f, (i, unit) in pos.items() if f not in ("credit_code", "year")),
                               key=lambda x: x[1]))
        return cls(len(headers), pos["credit_code"][0], pos["year"][0] if "year" in pos else None, figures,
                   department, year)

    def parse(self, cells: list[str]) -> YearlyIndicators | None:
        if len(cells) != self.width:
            return None
        code = cells[self.code].strip()
        if not is_valid_credit_code(code):
            return None
        year = self.file_year
        if self.year is not None:
            text = cells[self.year].strip()
            if text:
                if not (text.isdigit() and text.isascii() and len(text) < 6):
                    return None
                year = int(text)
                if not 1990 <= year <= 2200 or (self.file_year is not None and year != self.file_year):
                    return None
        if year is None:
            return None
        values: dict[str, int] = {}
        emissions: dict[str, int] = {}
        sources: dict[str, str] = {}
        department = self.department
        for i, f, scale, negative_ok in self.figures:
            text = cells[i].strip()
            if not text:
                continue
            # plain_units inline for the common unsigned case (a county file holds a million figures)
            whole, _, frac = text.partition(".")
            digits = whole + frac
            if whole and len(frac) <= scale and len(whole) + scale <= _MAX_UNIT_DIGITS and digits.isdigit() and digits.isascii():
                n = int(digits) * _POWERS[scale - len(frac)]
            else:
                n = plain_units(text, scale, negative_ok)
                if n is None:
                    return None
            sources[f] = department
            if f[:10] == "emissions.":
                emissions[f[10:]] = n
            else:
                values[f] = n
        return checked_indicators(code, year, values, emissions or None, sources)


@dataclass(frozen=True)
class EnterpriseCells:
    width: int
    pos: dict[str, int]

    @classmethod
    def plan(cls, headers: list[str], cmap: ColumnMap) -> "EnterpriseCells | None":
        pos = {f: i for f, (i, _) in _positions(headers, cmap).items()}
        required = ("credit_code", "name", "township_code", "industry_code", "in_park")
        if cmap.errors or any(f not in pos for f in required):
            return None
        return cls(len(headers), pos)

    def parse(self, cells: list[str]) -> Enterprise | None:
        if len(cells) != self.width:
            return None
        pos = self.pos
        code = cells[pos["credit_code"]].strip()
        name = cells[pos["name"]].strip()
        township = cells[pos["township_code"]].strip()
        industry = cells[pos["industry_code"]].strip().upper()
        in_park_text = cells[pos["in_park"]].strip()
        in_park = bool_of(in_park_text)
        if (not name or not in_park_text or in_park is None or not is_valid_credit_code(code) or not _TOWNSHIP.fullmatch(township)
                or not _INDUSTRY.fullmatch(industry)):
            return None
        named = tuple(bool_of(cells[pos[f]].strip()) if f in pos else False for f in FLAG_NAMES)
        if None in named:
            return None
        park = None
        if "park_id" in pos:
            park = cells[pos["park_id"]].strip() or None
        scale = None
        if "scale" in pos:
            text = cells[pos["scale"]].strip()
            if text:
                scale = SCALE_WORDS.get(text.lower())
                if scale not in SCALES:
                    return None
        extra: frozenset[str] = frozenset()
        if "extra_flags" in pos:
            text = cells[pos["extra_flags"]].strip()
            if text:
                extra = split_extra_flags(text)
                if extra & _FLAG_SET:
                    return None
        return checked_enterprise(code, name, township, in_park, industry, park, named, extra, scale)
