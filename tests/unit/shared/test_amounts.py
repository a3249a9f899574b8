import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.amounts import MAX_UNITS, AmountError, format_amount, parse_amount, split_by_weights


@pytest.mark.parametrize("text, scale, units", [("12.5", 4, 125000), ("0.0001", 4, 1), ("3", 2, 300), ("1.10", 2, 110), (" 7.000 ", 3, 7000)])
def test_parse(text, scale, units):
    assert parse_amount(text, scale) == units


@pytest.mark.parametrize(
    "text, reason",
    [("0.00001", "amount_exceeds_scale"), ("-1", "amount_must_not_be_negative"), ("0", "amount_must_not_be_zero"),
     ("abc", "amount_not_a_number"), ("1e3", "amount_not_a_number"), ("NaN", "amount_not_a_number"), ("", "amount_not_a_number"),
     (1.5, "amount_not_a_decimal_string"),
     # what Decimal() takes but no decimal string of the API does: an import file is no wider a door
     ("1_000", "amount_not_a_number"), ("\u0661\u0662\u0663", "amount_not_a_number"), ("Infinity", "amount_not_a_number"),
     ("1.2.3", "amount_not_a_number"), ("--1", "amount_not_a_number"), ("1 000", "amount_not_a_number")],
)
def test_parse_refuses_with_a_reason(text, reason):
    with pytest.raises(AmountError) as e:
        parse_amount(text, 4)
    assert e.value.reason == reason


@pytest.mark.parametrize("text, scale", [("123456789012345678", 1), ("12345678901234567.8", 2),
                                         ("-922337203685477.5807", 4), ("922337203685477580.7000", 1)])
def test_parse_never_rounds_past_decimals_28_digits(text, scale):
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("-").partition(".")
    expected = sign * int(whole + frac.ljust(scale, "0")[:scale])
    assert parse_amount(text, scale, allow_negative=True) == expected


@pytest.mark.parametrize("text, scale", [("922337203685477580.8", 1), ("123456789012345678901234567891", 4),
                                         ("123456789012345678901234567891.5", 4), ("-922337203685477.5809", 4)])
def test_more_than_the_books_can_hold_is_refused_not_rounded(text, scale):
    with pytest.raises(AmountError) as e:
        parse_amount(text, scale, allow_negative=True)
    assert e.value.reason == "amount_too_large"
    assert parse_amount(format_amount(MAX_UNITS, scale), scale) == MAX_UNITS


@pytest.mark.parametrize("text", ["1.123456789012345678901234567890123", "99999999999999.99999"])
def test_many_decimals_beyond_the_scale_are_refused_as_such(text):
    with pytest.raises(AmountError) as e:
        parse_amount(text, 4)
    assert e.value.reason == "amount_exceeds_scale"


@given(st.integers(min_value=-10**15, max_value=10**15), st.integers(min_value=0, max_value=6))
def test_format_then_parse_is_identity(units, scale):
    assert parse_amount(format_amount(units, scale), scale, allow_zero=True, allow_negative=True) == units


@given(st.integers(min_value=-10**12, max_value=10**12),
       st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=6).filter(lambda w: sum(w) > 0),
       st.data())
def test_split_parts_sum_to_the_whole(total, weights, data):
    parties = [f"p{i}" for i in range(len(weights))]
    rem = data.draw(st.sampled_from(parties))
    parts = split_by_weights(total, dict(zip(parties, weights)), rem)
    assert sum(parts.values()) == total
    for p, w in zip(parties, weights):
        if p != rem:
            assert abs(parts[p]) == abs(total) * w // sum(weights)


def test_split_remainder_goes_to_the_named_party():
    assert split_by_weights(100, {"a": 1, "b": 1, "c": 1}, "c") == {"a": 33, "b": 33, "c": 34}
