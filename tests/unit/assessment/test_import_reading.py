"""Reading department files: CSV in UTF-8 (with or without BOM) or GB18030, XLSX; lines as the user sees them."""
import io

import pytest
from openpyxl import Workbook

from services.assessment.imports import ImportRefused, read_table


def test_csv_lines_count_quoted_line_breaks():
    data = '统一社会信用代码,名称\n"A","one"\n"B","two\nlines"\n"C","three"\n'.encode("utf-8-sig")
    fmt, headers, rows = read_table(data)
    assert (fmt, headers) == ("csv", ["统一社会信用代码", "名称"])
    assert [(line, row["统一社会信用代码"]) for line, row in rows] == [(2, "A"), (3, "B"), (5, "C")]


def test_gb18030_csv_as_excel_saves_it():
    data = "企业名称,乡镇代码\n某某化工,320623101\n".encode("gb18030")
    _, headers, rows = read_table(data)
    assert headers == ["企业名称", "乡镇代码"] and list(rows) == [(2, {"企业名称": "某某化工", "乡镇代码": "320623101"})]


def test_xlsx_first_sheet_with_sheet_row_numbers():
    wb = Workbook()
    wb.active.append(["year", "land"])
    wb.active.append([2023, 12.5])
    buf = io.BytesIO()
    wb.save(buf)
    fmt, headers, rows = read_table(buf.getvalue())
    assert (fmt, headers, list(rows)) == ("xlsx", ["year", "land"], [(2, {"year": 2023, "land": 12.5})])


def test_unreadable_and_empty_files():
    with pytest.raises(ImportRefused) as err:
        read_table(b"")
    assert err.value.reason == "empty_file"
    with pytest.raises(ImportRefused) as err:
        read_table(b"PK\x03\x04not a zip")
    assert err.value.reason == "unreadable_file"


def _parse_file(data: bytes, options):
    from services.assessment.imports import ImportReport, _columns, _parse, _read_cells

    fmt, headers, rows = _read_cells(data)
    report = ImportReport(kind=options.kind, format=fmt)
    good = _parse(options.kind, fmt, headers, rows, _columns(options.kind, headers, options), options, report, None)
    return good, report


def test_a_row_with_more_cells_than_headers_is_a_bad_row_not_a_wrong_figure():
    """An unquoted "1,234" shifts the row: reading its first cells would take tax 1 元. Empty trailing cells, as
    spreadsheets write them, are fine."""
    from services.assessment.domain.credit_code import make_credit_code
    from services.assessment.imports import ImportOptions

    a, b = make_credit_code("91320623000000001"), make_credit_code("91320623000000002")
    data = f"统一社会信用代码,年度,实缴税金(元)\n{a},2023,1,234\n{b},2023,567,,\n".encode("utf-8")
    good, report = _parse_file(data, ImportOptions(kind="indicators", department="tax", year=2023))
    assert [(line, v.credit_code, v.tax) for line, v in good] == [(3, b, 56700)]
    assert [(r.line, r.credit_code, [p.reason for p in r.problems]) for r in report.bad_rows] == [
        (2, a, ["too_many_cells"])]


def test_a_township_code_in_full_width_digits_is_refused_not_filed_under_another_county():
    from services.assessment.domain.credit_code import make_credit_code
    from services.assessment.imports import ImportOptions

    code = make_credit_code("91320623000000001")
    data = (f"统一社会信用代码,企业名称,乡镇代码,行业代码,是否在园区\n"
            f"{code},某某化工,３２０６２３１０１,C3311,否\n").encode("utf-8")
    good, report = _parse_file(data, ImportOptions(kind="enterprises"))
    assert good == [] and [r.line for r in report.bad_rows] == [2]
    assert report.bad_rows[0].problems[0].field == "township_code"


def test_a_split_number_before_an_empty_last_column_is_a_bad_row_not_tax_of_one_yuan():
    """With the remark column empty, an unquoted "1,234" leaves only an empty cell beyond the header: the row was
    read as tax 1 元 (remark '234'). A wider row without a split-looking figure is still read as it is."""
    from services.assessment.domain.credit_code import make_credit_code
    from services.assessment.imports import ImportOptions

    a, b, c = (make_credit_code(f"9132062300000000{n}") for n in (1, 2, 3))
    data = (f"统一社会信用代码,年度,实缴税金(元),备注\n{a},2023,1,234,\n{b},2023,12,345,678,,\n"
            f"{c},2023,567,ok,\n").encode("utf-8")
    good, report = _parse_file(data, ImportOptions(kind="indicators", department="tax", year=2023))
    assert [(line, v.credit_code, v.tax) for line, v in good] == [(4, c, 56700)]
    assert [(r.line, r.credit_code, [p.reason for p in r.problems]) for r in report.bad_rows] == [
        (2, a, ["too_many_cells"]), (3, b, ["too_many_cells"])]


def test_a_figure_typed_in_full_width_is_read_as_typed():
    """'１２．５' (a Chinese input method's full-width mode) is 12.5, as '１２.５' already was; not a refusal."""
    from services.assessment.domain.credit_code import make_credit_code
    from services.assessment.imports import ImportOptions

    a = make_credit_code("91320623000000001")
    data = f"统一社会信用代码,年度,用地面积(亩),实缴税金(万元)\n{a},２０２３,１２．５,\"１，２３４．５\"\n".encode("utf-8")
    good, report = _parse_file(data, ImportOptions(kind="indicators", department="tax"))
    assert report.bad_rows == []
    assert [(v.year, v.land, v.tax) for _, v in good] == [(2023, 125_000, 1_234_500_000)]  # 1,234.5 万元 in fen


def test_a_formula_without_a_stored_value_is_a_bad_row_not_a_missing_figure():
    """A workbook written by a script holds =B2*10000 with no value: read as an empty cell, the tax was missing and
    the enterprise scored by the policy's rule for missing values. Now the row is refused, naming the column; a
    formula Excel computed is read as its value."""
    from services.assessment.domain.credit_code import make_credit_code
    from services.assessment.imports import ImportOptions
    from tests.support.workbooks import workbook

    a, b, c = (make_credit_code(f"9132062300000000{i}") for i in (1, 2, 3))
    data = workbook([["统一社会信用代码", "年度", "实缴税金(万元)", "用地面积(亩)"],
                     [a, 2023, "=3*2", 10], [b, 2023, "=4*2", 10], [c, 2023, 7, "=5*2"]], cached={"C3": 8})
    good, report = _parse_file(data, ImportOptions(kind="indicators", department="tax", year=2023))
    assert [(line, v.credit_code, v.tax) for line, v in good] == [(3, b, 8_000_000)]
    assert [(r.line, r.credit_code, [(p.field, p.column, p.reason) for p in r.problems]) for r in report.bad_rows] == [
        (2, a, [("tax", "实缴税金(万元)", "formula_without_value")]),
        (4, c, [("land", "用地面积(亩)", "formula_without_value")])]
    assert "=3*2" in report.bad_rows[0].problems[0].message
