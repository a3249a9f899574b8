"""Statement exports: CSV (UTF-8 with BOM so Excel shows Chinese headers), XLSX (summary, lines, totals sheets)
and JSON. Lines are streamed from the database, never loaded at once."""
from __future__ import annotations

import csv
import io
import json
import re
from typing import Callable, Iterable, Iterator

from services.settlement.domain.export import LINE_COLUMNS, TOTAL_COLUMNS, column_titles, line_row, total_row
from services.settlement.domain.lines import StatementLine

CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SHEETS = {"en": ("Summary", "Lines", "Totals"), "zh": ("概要", "明细", "汇总")}
SUMMARY_LABELS = {
    "en": {"statement_id": "Statement", "status": "Status", "as_of": "As of", "finalized_at": "Finalized at",
           "content_hash": "Content hash", "line_count": "Lines", "money_total": "Money total (CNY)"},
    "zh": {"statement_id": "结算单", "status": "状态", "as_of": "截止时间", "finalized_at": "定稿时间",
           "content_hash": "内容哈希", "line_count": "行数", "money_total": "金额合计(元)"},
}


# A spreadsheet runs a cell that starts with one of these as a formula. Sources are ids the departments chose
# (a receipt id "=HYPERLINK(...)" is a valid id): such text must reach finance staff as text, never run.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")  # our own figures (a net may be negative): left as they are


def _is_formula(value: str) -> bool:
    return value.startswith(_FORMULA_START) and _NUMBER.fullmatch(value) is None


def _csv_line(values: list[str]) -> str:
    """One CSV record; text a spreadsheet would take for a formula gets a leading apostrophe (OWASP's advice)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(["'" + v if _is_formula(v) else v for v in values])
    return buf.getvalue()


def _xlsx_row(ws, values: list[str]) -> list:
    """Cells of one row; text that openpyxl would write as a formula is written as text, unchanged."""
    from openpyxl.cell import WriteOnlyCell

    cells = []
    for v in values:
        cell = WriteOnlyCell(ws, value=v)
        if _is_formula(v):
            cell.data_type = "s"
        cells.append(cell)
    return cells


def csv_lines(lines: Iterable[StatementLine], headers: str) -> Iterator[bytes]:
    yield ("\ufeff" + _csv_line(column_titles(LINE_COLUMNS, headers))).encode()
    batch: list[str] = []
    for ln in lines:
        batch.append(_csv_line(list(line_row(ln, headers).values())))
        if len(batch) >= 1000:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


def csv_totals(totals: list, headers: str) -> Iterator[bytes]:
    yield ("\ufeff" + _csv_line(column_titles(TOTAL_COLUMNS, headers))).encode()
    for t in totals:
        yield _csv_line(list(total_row(t.party, t.receivable_fen, t.payable_fen, headers).values())).encode()


def xlsx(summary: dict, lines: Iterable[StatementLine], totals: list, headers: str) -> bytes:
    from openpyxl import Workbook

    language = "zh" if headers == "zh" else "en"
    wb = Workbook(write_only=True)
    names = SHEETS[language]
    ws = wb.create_sheet(names[0])
    for key, label in SUMMARY_LABELS[language].items():
        value = summary.get(key)
        ws.append(_xlsx_row(ws, [label, "" if value is None else str(value)]))  # 0 lines is "0", not blank
    ws = wb.create_sheet(names[1])
    ws.append(column_titles(LINE_COLUMNS, headers))
    for ln in lines:
        ws.append(_xlsx_row(ws, list(line_row(ln, headers).values())))  # amounts stay text: exact, never a float
    ws = wb.create_sheet(names[2])
    ws.append(column_titles(TOTAL_COLUMNS, headers))
    for t in totals:
        ws.append(_xlsx_row(ws, list(total_row(t.party, t.receivable_fen, t.payable_fen, headers).values())))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def json_document(summary: dict, lines: Iterable[StatementLine], totals: list, statistics: list,
                  line_doc: Callable[[StatementLine], dict]) -> Iterator[bytes]:
    """One JSON object, streamed: the summary fields, then totals, statistics totals and every line."""
    head = json.dumps(summary, ensure_ascii=False, default=str)[:-1]
    yield head.encode()
    yield (',"totals":' + json.dumps(totals, ensure_ascii=False)).encode()
    yield (',"statistics_totals":' + json.dumps(statistics, ensure_ascii=False)).encode()
    yield b',"lines":['
    first = True
    for ln in lines:
        yield (("" if first else ",") + json.dumps(line_doc(ln), ensure_ascii=False)).encode()
        first = False
    yield b"]}"
