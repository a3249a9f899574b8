"""Exact arithmetic for scores, and the one rounding rule of the assessment domain.

Rule, written once:
- every intermediate (term, group average) is an exact ``fractions.Fraction`` built from integer units
  and ``Decimal`` policy numbers; the one figure rounded on the way is the indicator value, because the
  enterprise is shown it and nothing may be computed from digits it cannot see;
- an indicator value is shown (put in a breakdown) quantized to ``VALUE_PLACES`` = 8 decimals, and its
  term is computed from that shown value: term = weight x shown value / benchmark, exact, so anyone can
  recompute a published term from the value, weight and benchmark beside it;
- every other figure is published (put in a result) as a ``Decimal`` quantized to ``PLACES`` = 4 decimals
  with ROUND_HALF_UP (halves away from zero), computed with integer arithmetic, so no context precision is
  involved and no double rounding can happen;
- the total (the score) is the sum of the published terms (each rounded to 4 decimals) plus the bonus and
  penalty points (at most 4 decimals each, policy.py): exactly what the breakdown adds up to. Ties and
  classes use it;
- admission figures are the single exception: they are floored (see ``floor_places``) so that a figure
  shown beside a failed threshold never appears to reach it.
"""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

PLACES = 4
VALUE_PLACES = 8  # an indicator value as shown in a breakdown, and as its term uses it


def to_fraction(value: Decimal | int | Fraction) -> Fraction:
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers here")
    if isinstance(value, (Fraction, int)):
        return Fraction(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not finite")
        return Fraction(value)
    raise TypeError(f"not an exact number: {value!r}")


def quantize(value: Fraction | Decimal | int, places: int = PLACES) -> Decimal:
    """Round half up (away from zero) to ``places`` decimals, exactly."""
    f = to_fraction(value)
    sign = -1 if f < 0 else 1
    scaled = abs(f) * 10**places
    q, r = divmod(scaled.numerator, scaled.denominator)
    if 2 * r >= scaled.denominator:
        q += 1
    return Decimal(sign * q).scaleb(-places)


def floor_places(value: Fraction | Decimal | int, places: int) -> Decimal:
    """Round toward minus infinity to ``places`` decimals, exactly."""
    f = to_fraction(value) * 10**places
    return Decimal(f.numerator // f.denominator).scaleb(-places)
