"""shared.text_files: how imports read the text of county offices' files (the assessment import's rules, now used
by the settlement import too)."""
from __future__ import annotations

import pytest

from shared.amounts import parse_amount
from shared.text_files import NotText, beyond_header, decode_text, half_width, normalize_header, number_text, split_number


def test_utf8_with_or_without_bom_else_gb18030_else_refused():
    assert decode_text("金额\n".encode("utf-8-sig")) == "金额\n"
    assert decode_text("金额\n".encode("utf-8")) == "金额\n"
    assert decode_text("金额,增值税\n".encode("gbk")) == "金额,增值税\n"
    with pytest.raises(NotText):
        decode_text("金额".encode("utf-16"))


@pytest.mark.parametrize("typed,plain", [
    ("１２３４．５６", "1234.56"), ("－１２", "-12"), ("１，２３４", "1234"), ("1,234,567.89", "1234567.89"),
    ("-1,234", "-1234"), ("12,5", "12,5"), ("1,23", "1,23"), ("1234,567", "1234,567"), ("12.5", "12.5"),
])
def test_number_text(typed, plain):
    assert number_text(typed) == plain


def test_number_text_never_rounds():
    assert parse_amount(number_text("１，２３４．５６"), 2) == 123456
    with pytest.raises(ValueError):
        parse_amount(number_text("1,234.567"), 2)


def test_headers_and_shifted_rows():
    assert half_width("９１３２０６１２ｍａ\u3000－") == "91320612ma -"
    assert normalize_header(" 金额（元） ") == "金额(元)" and normalize_header("Ａｍｏｕｎｔ\u3000") == "amount"
    assert beyond_header(["a", "b"], ["1", "2", "x"]) and not beyond_header(["a", "b"], ["1", "2", "", None])
    assert split_number(["T1", "1", "234.56", ""], frozenset({1}))
    assert not split_number(["T1", "1234.56", "", ""], frozenset({1}))
