"""Bulk import of department files (CSV or XLSX) of enterprises or yearly indicators.

Every bad row is reported with its line (the header is line 1; for XLSX the sheet's row number) and every
reason, and the good rows are kept; with ``all_or_nothing`` a single bad row means nothing is written.
Rows describing the same enterprise (and year) twice: an identical repeat is reported and skipped, a
conflicting pair is refused altogether (we cannot know which figure is right). Rows are written in
chunks of ``chunk_size``, each chunk one transaction (one transaction for all with ``all_or_nothing``).

The CLI calls :func:`import_file` with a ``progress(phase, done, total)`` callback (phase 'parse' or
'write', counts in rows) to draw its bar; POST /v1/imports calls it too.
"""
from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, Literal, Sequence

from shared.gc_pause import collector_paused
from services.assessment.domain.enterprise import Enterprise, YearlyIndicators
from services.assessment.domain.fast_rows import EnterpriseCells, IndicatorCells
from services.assessment.domain.rows import (
    ColumnMap,
    FieldError,
    RowError,
    find_duplicate_rows,
    is_blank_row,
    map_enterprise_columns,
    map_indicator_columns,
    parse_enterprise_row,
    parse_indicator_row,
)
from services.assessment.events import Actor
from services.assessment.register import KEEPABLE, check_register_limits, record_parts, register_enterprises
from shared.runtime import ServiceRuntime
from shared.text_files import DamagedUtf8, NotText, beyond_header, decode_text, named_headers, split_number
from shared.workbooks import FirstSheet, FormulaWithoutValue, formula_message

Kind = Literal["enterprises", "indicators"]
_DEPARTMENT = re.compile(r"[^\s\x00-\x1f\x7f]+")  # shared.contracts.types.Identifier, as the intake takes it
Progress = Callable[[str, int, int], None]
REQUIRED_ENTERPRISE_COLUMNS = ("credit_code", "name", "township_code", "industry_code")  # in_park: kept if left out


class ImportRefused(ValueError):
    """The file as a whole cannot be taken (unreadable, a required column missing, a bad header)."""

    def __init__(self, reason: str, message: str, details: object = None):
        super().__init__(message)
        self.reason = reason
        self.details = details


@dataclass(frozen=True)
class ImportOptions:
    kind: Kind
    department: str | None = None  # whose figures (indicators only)
    year: int | None = None  # the file's year when rows have no year column
    all_or_nothing: bool = False


@dataclass(frozen=True)
class BadRow:
    line: int
    credit_code: str | None
    problems: tuple[FieldError, ...]


@dataclass
class ImportReport:
    kind: Kind
    format: Literal["csv", "xlsx"]
    rows: int = 0
    accepted: int = 0
    written: bool = False
    all_or_nothing: bool = False
    outcomes: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return len(self.bad_rows)


# -- reading ---------------------------------------------------------------------------------------------

def read_table(data: bytes) -> tuple[Literal["csv", "xlsx"], list[str], Iterator[tuple[int, dict]]]:
    """(format, headers, rows as (line, {header: cell})). XLSX is recognised by its zip signature."""
    fmt, headers, rows = _read_cells(data)
    return fmt, headers, ((line, dict(zip(headers, cells))) for line, cells in rows)


def _read_cells(data: bytes) -> tuple[Literal["csv", "xlsx"], list[str], Iterator[tuple[int, Sequence]]]:
    """Like read_table, with each row as its list of cells (CSV: strings; XLSX: what the sheet holds)."""
    if data[:4] == b"PK\x03\x04":
        return ("xlsx", *_read_xlsx(data))
    return ("csv", *_read_csv(data))


def _read_csv(data: bytes) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    try:
        text = decode_text(data)  # UTF-8, else GB18030: Excel in China saves CSV as GBK unless told otherwise
    except DamagedUtf8 as exc:
        raise ImportRefused("unreadable_file", str(exc)) from None
    except NotText:
        raise ImportRefused("unreadable_file", "the file is neither UTF-8 nor GB18030 text") from None
    # strict: a quote opened and never closed is an error at its line, not the rest of the file read into one cell
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        headers = named_headers([h.strip() for h in next(reader)])
    except StopIteration:
        raise ImportRefused("empty_file", "the file has no header row") from None

    def rows():
        line = reader.line_num + 1
        try:
            for cells in reader:
                yield line, cells
                line = reader.line_num + 1
        except csv.Error as exc:
            raise ImportRefused("unreadable_file", f"line {line}: {exc}") from None

    return headers, rows()


def _read_xlsx(data: bytes) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    try:
        wb = FirstSheet(data)
    except Exception as exc:  # noqa: BLE001 - any reason a workbook cannot be opened is the same to the caller
        raise ImportRefused("unreadable_file", f"not a readable XLSX workbook: {exc}") from None
    it = wb.rows()
    try:
        headers = [("" if h is None or isinstance(h, FormulaWithoutValue) else str(h)).strip() for h in next(it)]
    except StopIteration:
        wb.close()
        raise ImportRefused("empty_file", "the first sheet has no header row") from None

    def rows():
        yield from enumerate(it, start=2)
        wb.close()

    return headers, rows()


# -- parsing ---------------------------------------------------------------------------------------------

def _columns(kind: Kind, headers: list[str], options: ImportOptions) -> ColumnMap:
    cmap = map_enterprise_columns(headers) if kind == "enterprises" else map_indicator_columns(headers)
    if cmap.errors:
        raise ImportRefused("bad_header", "; ".join(e.message for e in cmap.errors), [vars(e) for e in cmap.errors])
    present = {c.field for c in cmap.columns.values()}
    required = REQUIRED_ENTERPRISE_COLUMNS if kind == "enterprises" else ("credit_code",)
    missing = [f for f in required if f not in present]
    if kind == "indicators" and "year" not in present and options.year is None:
        missing.append("year (or the file's year)")
    if missing:
        raise ImportRefused("missing_column", f"required columns missing: {', '.join(missing)}", {"missing": missing})
    return cmap


def _parse(kind: Kind, fmt: str, headers: list[str], rows: Iterator[tuple[int, Sequence]], cmap: ColumnMap,
           options: ImportOptions, report: ImportReport,
           progress: Progress | None) -> list[tuple[int, Enterprise | YearlyIndicators]]:
    good: list[tuple[int, Enterprise | YearlyIndicators]] = []
    # CSV rows are lists of strings: the fast path takes the plain ones, the careful path the rest
    fast = None
    figure_columns: frozenset[int] = frozenset()  # where a CSV row's unquoted "1,234" would begin
    if fmt == "csv":
        fast = (EnterpriseCells.plan(headers, cmap) if kind == "enterprises" else
                IndicatorCells.plan(headers, cmap, options.department or "", options.year))
        figure_columns = frozenset(i for i, h in enumerate(headers) if h in cmap.columns and cmap.columns[h].unit)
    for line, cells in rows:
        value = fast.parse(cells) if fast is not None else None
        if value is None:
            row = dict(zip(headers, cells))
            if beyond_header(headers, cells) or (len(cells) > len(headers) and split_number(cells, figure_columns)):
                _refuse_too_many_cells(line, headers, cells, row, cmap, report)
            elif fmt == "xlsx" and any(isinstance(c, FormulaWithoutValue) for c in cells):
                _refuse_formulas(line, row, cmap, report)
            elif is_blank_row(row):
                continue  # spreadsheets end in empty rows; they are not data
            else:
                value = _parse_row(kind, line, row, cmap, options, report)
        report.rows += 1
        if value is not None:
            try:
                _check(kind, value, line)
                good.append((line, value))
            except RowError as exc:
                report.bad_rows.append(BadRow(line, _code_of(dict(zip(headers, cells)), cmap), exc.errors))
        if progress and report.rows % 1000 == 0:
            progress("parse", report.rows, 0)
    return _drop_duplicates(good, report)


def _refuse_too_many_cells(line: int, headers: list[str], cells: Sequence, row: dict, cmap: ColumnMap,
                           report: ImportReport) -> None:
    report.bad_rows.append(BadRow(line, _code_of(row, cmap), (FieldError(
        "row", None, "too_many_cells",
        f"{len(cells)} cells under {len(headers)} headers: a number with an unquoted thousands separator?"),)))


def _refuse_formulas(line: int, row: dict, cmap: ColumnMap, report: ImportReport) -> None:
    report.bad_rows.append(BadRow(line, _code_of(row, cmap), tuple(
        FieldError(cmap.columns[h].field if h in cmap.columns else "row", h, "formula_without_value",
                   formula_message(h, c))
        for h, c in row.items() if isinstance(c, FormulaWithoutValue))))


def _parse_row(kind: Kind, line: int, row: dict, cmap: ColumnMap, options: ImportOptions,
               report: ImportReport) -> Enterprise | YearlyIndicators | None:
    try:
        if kind == "enterprises":
            return parse_enterprise_row(row, columns=cmap, row_number=line)
        return parse_indicator_row(row, department=options.department, year=options.year, columns=cmap,
                                   row_number=line)
    except RowError as exc:
        report.bad_rows.append(BadRow(line, _code_of(row, cmap), exc.errors))
        return None


def _check(kind: Kind, value: Enterprise | YearlyIndicators, line: int) -> None:
    """What a well-formed row may still break: the register's column widths, a row without figures."""
    if kind == "enterprises":
        try:
            check_register_limits(value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise RowError([FieldError("row", None, "bad_value", str(exc))], line) from None
    elif not value.sources:  # type: ignore[union-attr]
        raise RowError([FieldError("row", None, "no_figures", "the row gives no figure")], line)


def _code_of(row: dict, cmap: ColumnMap) -> str | None:
    for header, col in cmap.columns.items():
        if col.field == "credit_code":
            value = row.get(header)
            return str(value).strip() if value not in (None, "") and not isinstance(value, FormulaWithoutValue) else None
    return None


def _drop_duplicates(good: list, report: ImportReport) -> list:
    refused: dict[int, FieldError] = {}
    for dup in find_duplicate_rows(good):
        first, *rest = dup.row_numbers
        if dup.identical:
            for n in rest:
                refused[n] = FieldError("row", None, "duplicate_row", f"repeats line {first}")
        else:
            for n in dup.row_numbers:
                others = ", ".join(str(m) for m in dup.row_numbers if m != n)
                refused[n] = FieldError("row", None, "conflicting_duplicate_rows",
                                        f"the same {'enterprise and year' if len(dup.key) == 2 else 'enterprise'} "
                                        f"with other figures on line {others}")
    kept = []
    for line, value in good:
        if line in refused:
            report.bad_rows.append(BadRow(line, value.credit_code, (refused[line],)))
        else:
            kept.append((line, value))
    return kept


# -- writing ---------------------------------------------------------------------------------------------

class _Abort(Exception):
    """Rolls back an all-or-nothing import."""


def _write_chunk(uow, kind: Kind, chunk: list, actor: Actor, keep: frozenset[str] = frozenset()) -> tuple[dict[str, int], list[BadRow]]:
    """Write one chunk; returns (outcome counts, rows the database state refused). Counts are merged by
    the caller after the commit, so a retried transaction is not counted twice. ``keep``: register fields
    the file has no column for (a registered enterprise keeps them)."""
    now = datetime.now(timezone.utc)
    values = [v for _, v in chunk]
    if kind == "enterprises":
        outcomes = register_enterprises(uow.session, uow.outbox, values, actor, now, keep=keep)
        bad = []
    else:
        results = record_parts(uow.session, uow.outbox, values, actor, now)
        outcomes = [r.result for r in results]
        bad = [BadRow(line, v.credit_code, (FieldError("credit_code" if r.reason == "enterprise_not_registered" else "row",
                                                       None, r.reason or "refused", r.message or ""),))
               for (line, v), r in zip(chunk, results) if r.result == "refused"]
    counts: dict[str, int] = {}
    for o in outcomes:
        if o != "refused":
            counts[o] = counts.get(o, 0) + 1
    return counts, bad


def _count(report: ImportReport, counts: dict[str, int]) -> None:
    for k, n in counts.items():
        report.outcomes[k] = report.outcomes.get(k, 0) + n


def import_file(runtime: ServiceRuntime, data: bytes, options: ImportOptions, *, principal: str,
                progress: Progress | None = None, chunk_size: int = 5000) -> ImportReport:
    if options.kind not in ("enterprises", "indicators"):
        raise ImportRefused("bad_kind", "kind is enterprises or indicators")
    if options.kind == "indicators" and not options.department:
        raise ImportRefused("department_required", "an indicators file says which department's figures it holds")
    # checked here as the HTTP and Kafka intake check them (1990-2200; shared.contracts.types.Identifier): a file
    # year out of range failed every row's YearlyIndicators with a ValueError (a 500), and a department the
    # intake could never name (spaces, over 200 characters) was stored as a part of its own, or failed the write
    if options.kind == "indicators":
        if options.year is not None and not (type(options.year) is int and 1990 <= options.year <= 2200):
            raise ImportRefused("bad_year", f"the file's year {options.year!r} is not a year from 1990 to 2200")
        if len(options.department) > 200 or not _DEPARTMENT.fullmatch(options.department):
            raise ImportRefused("bad_department", "a department is a name of at most 200 characters without spaces")
    with collector_paused():
        return _import(runtime, data, options, principal, progress, chunk_size)


def _import(runtime, data, options, principal, progress, chunk_size) -> ImportReport:
    started = time.perf_counter()
    fmt, headers, rows = _read_cells(data)
    cmap = _columns(options.kind, headers, options)
    report = ImportReport(kind=options.kind, format=fmt, all_or_nothing=options.all_or_nothing,
                          ignored_columns=list(cmap.ignored))
    good = _parse(options.kind, fmt, headers, rows, cmap, options, report, progress)
    parsed = time.perf_counter()
    report.timings["parse_seconds"] = parsed - started
    if progress:
        progress("parse", report.rows, report.rows)
    actor = Actor(principal=principal, via="import")
    keep = KEEPABLE - {c.field for c in cmap.columns.values()} if options.kind == "enterprises" else frozenset()
    if options.all_or_nothing:
        _write_all_or_nothing(runtime, options.kind, good, actor, report, progress, keep)
    else:
        _write_in_chunks(runtime, options.kind, good, actor, report, progress, chunk_size, keep)
    report.bad_rows.sort(key=lambda b: b.line)
    report.accepted = report.rows - report.rejected if report.written else 0
    report.timings["write_seconds"] = time.perf_counter() - parsed
    return report


def _write_in_chunks(runtime, kind, good, actor, report, progress, chunk_size, keep=frozenset()) -> None:
    done = 0
    for i in range(0, len(good), chunk_size):
        chunk = good[i : i + chunk_size]
        # runtime.transaction runs a chunk again when another writer (the intake topic, another import) inserted a
        # part or register row between its read and its insert: the row is then an update
        counts, bad = runtime.transaction(lambda uow: _write_chunk(uow, kind, chunk, actor, keep))
        _count(report, counts)
        report.bad_rows.extend(bad)
        done += len(chunk)
        if progress:
            progress("write", done, len(good))
    report.written = True


def _write_all_or_nothing(runtime, kind, good, actor, report, progress, keep=frozenset()) -> None:
    # the rows are checked against the database even when the file already has bad rows, so the report
    # is complete; then everything is rolled back

    def tx(uow):
        counts, bad = _write_chunk(uow, kind, good, actor, keep)
        if bad or report.bad_rows:
            raise _Abort(bad)
        return counts

    try:
        _count(report, runtime.transaction(tx))
        report.written = True
    except _Abort as abort:
        report.bad_rows.extend(abort.args[0])
    if progress:
        progress("write", len(good), len(good))
