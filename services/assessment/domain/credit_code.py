"""The 18-character unified social credit code (统一社会信用代码, GB 32100-2015).

Layout: 1 registration authority, 2 organisation type, 3-8 administrative region code (digits),
9-17 organisation code (GB 11714), 18 check character. Charset: 0-9 and A-Z without I, O, Z, S, V.
Check: sum of value(char_i) * weight_i over the first 17, check value = 31 - sum % 31, 31 -> 0.
The organisation code's own GB 11714 check is not verified: registries hold codes whose body predates it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from operator import mul

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters; value = index
_VALUE = {c: i for i, c in enumerate(CHARSET)}
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
LENGTH = 18

# registration authority -> organisation types it may issue (GB 32100-2015 table 1 and its amendments)
AUTHORITY_TYPES: dict[str, frozenset[str]] = {
    "1": frozenset("1239"),  # 机构编制
    "2": frozenset("19"),  # 外交
    "3": frozenset("123459"),  # 司法行政
    "4": frozenset("19"),  # 文化
    "5": frozenset("1239"),  # 民政
    "6": frozenset("129"),  # 旅游
    "7": frozenset("129"),  # 宗教
    "8": frozenset("19"),  # 工会
    "9": frozenset("123"),  # 市场监管(工商): 企业, 个体工商户, 农民专业合作社
    "A": frozenset("19"),  # 中央军委改革和编制办公室
    "N": frozenset("1239"),  # 农业农村
    "Y": frozenset("1"),  # 其他
}


@dataclass(frozen=True)
class CreditCodeProblem:
    reason: str  # machine-readable: wrong_length, invalid_character, bad_registration_authority, ...
    message: str


class CreditCodeError(ValueError):
    def __init__(self, problem: CreditCodeProblem):
        super().__init__(problem.message)
        self.reason = problem.reason
        self.problem = problem


def check_character(prefix17: str) -> str:
    """The check character for 17 valid characters."""
    total = sum(_VALUE[c] * w for c, w in zip(prefix17, WEIGHTS))
    value = 31 - total % 31
    return CHARSET[0 if value == 31 else value]


def _bad_chars(text: str) -> list[tuple[int, str]]:
    return [(i + 1, c) for i, c in enumerate(text) if c not in _VALUE]


def problem_with_prefix(prefix17: str) -> CreditCodeProblem | None:
    """Everything but the check character (positions 1-17)."""
    if not isinstance(prefix17, str):
        return CreditCodeProblem("not_a_string", "a credit code is a string")
    bad = _bad_chars(prefix17)
    if bad:
        pos, ch = bad[0]
        return CreditCodeProblem(
            "invalid_character",
            f"character {ch!r} at position {pos} is not allowed (0-9, A-Z without I, O, Z, S, V)",
        )
    authority, org_type, region = prefix17[0], prefix17[1], prefix17[2:8]
    if authority not in AUTHORITY_TYPES:
        return CreditCodeProblem(
            "bad_registration_authority", f"{authority!r} is not a registration authority code"
        )
    if org_type not in AUTHORITY_TYPES[authority]:
        return CreditCodeProblem(
            "bad_organisation_type",
            f"{org_type!r} is not an organisation type of registration authority {authority!r}",
        )
    if not region.isdigit() or not region.isascii():
        return CreditCodeProblem("bad_region_code", f"region code {region!r} (positions 3-8) must be 6 digits")
    return None


_AUTHORITY_AND_TYPE = frozenset(a + t for a, types in AUTHORITY_TYPES.items() for t in types)
_VALUE_OF = _VALUE.__getitem__


@functools.lru_cache(maxsize=1 << 18)  # a county's codes are checked at parse, construction and load
def _is_valid(code: str) -> bool:
    """The whole check in one pass, for the common case of a valid code; the problem of an invalid one
    is found by the position-ordered path below."""
    if len(code) != LENGTH or code[:2] not in _AUTHORITY_AND_TYPE or not code[2:8].isdigit():
        return False
    try:
        total = sum(map(mul, map(_VALUE_OF, code[:17]), WEIGHTS))
    except KeyError:  # a character outside the charset
        return False
    value = 31 - total % 31
    return CHARSET[0 if value == 31 else value] == code[17]


def credit_code_problem(code: str) -> CreditCodeProblem | None:
    """None when ``code`` is a valid credit code, else the first problem found (in position order)."""
    if type(code) is str and _is_valid(code):
        return None
    return _first_problem(code)


def _first_problem(code: str) -> CreditCodeProblem | None:
    if not isinstance(code, str):
        return CreditCodeProblem("not_a_string", "a credit code is a string")
    if len(code) != LENGTH:
        return CreditCodeProblem("wrong_length", f"a credit code has 18 characters, got {len(code)}")
    bad = _bad_chars(code)
    if bad:
        pos, ch = bad[0]
        return CreditCodeProblem(
            "invalid_character",
            f"character {ch!r} at position {pos} is not allowed (0-9, A-Z without I, O, Z, S, V)",
        )
    problem = problem_with_prefix(code[:17])
    if problem:
        return problem
    expected = check_character(code[:17])
    if code[17] != expected:
        return CreditCodeProblem(
            "check_character_mismatch", f"check character is {code[17]!r}, expected {expected!r}"
        )
    return None


def is_valid_credit_code(code: str) -> bool:
    return credit_code_problem(code) is None


def require_credit_code(code: str) -> str:
    problem = credit_code_problem(code)
    if problem:
        raise CreditCodeError(problem)
    return code


def normalize_credit_code(text: str) -> str:
    """Trim and upper-case what people type or spreadsheets hold (full-width letters and digits too);
    validation stays strict on the result."""
    out = []
    for ch in text.strip():
        o = ord(ch)
        if 0xFF01 <= o <= 0xFF5E:  # full-width ASCII block
            ch = chr(o - 0xFEE0)
        out.append(ch)
    return "".join(out).upper()


def make_credit_code(prefix17: str) -> str:
    """Append the check character; the prefix must itself be valid (authority, type, region, charset)."""
    if not isinstance(prefix17, str) or len(prefix17) != 17:
        raise CreditCodeError(CreditCodeProblem("wrong_length", "a prefix has 17 characters"))
    problem = problem_with_prefix(prefix17)
    if problem:
        raise CreditCodeError(problem)
    return prefix17 + check_character(prefix17)


def region_of(code: str) -> str:
    """Administrative region code (positions 3-8) of a valid credit code."""
    return require_credit_code(code)[2:8]
