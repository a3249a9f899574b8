import pytest

from services.assessment.domain.rows import (
    RowError,
    find_duplicate_rows,
    map_indicator_columns,
    parse_enterprise_row,
    parse_indicator_row,
)

from .factories import MU, TONNE, WAN, YEAR, code


def reasons(err: RowError):
    return {(e.field, e.reason) for e in err.errors}


def bad_indicator_row(row, **kw):
    with pytest.raises(RowError) as e:
        parse_indicator_row(row, department="税务局", **kw)
    return e.value


def test_chinese_headers_with_units():
    row = {
        "统一社会信用代码": code(1).lower(),
        "年度": "2023",
        "用地面积（亩）": "10.5",
        "实缴税金(万元)": "12.345678",  # 万元 to the fen
        "销售收入(元)": "1,234,567.89",
        "工业增加值（万元）": "-3",
        "综合能耗(吨标准煤)": "100.125",
        "用电量(万千瓦时)": "3.5",
        "COD(吨)": "1.2",
        "氨氮": "0.0001",
        "年平均职工人数": "12",
        "备注": "anything",
    }
    f = parse_indicator_row(row, department="县工信局")
    assert (f.credit_code, f.year) == (code(1), YEAR)
    assert f.land == 105_000
    assert f.tax == 12_345_678
    assert f.revenue == 123_456_789
    assert f.value_added == -3 * WAN
    assert f.energy == 100_125
    assert f.electricity == 35_000  # kWh
    assert f.emissions == {"COD": 12_000, "NH3-N": 1}
    assert f.employees == 12
    assert set(f.sources.values()) == {"县工信局"}
    assert map_indicator_columns(row).ignored == ("备注",)


def test_english_headers_and_file_year():
    row = {"credit_code": code(2), "land_mu": "3", "tax_wan_yuan": "1.5", "electricity_kwh": "1000", "emissions_so2": "2",
           "rnd": "100.50", "employees": "7.0"}
    f = parse_indicator_row(row, department="税务局", year=YEAR)
    assert (f.land, f.tax, f.electricity, f.rnd, f.employees) == (3 * MU, 1_500_000, 1000, 10_050, 7)
    assert f.emissions == {"SO2": 2 * TONNE}


def test_pollutant_headers_in_any_letters_give_the_pollutant_as_spelled():
    # the import's pollutants come from its header table (any case, any unit word): a file never records 'nox'
    row = {"credit_code": code(2), "NOX(吨)": "1", "Cod": "2", "nh3n": "3", "EMISSIONS_VOCS": "4", "So2(t)": "5"}
    f = parse_indicator_row(row, department="生态环境局", year=YEAR)
    assert f.emissions == {"NOx": TONNE, "COD": 2 * TONNE, "NH3-N": 3 * TONNE, "VOCs": 4 * TONNE, "SO2": 5 * TONNE}


def test_empty_cells_are_not_reported_fields():
    f = parse_indicator_row({"credit_code": code(3), "year": "2023", "tax": "", "land": "  "}, department="税务局")
    assert f.tax is None and f.land is None and f.sources == {}


def test_xlsx_cells_may_be_numbers():
    f = parse_indicator_row({"credit_code": code(3), "year": 2023, "tax": 1234.5, "employees": 12.0}, department="税务局")
    assert (f.year, f.tax, f.employees) == (2023, 123_450, 12)


def test_every_bad_field_is_reported():
    err = bad_indicator_row(
        {"credit_code": code(1)[:-1] + ("0" if code(1)[-1] != "0" else "1"), "year": "二〇二三", "land": "-1", "tax": "abc",
         "revenue": "1.234", "employees": "3.5", "cod": "1e3"},
        row_number=7,
    )
    assert err.row_number == 7 and "row 7" in str(err)
    assert reasons(err) == {
        ("credit_code", "bad_credit_code"),
        ("year", "bad_year"),
        ("land", "negative"),
        ("tax", "not_a_number"),
        ("revenue", "too_many_decimals"),
        ("employees", "too_many_decimals"),
        ("emissions.COD", "not_a_number"),
    }
    cc = next(e for e in err.errors if e.field == "credit_code")
    assert cc.detail == "check_character_mismatch" and cc.column == "credit_code"


@pytest.mark.parametrize(
    "row, kw, expected",
    [
        ({"year": "2023", "tax": "1"}, {}, {("credit_code", "missing_required")}),
        ({"credit_code": "", "year": "2023"}, {}, {("credit_code", "missing_required")}),
        ({"credit_code": "913206230000000", "year": "2023"}, {}, {("credit_code", "bad_credit_code")}),
        ({"credit_code": code(1)}, {}, {("year", "missing_required")}),
        ({"credit_code": code(1), "year": "2022"}, {"year": 2023}, {("year", "year_mismatch")}),
        ({"credit_code": code(1), "year": "1900"}, {}, {("year", "bad_year")}),
        ({"credit_code": code(1), "year": "2023", "tax": "1", "实缴税金": "1"}, {}, {("tax", "duplicate_column")}),
        ({"credit_code": code(1), "year": "2023", "用地面积(平方米)": "1"}, {}, {("land", "unsupported_unit")}),
        ({"credit_code": "", "year": None}, {}, {("row", "empty_row")}),
    ],
)
def test_bad_rows(row, kw, expected):
    assert reasons(bad_indicator_row(row, **kw)) == expected


def test_credit_code_problem_is_specific():
    err = bad_indicator_row({"credit_code": "91320623000000001I", "year": "2023"})
    assert err.errors[0].detail == "invalid_character"


ENTERPRISE = {
    "统一社会信用代码": code(1),
    "企业名称": "如东某某纺织有限公司",
    "乡镇代码": "320623101",
    "是否在园区": "否",
    "行业代码": "c1711",
    "规模": "规上",
    "生态管控区": "是",
    "环保隐患": "",
    "其他标记": "high_tech、specialized_sme",
}


def test_enterprise_row():
    e = parse_enterprise_row(ENTERPRISE)
    assert (e.credit_code, e.in_park, e.industry_code, e.scale) == (code(1), False, "C1711", "规上")
    assert e.ecological_control_zone and not e.environmental_hazard
    assert e.extra_flags == {"high_tech", "specialized_sme"}
    english = parse_enterprise_row(
        {"credit_code": code(2), "name": "X", "township_code": "320623101001", "in_park": "yes", "park_id": "P1",
         "industry_code": "C33", "utility": "true"}
    )
    assert english.in_park and english.park_id == "P1" and english.utility and english.scale is None


def test_bad_enterprise_row_lists_everything():
    row = dict(ENTERPRISE, **{"企业名称": "", "乡镇代码": "3206", "是否在园区": "maybe", "行业代码": "1711X", "规模": "大",
                              "环保隐患": "?", "其他标记": "utility"})
    with pytest.raises(RowError) as e:
        parse_enterprise_row(row, row_number=3)
    assert reasons(e.value) == {
        ("name", "missing_required"),
        ("township_code", "bad_value"),
        ("in_park", "not_a_boolean"),
        ("industry_code", "bad_value"),
        ("scale", "bad_value"),
        ("environmental_hazard", "not_a_boolean"),
        ("extra_flags", "bad_value"),
    }


def test_enterprise_row_in_park_may_be_left_out_but_not_blank():
    """A file without the column says nothing of it (a registered enterprise keeps the register's, a new one is not
    in a park); a blank cell under the column is a figure missing."""
    row = {k: v for k, v in ENTERPRISE.items() if k != "是否在园区"}
    assert parse_enterprise_row(row).in_park is False
    with pytest.raises(RowError) as e:
        parse_enterprise_row({**ENTERPRISE, "是否在园区": ""})
    assert reasons(e.value) == {("in_park", "missing_required")}


def test_duplicate_rows():
    a = parse_indicator_row({"credit_code": code(1), "year": "2023", "tax": "1"}, department="税务局")
    b = parse_indicator_row({"credit_code": code(2), "year": "2023", "tax": "1"}, department="税务局")
    a_again = parse_indicator_row({"credit_code": code(1), "year": "2023", "tax": "1.00"}, department="税务局")
    a_other = parse_indicator_row({"credit_code": code(1), "year": "2023", "tax": "2"}, department="税务局")
    a_next_year = parse_indicator_row({"credit_code": code(1), "year": "2024", "tax": "2"}, department="税务局")
    dups = find_duplicate_rows([(2, a), (3, b), (4, a_again), (5, a_next_year)])
    assert [(d.key, d.row_numbers, d.identical) for d in dups] == [((code(1), 2023), (2, 4), True)]
    dups = find_duplicate_rows([(2, a), (3, a_other), (4, a_again)])
    assert [(d.row_numbers, d.identical) for d in dups] == [((2, 3, 4), False)]
    e1 = parse_enterprise_row(ENTERPRISE)
    assert find_duplicate_rows([(2, e1), (9, e1)])[0].key == (code(1),)
