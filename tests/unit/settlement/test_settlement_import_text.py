"""The tax bureau's receipt files as a Chinese county's offices produce them: CSV saved by Excel on Chinese Windows
(GB18030/GBK, not UTF-8), headers and amounts typed in full width, thousands grouped with commas. They are read
as the assessment import reads its department files (shared.text_files), or refused whole with a reason; a CSV row
shifted by an unquoted "1,234" is a bad row with its number, never an amount of 1 元."""
from __future__ import annotations

import io

import openpyxl
import pytest

from services.settlement.api.receipt_import import BadRow, read_rows
from services.settlement.domain import ReceiptError

CODE = "91320612MA1W2B3C4D"
HEADER = "收据编号,统一社会信用代码,所属期,税种,金额（元）,更正收据\n"


def receipt(rid: str, amount: str, month: str = "2026-03", code: str = CODE, kind: str = "增值税") -> dict:
    return {"receipt_id": rid, "enterprise_credit_code": code, "month": month, "tax_kind": kind, "amount": amount,
            "corrects": ""}


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "utf-8", "utf-8-sig"])
def test_csv_as_excel_saves_it_on_chinese_windows_or_as_csv_utf8(encoding):
    body = HEADER + f"T1,{CODE},2026-03,增值税,1250000.00,\n"
    assert list(read_rows(body.encode(encoding), "csv")) == [(2, receipt("T1", "1250000.00"))]


def test_full_width_amounts_months_codes_and_headers_are_read_as_typed():
    body = (HEADER + f"T1,{CODE.lower()}, ２０２６－０３ ,增值税, １２３４．５６ ,\n"
            + f"T2,{CODE},2026-03,增值税,－１２．５０,\n"
            + f"T3,{CODE},2026-03,增值税,\"１，２３４，５６７．８９\",\n")
    assert list(read_rows(body.encode("gb18030"), "csv")) == [
        (2, receipt("T1", "1234.56")), (3, receipt("T2", "-12.50")), (4, receipt("T3", "1234567.89"))]


@pytest.mark.parametrize("header", ["金额（元）", "金额 (元)", "Amount", "实缴金额（元）", " amount "])
def test_header_spellings(header):
    body = f"receipt_id,enterprise_credit_code,month,tax_kind,{header}\nT1,{CODE},2026-03,VAT,7\n"
    assert [d["amount"] for _, d in read_rows(body.encode("gb18030"), "csv")] == ["7"]


def test_thousands_separators_follow_the_assessment_rule():
    """Commas are dropped only when they group the figure in threes (a quoted "1,234.56", as Excel writes a
    formatted cell); '12,5' or '1,23' stays as it is and the amount check refuses the row. More decimals than fen
    stay for the intake to refuse: nothing here rounds."""
    body = HEADER + "".join(f"T{i},{CODE},2026-03,增值税,\"{a}\",\n" for i, a in enumerate(
        ["1,234.56", "-1,234", "12,5", "1,23", "1234,567", "1,234.567"], start=1))
    assert [d["amount"] for _, d in read_rows(body.encode(), "csv")] == [
        "1234.56", "-1234", "12,5", "1,23", "1234,567", "1234.567"]


def test_a_row_shifted_by_an_unquoted_thousands_separator_is_a_bad_row_with_its_number():
    body = (HEADER + f"T1,{CODE},2026-03,增值税,1,234.56,\n"  # "234.56" would be read as the receipt it corrects
            + f"T2,{CODE},2026-03,增值税,100.00,\n"
            + f"T3,{CODE},2026-03,增值税,12,345,T1\n"  # extra cell holds something
            + f"T4,{CODE},2026-03,增值税,200.00,,\n")  # an empty trailing cell, as spreadsheets write them: fine
    rows = list(read_rows(body.encode("gb18030"), "csv"))
    assert [(n, d.reason if isinstance(d, BadRow) else d["amount"]) for n, d in rows] == [
        (2, "too_many_cells"), (3, "100.00"), (4, "too_many_cells"), (5, "200.00")]
    assert rows[0][1].receipt_id == "T1" and "7 cells under 6 headers" in rows[0][1].message
    without_corrects = f"收据编号,统一社会信用代码,所属期,税种,金额\nT9,{CODE},2026-03,增值税,1,234\n"
    (n, bad), = read_rows(without_corrects.encode(), "csv")  # was read as 1 元
    assert (n, bad.reason) == (2, "too_many_cells")


@pytest.mark.parametrize("content", [
    (HEADER + f"T1,{CODE},2026-03,增值税,1.00,\n").encode("utf-16"),  # Excel's "Unicode text"
    b"\xff\xfe\x00\x00binary",
    "收据编号".encode("utf-8") + b"\xff,x\n",
], ids=["utf-16", "binary", "broken"])
def test_a_file_neither_utf8_nor_gb18030_is_refused_whole(content):
    with pytest.raises(ReceiptError) as e:
        list(read_rows(content, "csv"))
    assert e.value.reason == "import_not_text"
    assert "UTF-8" in str(e.value) and "GB18030" in str(e.value)


def test_a_workbook_sent_as_csv_is_refused_with_what_to_do():
    buf = io.BytesIO()
    openpyxl.Workbook().save(buf)
    with pytest.raises(ReceiptError) as e:
        list(read_rows(buf.getvalue(), "csv"))
    assert e.value.reason == "import_not_csv" and "format=xlsx" in str(e.value)


def test_xlsx_text_cells_typed_in_full_width_and_headers_in_full_width_brackets():
    wb = openpyxl.Workbook()
    wb.active.append(["收据编号", "统一社会信用代码", "所属期", "税种", "金额（元）"])
    wb.active.append(["X1", CODE, "２０２６－０３", "VAT", "１，２３４．５６"])
    wb.active.append(["X2", f" {CODE} ", "2026-03", "VAT", " 1,234.50 "])
    wb.active.append(["X3", CODE, "2026-03", "VAT", 1234.567])  # more than fen: left for the intake to refuse
    buf = io.BytesIO()
    wb.save(buf)
    assert [(n, d["month"], d["enterprise_credit_code"], d["amount"]) for n, d in read_rows(buf.getvalue(), "xlsx")] == [
        (2, "2026-03", CODE, "1234.56"), (3, "2026-03", CODE, "1234.50"), (4, "2026-03", CODE, "1234.567")]


def test_a_full_width_header_beside_its_half_width_twin_is_ambiguous():
    body = f"收据编号,统一社会信用代码,所属期,税种,金额(元),金额（元）\nT1,{CODE},2026-03,VAT,1.00,2.00\n"
    with pytest.raises(ReceiptError) as e:
        list(read_rows(body.encode("gb18030"), "csv"))
    assert e.value.reason == "import_header_ambiguous"


def test_an_amount_held_as_a_formula_without_its_value_is_refused_not_read_as_zero():
    """A receipts workbook written by a script holds =ROUND(...) with no value: read for values alone, the receipt
    was refused as amount missing at best; an amount computed by Excel is read as its value."""
    from tests.support.workbooks import workbook

    data = workbook([["收据编号", "统一社会信用代码", "所属期", "税种", "金额（元）"],
                     ["T1", "91320612MA1W2B3C4D", "2026-03", "VAT", "=1000*0.13"],
                     ["T2", "91320612MA1W2B3C4D", "2026-03", "VAT", "=2000*0.13"],
                     ["T3", "91320612MA1W2B3C4D", "2026-03", "VAT", 12.5]], cached={"E3": 260})
    rows = list(read_rows(data, "xlsx"))
    assert [(n, r.receipt_id, r.reason) for n, r in rows if not isinstance(r, dict)] == [(2, "T1", "formula_without_value")]
    assert "=1000*0.13" in rows[0][1].message
    assert [(n, r["receipt_id"], r["amount"]) for n, r in rows if isinstance(r, dict)] == [(3, "T2", "260"), (4, "T3", "12.5")]
