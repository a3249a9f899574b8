"""Identity checks: the unified social credit code (GB 32100) and administrative region codes."""
from __future__ import annotations

from services.quota.domain.problems import Problem

_CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CREDIT_VALUE = {c: i for i, c in enumerate(_CREDIT_CHARS)}  # _CREDIT_CHARS.index as a lookup
_CREDIT_SET = frozenset(_CREDIT_CHARS)


def credit_code_check_char(first17: str) -> str:
    total = sum(_CREDIT_CHARS.index(c) * w for c, w in zip(first17, _CREDIT_WEIGHTS))
    return _CREDIT_CHARS[(31 - total % 31) % 31]


def credit_code_problem(code: object, field: str = "enterprise_credit_code") -> Problem | None:
    # every release is checked: a set and a dict instead of a scan of the alphabet per character (same answers)
    if not isinstance(code, str) or len(code) != 18 or not _CREDIT_SET.issuperset(code):
        return Problem("credit_code_malformed", field, "18 characters of 0-9 and A-Y without I, O, S, V, Z")
    value = _CREDIT_VALUE
    total = sum(value[c] * w for c, w in zip(code, _CREDIT_WEIGHTS))
    if _CREDIT_CHARS[(31 - total % 31) % 31] != code[17]:
        return Problem("credit_code_check_failed", field, "the 18th character does not match GB 32100")
    return None


def _digits(code: str) -> bool:
    # str.isdigit() also takes full-width digits (a Chinese input method's) and those of other scripts: '３２０６１２'
    # looks like 320612 on screen and would be another county
    return code.isascii() and code.isdigit()


def county_code_problem(code: object, field: str = "county_code") -> Problem | None:
    if not isinstance(code, str) or len(code) != 6 or not _digits(code):
        return Problem("county_code_malformed", field, "a county code is 6 digits")
    return None


def township_code_problem(code: object, county_code: object, field: str = "township_code") -> Problem | None:
    """A township code is 9 digits (or the 12-digit statistical form) starting with its county's code."""
    if not isinstance(code, str) or len(code) not in (9, 12) or not _digits(code):
        return Problem("township_code_malformed", field, "a township code is 9 or 12 digits")
    if isinstance(county_code, str) and not code.startswith(county_code):
        return Problem("township_not_in_county", field, f"{code} does not lie in county {county_code}")
    return None
