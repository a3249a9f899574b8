"""Exact amounts: integers of an asset's smallest unit inside, decimal strings outside.

Rounding rules, written once:
- parsing never rounds: more decimals than the scale allows is an error, and so is more units than
  ``MAX_UNITS``;
- a split (``split_by_weights``) gives each part the floor of its exact share and hands the remainder
  to the party named to take it, so the parts always sum to the whole;
- ``round_half_up`` is the only rounding used for derived money figures (e.g. a price times a quantity).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Hashable, Mapping, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)

# the most units one amount may have: what a BIGINT column (and the ledger's balances) can hold
MAX_UNITS = 2**63 - 1

# What a figure may look like: ASCII digits, one point, a sign. Decimal() alone also takes '1_000', '١٢٣' (any
# script's digits), 'NaN' and '1e3', which the API's decimal strings refuse: a figure must not pass through one door
# (an import file) that the others (HTTP, Kafka) shut. Full-width digits are made ASCII before (number_text).
_PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")


class AmountError(ValueError):
    """An amount that cannot be taken; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def parse_amount(text: str | int, scale: int, *, allow_zero: bool = False, allow_negative: bool = False) -> int:
    """'12.5' at scale 4 -> 125000. Floats are refused: they are not exact."""
    if isinstance(text, bool) or isinstance(text, float):
        raise AmountError("amount_not_a_decimal_string", "amounts are decimal strings, not floats")
    if isinstance(text, int):
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        raise AmountError("amount_not_a_number", f"amount {text!r} is not a decimal number")
    s = text.strip()
    if not _PLAIN_DECIMAL.fullmatch(s):
        raise AmountError("amount_not_a_number", f"amount {_shown(text)} is not a plain decimal number")
    try:
        d = Decimal(s)
    except InvalidOperation:
        raise AmountError("amount_not_a_number", f"amount {text!r} is not a decimal number") from None
    if not d.is_finite() or "e" in s.lower():
        raise AmountError("amount_not_a_number", f"amount {text!r} is not a plain decimal number")
    # integers from the digits: Decimal arithmetic would round past its context's 28 digits
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    # int() of more than 4,300 digits raises a plain ValueError (CPython's limit on int/str conversion): a figure of
    # 5,000 digits in an import row was a 500, not a refused amount. Trailing zeros are dropped first ('1.000…0' is
    # 1 however many zeros it has); what is left beyond the scale is a refusal, and more digits than MAX_UNITS has
    # is one without converting them.
    text_digits = "".join(map(str, digits))
    kept = text_digits.rstrip("0")
    exponent += len(text_digits) - len(kept)
    shift = exponent + scale
    if kept and shift < 0:
        raise AmountError(
            "amount_exceeds_scale", f"amount {_shown(text)} has more than {scale} decimal places"
        )
    if kept and len(kept) + shift > len(str(MAX_UNITS)):
        raise AmountError("amount_too_large", f"amount {_shown(text)} is more than the books can hold "
                                              f"({format_amount(MAX_UNITS, scale)})")
    units = (-1 if sign else 1) * int(kept or "0") * 10**max(shift, 0)
    if abs(units) > MAX_UNITS:
        raise AmountError("amount_too_large", f"amount {text!r} is more than the books can hold "
                                              f"({format_amount(MAX_UNITS, scale)})")
    if units < 0 and not allow_negative:
        raise AmountError("amount_must_not_be_negative", f"amount {text!r} is negative")
    if units == 0 and not allow_zero:
        raise AmountError("amount_must_not_be_zero", f"amount {text!r} is zero")
    return units


def _shown(text: str) -> str:
    """The amount as an error message quotes it: a figure of thousands of digits is cut, not echoed whole."""
    return repr(text) if len(text) <= 60 else repr(text[:40]) + f"... ({len(text)} characters)"


def format_amount(units: int, scale: int) -> str:
    """125000 at scale 4 -> '12.5000' (always exactly ``scale`` decimals)."""
    if not isinstance(units, int) or isinstance(units, bool):
        raise TypeError("units must be an int")
    sign = "-" if units < 0 else ""
    q, r = divmod(abs(units), 10**scale)
    return f"{sign}{q}.{r:0{scale}d}" if scale else f"{sign}{q}"


def to_decimal(units: int, scale: int) -> Decimal:
    return Decimal(units).scaleb(-scale)


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def mul_ratio(units: int, numerator: int, denominator: int) -> int:
    """units * numerator / denominator, floored toward zero for non-negative inputs (exact integers)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    return (units * numerator) // denominator


@dataclass(frozen=True)
class SplitPart:
    party: Hashable
    amount: int


def split_by_weights(total: int, weights: Mapping[K, int] | Sequence[tuple[K, int]], remainder_to: K) -> dict[K, int]:
    """Split ``total`` units by integer weights; every part gets floor(total*w/sum(w)) and the named
    party takes what is left, so ``sum(result.values()) == total`` always.

    Deterministic: the result depends only on the inputs. Works for negative totals (corrections) by
    splitting the absolute value and negating.
    """
    items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
    if not items:
        raise ValueError("a split needs at least one part")
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError("a split names each party once")
    if remainder_to not in keys:
        raise ValueError("the remainder must go to one of the parties")
    if any(w < 0 for _, w in items):
        raise ValueError("weights must not be negative")
    wsum = sum(w for _, w in items)
    if wsum <= 0:
        raise ValueError("weights must sum to a positive number")
    sign = -1 if total < 0 else 1
    base = abs(total)
    out = {k: (base * w) // wsum for k, w in items}
    out[remainder_to] += base - sum(out.values())
    return {k: sign * v for k, v in out.items()}


def decimal_floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))
