"""Indicator figures at the edges: decimal strings in the units the contracts name (land 亩, money 元,
energy tce, electricity kWh, employees persons, emissions t as 'emissions.<pollutant>') <-> the integer
units the domain keeps (0.0001 亩, fen, 0.001 tce, kWh, persons, 0.0001 t). Parsing never rounds, and refuses a
known pollutant spelled otherwise ('emissions.nox' for 'emissions.NOx'; enterprise.POLLUTANTS): the policy's
weights match names exactly, so it would be recorded and silently left out of the weighted emission total."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from services.assessment.domain.enterprise import (
    EMISSIONS_SCALE,
    MAY_BE_NEGATIVE,
    SCALAR_FIELDS,
    YearlyIndicators,
    pollutant_spelling_problem,
)
from shared.amounts import AmountError, format_amount, parse_amount

EMISSIONS = "emissions."
_POLLUTANT = re.compile(r"^[A-Za-z][A-Za-z0-9\-]{0,19}$")
UNITS = {"land": "亩", "tax": "元", "revenue": "元", "value_added": "元", "rnd": "元", "energy": "tce",
         "electricity": "kWh", "employees": "persons"}


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str
    message: str


class BadFigures(ValueError):
    def __init__(self, problems: list[FieldProblem]):
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems
        self.reason = problems[0].reason if len(problems) == 1 else "invalid_figures"


def scale_of(key: str) -> int | None:
    if key.startswith(EMISSIONS):
        return EMISSIONS_SCALE if _POLLUTANT.match(key[len(EMISSIONS):]) else None
    spec = SCALAR_FIELDS.get(key)
    return None if spec is None else spec[0]


def parse_figures(fields: Mapping[str, str]) -> dict[str, int]:
    """{'land': '12.5', 'tax': '1830000.00', 'emissions.COD': '1.2'} -> integer units; every bad field named."""
    out: dict[str, int] = {}
    problems: list[FieldProblem] = []
    for key, text in fields.items():
        scale = scale_of(key)
        if scale is None:
            problems.append(FieldProblem(key, "unknown_field", f"{key!r} is not an indicator field "
                                         f"({', '.join(SCALAR_FIELDS)} or emissions.<pollutant>)"))
            continue
        if key[:len(EMISSIONS)] == EMISSIONS and (spelling := pollutant_spelling_problem(key[len(EMISSIONS):])):
            reason, canonical = spelling
            problems.append(FieldProblem(key, reason, f"{key!r}: the pollutant is spelled {canonical!r} "
                                         f"(field {EMISSIONS}{canonical}); another spelling would not be weighted"))
            continue
        try:
            out[key] = parse_amount(text, scale, allow_zero=True, allow_negative=key in MAY_BE_NEGATIVE)
        except AmountError as exc:
            problems.append(FieldProblem(key, exc.reason, str(exc)))
    if problems:
        raise BadFigures(problems)
    return out


def format_figures(figures: Mapping[str, int]) -> dict[str, str]:
    out = {}
    for k, v in sorted(figures.items()):
        scale = _SCALES.get(k)
        if scale is None:
            scale = scale_of(k) or 0
            if len(_SCALES) < 256:  # pollutant names repeat
                _SCALES[k] = scale
        if type(v) is int and v >= 0:  # format_amount's common case, inline (a county import formats a million)
            out[k] = "%d.%0*d" % (v // _POWERS[scale], scale, v % _POWERS[scale]) if scale else str(v)
        else:
            out[k] = format_amount(v, scale)
    return out


_SCALES = {k: spec[0] for k, spec in SCALAR_FIELDS.items()}
_POWERS = [10**n for n in range(16)]


def part_from_figures(credit_code: str, year: int, department: str, figures: Mapping[str, int]) -> YearlyIndicators:
    """One department's part (every field sourced to it)."""
    scalars, emissions = _split(figures)
    return YearlyIndicators.part(credit_code, year, department, **scalars, emissions=emissions or None)


def indicators_from(credit_code: str, year: int, figures: Mapping[str, int], sources: Mapping[str, str]) -> YearlyIndicators:
    scalars, emissions = _split(figures)
    return YearlyIndicators(credit_code=credit_code, year=year, emissions=emissions if emissions else None,
                            sources=sources, **scalars)


def _split(figures: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    scalars: dict[str, int] = {}
    emissions: dict[str, int] = {}
    n = len(EMISSIONS)
    for k, v in figures.items():
        if k[:n] == EMISSIONS:
            emissions[k[n:]] = v
        else:
            scalars[k] = v
    return scalars, emissions
