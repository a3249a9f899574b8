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
