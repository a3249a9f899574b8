"""The CSV fast path (fast_rows) against the careful row parsers (rows.parse_*_row): a row the fast path takes
gives exactly the careful path's value; a row the careful path refuses is never taken by the fast path.
Also the one-pass credit code check against the position-ordered one."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.assessment.domain.credit_code import CHARSET, _first_problem, _is_valid, make_credit_code
from services.assessment.domain.fast_rows import EnterpriseCells, IndicatorCells, plain_units
from services.assessment.domain.rows import (
    RowError,
    _number,
    map_enterprise_columns,
    map_indicator_columns,
    parse_enterprise_row,
    parse_indicator_row,
)
from shared.amounts import AmountError

from .factories import COUNTY, code

number_text = st.one_of(
    st.from_regex(r"-?[0-9]{1,8}(\.[0-9]{0,7})?", fullmatch=True),
    st.text(alphabet="0123456789.,-+eE _٣", max_size=10),
    st.sampled_from(["", "-0", "0.", ".5", "1,234.5", "1e3", "١٢", "+5", "12.50", "007", "1_000", "9" * 40, "9" * 19, "9" * 15 + ".5", "922337203685477580.7"]),
)


@settings(max_examples=500)
@given(number_text, st.integers(0, 6), st.booleans())
def test_plain_units_takes_only_what_parse_amount_gives_the_same(text, scale, negative_ok):
    fast = plain_units(text, scale, negative_ok)
    try:
        careful = _number(text, scale, negative_ok)
    except AmountError:
        careful = None
    if fast is not None:
        assert fast == careful
    plain = text.lstrip("-")
    whole, _, frac = plain.partition(".")
    if careful is not None and whole.isdigit() and whole.isascii() and len(frac) <= scale and len(whole) + scale <= 18 \
            and (not frac or (frac.isdigit() and frac.isascii())) and (negative_ok or not text.startswith("-")):
        assert fast == careful  # the common case is the fast path's


INDICATOR_HEADER = ["统一社会信用代码", "年度", "用地面积(亩)", "实缴税金(万元)", "销售收入", "COD(吨)", "氨氮", "工业增加值(万元)", "备注"]
good_code = st.integers(1, 10**6).map(code)
# mostly what a department's file holds, now and then what it should not
plain_number = st.from_regex(r"[0-9]{1,8}(\.[0-9]{1,2})?", fullmatch=True)
cell_number = st.one_of(*[plain_number] * 8, st.just(""), number_text)
code_cell = st.one_of(good_code, good_code, good_code, good_code.map(str.lower), good_code.map(lambda c: c[:17] + "0"),
                      good_code.map(lambda c: f" {c} "), st.sampled_from(["", "91320623ABC", "x" * 18]))
year_cell = st.sampled_from(["2023"] * 6 + [" 2023 ", "", "2022", "2023.0", "1800", "二〇二三", "02023"])


@settings(max_examples=600)
@given(code_cell, year_cell, st.lists(cell_number, min_size=6, max_size=6), st.sampled_from([None, 2023]),
       st.sampled_from([0, 0, 0, 0, -1, 1]))
def test_indicator_cells_agree_with_the_careful_parser(code_text, year_text, numbers, file_year, width):
    cells = [code_text, year_text, *numbers, "note"]
    cells = cells[:len(cells) + width] if width < 0 else cells + ["extra"] * width
    cmap = map_indicator_columns(INDICATOR_HEADER)
    fast = IndicatorCells.plan(INDICATOR_HEADER, cmap, "工信局", file_year).parse(cells)
    try:
        careful = parse_indicator_row(dict(zip(INDICATOR_HEADER, cells)), department="工信局", year=file_year, columns=cmap)
    except RowError:
        careful = None
    if fast is not None:
        assert fast == careful and fast.sources == careful.sources
        # built without __post_init__: the same attributes, dicts in the same (sorted) order
        assert vars(fast) == vars(careful) and list(fast.sources) == list(careful.sources)
        assert list(fast.emissions or ()) == list(careful.emissions or ())
        assert fast.to_plain() == careful.to_plain() and fast.set_fields() == careful.set_fields()


ENTERPRISE_HEADER = ["统一社会信用代码", "企业名称", "乡镇代码", "行业代码", "是否在园区", "园区编号", "规模", "安全隐患", "其他标记"]


@settings(max_examples=600)
@given(code_cell, st.sampled_from(["企业1", " 某厂 ", "企业2", "", "x" * 201]),
       st.sampled_from([f"{COUNTY}101", f"{COUNTY}101", f"{COUNTY}101001", "32062310", ""]),
       st.sampled_from(["C3311", "c3311", "C2614", "33", "Z1", ""]), st.sampled_from(["是", "否", "否", "TRUE", "", "maybe"]),
       st.sampled_from(["", "P-1"]), st.sampled_from(["", "", "规上", "规模以下", "big"]),
       st.sampled_from(["", "否", "是", "否", "?"]), st.sampled_from(["", "", "high_tech", "high_tech；specialized_sme", "utility"]))
def test_enterprise_cells_agree_with_the_careful_parser(code_text, name, township, industry, in_park, park, scale, hazard, extra):
    cells = [code_text, name, township, industry, in_park, park, scale, hazard, extra]
    cmap = map_enterprise_columns(ENTERPRISE_HEADER)
    fast = EnterpriseCells.plan(ENTERPRISE_HEADER, cmap).parse(cells)
    try:
        careful = parse_enterprise_row(dict(zip(ENTERPRISE_HEADER, cells)), columns=cmap)
    except RowError:
        careful = None
    if fast is not None:
        assert fast == careful and fast.flags() == careful.flags()
        assert vars(fast) == vars(careful)  # built without __post_init__: the same attributes


def test_the_fast_path_takes_plain_rows():
    cmap = map_indicator_columns(INDICATOR_HEADER)
    row = [code(7), "2023", "12.5", "183", "40000", "1.25", "0", "-3.5", "ok"]
    assert IndicatorCells.plan(INDICATOR_HEADER, cmap, "tax", None).parse(row) == parse_indicator_row(
        dict(zip(INDICATOR_HEADER, row)), department="tax", columns=cmap)
    emap = map_enterprise_columns(ENTERPRISE_HEADER)
    erow = [code(7), "企业7", f"{COUNTY}101", "c3311", "是", "P-1", "规上", "否", "high_tech"]
    assert EnterpriseCells.plan(ENTERPRISE_HEADER, emap).parse(erow) == parse_enterprise_row(
        dict(zip(ENTERPRISE_HEADER, erow)), columns=emap)


@pytest.mark.parametrize("header", [["统一社会信用代码", "年度", "tax", "tax_wan_yuan"], ["年度", "tax"]])
def test_no_fast_path_without_a_usable_header(header):
    assert IndicatorCells.plan(header, map_indicator_columns(header), "tax", 2023) is None


@settings(max_examples=1000)
@given(st.one_of(
    st.integers(0, 10**9 - 1).map(lambda n: make_credit_code(f"91{COUNTY}{n:09d}")),
    st.text(alphabet=CHARSET + "IOZSVa-٣", min_size=16, max_size=19),
    st.integers(0, 10**9 - 1).map(lambda n: make_credit_code(f"91{COUNTY}{n:09d}")).flatmap(
        lambda c: st.integers(0, 17).map(lambda i: c[:i] + ("0" if c[i] != "0" else "1") + c[i + 1:])),
))
def test_the_one_pass_credit_code_check_agrees(text):
    assert _is_valid(text) == (_first_problem(text) is None)
