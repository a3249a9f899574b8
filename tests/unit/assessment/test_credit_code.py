import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.assessment.domain.credit_code import (
    AUTHORITY_TYPES,
    CHARSET,
    CreditCodeError,
    check_character,
    credit_code_problem,
    is_valid_credit_code,
    make_credit_code,
    normalize_credit_code,
    region_of,
    require_credit_code,
)


@pytest.mark.parametrize(
    "code",
    [
        "91350100M000100Y43",  # the example printed in GB 32100-2015
        "914403001922038216",  # a real enterprise's code (Shenzhen)
        "91110108551385082Q",
    ],
)
def test_known_real_codes_are_valid(code):
    assert is_valid_credit_code(code)
    assert require_credit_code(code) == code


def test_check_character_by_hand():
    # 91350100M000100Y4: values 9,1,3,5,0,1,0,0,M=21,0,0,0,1,0,0,Y=30,4
    # sum = 9*1+1*3+3*9+5*27+0+1*26+0+0+21*20+0+0+0+1*8+0+0+30*30+4*28 = 1640
    # 1640 % 31 = 28; 31 - 28 = 3 -> '3'
    assert check_character("91350100M000100Y4") == "3"


@pytest.mark.parametrize(
    "code, reason",
    [
        ("91350100M000100Y4", "wrong_length"),
        ("91350100M000100Y433", "wrong_length"),
        ("", "wrong_length"),
        ("91350100M000100I43", "invalid_character"),  # I
        ("91350100M000100O43", "invalid_character"),  # O
        ("91350100M000100Z43", "invalid_character"),  # Z
        ("91350100M000100S43", "invalid_character"),  # S
        ("91350100M000100V43", "invalid_character"),  # V
        ("91350100m000100Y43", "invalid_character"),  # lower case is not normalized by the validator
        ("91350100M000100Y4 ", "invalid_character"),
        ("B1350100M000100Y43", "bad_registration_authority"),
        ("94350100M000100Y43", "bad_organisation_type"),  # 工商 issues types 1, 2, 3 only
        ("Y2350100M000100Y43", "bad_organisation_type"),
        ("913501A0M000100Y43", "bad_region_code"),
        ("91350100M000100Y44", "check_character_mismatch"),
    ],
)
def test_each_problem_has_its_reason(code, reason):
    problem = credit_code_problem(code)
    assert problem is not None and problem.reason == reason
    with pytest.raises(CreditCodeError) as e:
        require_credit_code(code)
    assert e.value.reason == reason


def test_not_a_string():
    assert credit_code_problem(91350100).reason == "not_a_string"  # type: ignore[arg-type]


def test_normalize_then_validate():
    assert normalize_credit_code(" 91350100m000100y43\t") == "91350100M000100Y43"
    assert normalize_credit_code("９１350100M000100Y43") == "91350100M000100Y43"  # full-width digits


def test_make_credit_code_and_region():
    c = make_credit_code("91320623MA1MXXXXX")
    assert len(c) == 18 and is_valid_credit_code(c) and region_of(c) == "320623"
    with pytest.raises(CreditCodeError):
        make_credit_code("91320623MA1MXXXX")  # 16 characters
    with pytest.raises(CreditCodeError) as e:
        make_credit_code("95320623MA1MXXXXX")
    assert e.value.reason == "bad_organisation_type"


_prefix = st.builds(
    lambda auth, t, region, body: auth + t + region + body,
    st.sampled_from(["9"]),
    st.sampled_from(sorted(AUTHORITY_TYPES["9"])),
    st.text("0123456789", min_size=6, max_size=6),
    st.text(CHARSET, min_size=9, max_size=9),
)


@settings(max_examples=200, deadline=None)
@given(_prefix, st.integers(min_value=0, max_value=17), st.sampled_from(CHARSET))
def test_generated_codes_are_valid_and_any_single_change_is_caught(prefix, pos, ch):
    code = make_credit_code(prefix)
    assert is_valid_credit_code(code)
    if code[pos] != ch:
        changed = code[:pos] + ch + code[pos + 1 :]
        # weights are non-zero mod 31 (a prime), so every single substitution changes the check
        assert not is_valid_credit_code(changed)
