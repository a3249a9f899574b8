"""Reading tax receipts from a CSV or XLSX file the tax bureau exported. Column headers may be the API field
names or their Chinese equivalents, typed in full width or with spaces ('金额（元）'). Numeric XLSX cells are read by
their shortest decimal representation (Excel keeps numbers as binary floats; '1234.56' typed in a cell comes back as
1234.56 and is read as '1234.56').

The text is read as the assessment import reads it (``shared.text_files``): a CSV is UTF-8 (with or without BOM) or
GB18030, as Excel on Chinese Windows saves it; anything else is refused whole (422 ``import_not_text``). Amounts
typed in full width ('１２３４．５６') or with thousands grouped in threes ('1,234.56', quoted in a CSV) are read as
plain decimals; any other comma is left for the amount check to refuse. They stay text here: the intake makes them
exact fen, and more decimals than fen is that row's refusal, never rounded. A CSV row with more cells than the
header (an unquoted '1,234' splits the amount and shifts the row) is refused as ``too_many_cells`` rather than read
with a wrong amount. Credit codes are trimmed and made half-width upper case, months half-width; receipt ids and
tax kinds are taken as written."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterator

from services.settlement.domain import ReceiptError
from shared.text_files import (
    DamagedUtf8,
    NotText,
    beyond_header,
    decode_text,
    half_width,
    named_headers,
    normalize_header,
    number_text,
    split_number,
)
from shared.workbooks import FirstSheet, FormulaWithoutValue, formula_message

FIELDS = ("receipt_id", "enterprise_credit_code", "month", "tax_kind", "amount", "corrects")
ALIASES = {
    "收据编号": "receipt_id", "票证号码": "receipt_id", "完税凭证号": "receipt_id",
    "统一社会信用代码": "enterprise_credit_code", "纳税人识别号": "enterprise_credit_code",
    "所属期": "month", "税款所属期": "month", "税种": "tax_kind", "金额": "amount", "金额(元)": "amount",
    "实缴金额": "amount", "实缴金额(元)": "amount", "更正收据": "corrects", "更正": "corrects",
}
XLSX_TYPES = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",)
_ZIP = b"PK\x03\x04"  # an XLSX workbook is a zip file
# what a client sends when it does not say: the body decides between CSV and XLSX
_GENERIC_TYPES = ("text/csv", "application/csv", "text/plain", "", "application/octet-stream",
                  "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class BadRow:
    """A row the reader itself refuses (read_rows yields it in place of the row's fields)."""
    receipt_id: str | None
    reason: str
    message: str


def _field(header: object) -> str | None:
    # as the assessment import matches its headers: full-width brackets and letters made half-width, no spaces,
    # lower case ('金额（元）' -> '金额(元)', 'Amount' -> 'amount')
    name = normalize_header("" if header is None else header)
    return name if name in FIELDS else ALIASES.get(name)


def _text(value: str, field: str | None) -> str:
    text = value.strip()
    if field == "amount":
        return number_text(text)
    if field == "month":
        return half_width(text)
    if field == "enterprise_credit_code":  # as the assessment register takes it (GB 32100 codes are upper case)
        return half_width(text).upper()
    return text


def _cell(value: object, field: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return f"{value.year:04d}-{value.month:02d}" if field == "month" else value.isoformat()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    return _text(str(value), field)


def detect_format(content_type: str | None, explicit: str | None, content: bytes = b"") -> str:
    """The format asked for, else an XLSX workbook by its zip signature (whatever the content type: curl's
    ``--data-binary`` sends application/x-www-form-urlencoded, other clients application/octet-stream), else CSV
    under a text or generic content type."""
    if explicit:
        return explicit
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in XLSX_TYPES or (content[:4] == _ZIP and ctype in _GENERIC_TYPES):
        return "xlsx"
    if ctype in _GENERIC_TYPES:
        return "csv"
    raise ReceiptError("unsupported_import_format", f"content type {ctype!r}: send text/csv or an XLSX workbook")


def read_rows(content: bytes, fmt: str) -> Iterator[tuple[int, dict[str, str] | BadRow]]:
    """(row number, {field: text}) for every non-empty data row, or (row number, BadRow) for one the reader
    refuses; the header is row 1."""
    if fmt == "xlsx":
        yield from _xlsx_rows(content)
    elif fmt == "csv":
        yield from _csv_rows(content)
    else:
        raise ReceiptError("unsupported_import_format", f"format {fmt!r}: csv or xlsx")


def _mapped(header: list, values: list, row_no: int) -> tuple[int, dict[str, str]] | None:
    fields = [_field(h) for h in header]
    doc = {f: _cell(v, f) for f, v in zip(fields, values) if f}
    if not any(doc.values()):
        return None
    return row_no, doc


def _check_header(header: list) -> None:
    # Two columns read as one field (金额 and 实缴金额 are both ``amount``; 收据编号 and 票证号码 both
    # ``receipt_id``): ``_mapped`` would keep the rightmost one, so the amount recorded and settled would depend on
    # the order of the columns. Refused: the bureau says which column to send.
    named: dict[str, list[str]] = {}
    for h in header:
        if (f := _field(h)) is not None:
            named.setdefault(f, []).append(str(h).strip())
    twice = {f: names for f, names in named.items() if len(names) > 1}
    if twice:
        raise ReceiptError("import_header_ambiguous", "several columns give the same field: " + "; ".join(
            f"{f} ({', '.join(names)})" for f, names in twice.items()))
    found = set(named)
    missing = [f for f in FIELDS if f != "corrects" and f not in found]
    if missing:
        raise ReceiptError("import_header_incomplete", f"the header row lacks: {', '.join(missing)}")


def _decoded(content: bytes) -> str:
    if content[:4] == _ZIP:
        raise ReceiptError("import_not_csv", "the file is a zip archive (an XLSX workbook?), not CSV text: send it "
                                             f"as {XLSX_TYPES[0]} or with ?format=xlsx")
    try:
        return decode_text(content)
    except DamagedUtf8 as exc:
        raise ReceiptError("import_not_text", str(exc)) from None
    except NotText:
        raise ReceiptError("import_not_text", "the file is neither UTF-8 nor GB18030 text (Excel: save as "
                                              "'CSV UTF-8' or 'CSV (逗号分隔)'; not 'Unicode text')") from None


def _shifted(header: list, values: list, row_no: int) -> tuple[int, BadRow] | None:
    """A row with more cells than the header whose extra cells hold something, or with a figure in any column that
    looks split by an unquoted thousands separator (the rule of the assessment import, shared.text_files); at the
    header's width, an amount of 1-3 digits followed by a cell of three (`…,金额,备注` and `…,1,234.56`, the
    remark's cell left out by the writer: read, it would be 1 yuan)."""
    if len(values) <= len(header):
        amounts = frozenset(i for i, h in enumerate(header) if _field(h) == "amount")
        if not split_number(values, amounts):
            return None
    # a split figure in any column shifts the amount when it stands left of it (a tax base, say) or beside it
    elif not (beyond_header(header, values) or split_number(values, frozenset(range(len(header))))):
        return None
    ids = [v for h, v in zip(header, values) if _field(h) == "receipt_id"]
    return row_no, BadRow((ids[0].strip() or None) if ids else None, "too_many_cells",
                          f"{len(values)} cells under {len(header)} headers, the amount perhaps split by an unquoted "
                          "thousands separator (write 1234.56, or quote \"1,234.56\")")


def _csv_rows(content: bytes) -> Iterator[tuple[int, dict[str, str] | BadRow]]:
    # strict: a quote opened and never closed is an error at its line, not the rest of the file read into one cell
    reader = csv.reader(io.StringIO(_decoded(content), newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise ReceiptError("import_empty", "the file is empty")
        header = named_headers(header)
        _check_header(header)
        for i, values in enumerate(reader, start=2):
            if (bad := _shifted(header, values, i)) is not None:
                yield bad
            elif (m := _mapped(header, values, i)) is not None:
                yield m
    except csv.Error as exc:
        raise ReceiptError("import_not_csv", f"the CSV cannot be read near line {reader.line_num}: {exc}") from None


def _xlsx_rows(content: bytes) -> Iterator[tuple[int, dict[str, str] | BadRow]]:
    try:
        wb = FirstSheet(content)
    except Exception as exc:  # noqa: BLE001 - any unreadable workbook is the same refusal
        raise ReceiptError("import_not_xlsx", f"not a readable XLSX workbook: {exc}") from None
    try:
        rows = wb.rows()
        header = [None if isinstance(h, FormulaWithoutValue) else h for h in next(rows, None) or []]
        if not any(h is not None for h in header):
            raise ReceiptError("import_empty", "the first sheet is empty")
        _check_header(header)
        for i, values in enumerate(rows, start=2):
            formulas = [(h, v) for h, v in zip(header, values) if _field(h) and isinstance(v, FormulaWithoutValue)]
            if formulas:  # an amount (or id, month...) the file does not hold: never read as empty
                ids = [v for h, v in zip(header, values) if _field(h) == "receipt_id" and isinstance(v, str)]
                yield i, BadRow((ids[0].strip() or None) if ids else None, "formula_without_value",
                                "; ".join(formula_message(h, v) for h, v in formulas))
            elif (m := _mapped(header, list(values), i)) is not None:
                yield m
    finally:
        wb.close()
