"""shared.text_files: how imports read the text of county offices' files (the assessment import's rules, now used
by the settlement import too)."""
from __future__ import annotations

import pytest

from shared.amounts import parse_amount
from shared.text_files import DamagedUtf8, NotText, beyond_header, decode_text, half_width, normalize_header, number_text, split_number


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


_HEADER = "收据编号,统一社会信用代码,所属期,税种,金额（元）\n"


def test_utf8_with_a_damaged_byte_is_refused_naming_its_line_not_read_as_gb18030():
    """A UTF-8 file with one damaged byte decoded as GB18030 without error: every Chinese name in it became other
    characters, recorded as such."""
    text = _HEADER + "".join(f"T{i},91320612MA1W2B3C4D,2025-02,增值税,{i}.00\n" for i in range(30))
    data = bytearray(text.encode("utf-8"))
    line5 = data.index(b"T3,")  # the 5th line
    data[data.index("增".encode(), line5) + 1] = 0xFF
    with pytest.raises(DamagedUtf8) as e:
        decode_text(bytes(data))
    assert "line 5" in str(e.value) and "UTF-8" in str(e.value) and "GB18030" in str(e.value)
    assert isinstance(e.value, NotText)
    # the smallest file: its header and one row
    small = bytearray((_HEADER + "T1,91320612MA1W2B3C4D,2025-02,增值税,1.00\n").encode())
    small[5] = 0xFF
    with pytest.raises(DamagedUtf8, match="line 1"):
        decode_text(bytes(small))


def test_gbk_files_are_still_read_whatever_their_names():
    import random

    rnd = random.Random(11)
    common = "江苏南通如东掘港镇经济开发区有限公司化工纺织机械电子食品科技发展集团股份增值税企业所得税"
    for n in (1, 2, 5, 50, 500):
        text = _HEADER + "".join(
            f"T{i},{''.join(rnd.choice(common) for _ in range(rnd.randint(2, 14)))},2025-02,增值税,{i}.00\n"
            for i in range(n))
        assert decode_text(text.encode("gbk")) == text
    for _ in range(2000):  # short names alone, the fewest characters to judge by, are never taken for damaged UTF-8
        name = bytes(x for _ in range(rnd.randint(1, 12)) for x in (rnd.randint(0xB0, 0xF7), rnd.randint(0xA1, 0xFE)))
        decode_text(name)
