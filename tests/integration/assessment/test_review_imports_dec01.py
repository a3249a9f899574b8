"""Review of the assessment intake as a county's 工信局 clerk importing department data (Dec 01), on SQLite and
PostgreSQL: files as department systems and spreadsheets really write them, and the intake topic.

Defects pinned (each test fails while its defect exists):

- a CSV cell that opens a quote and never closes it (a remark typed as ``"重点监管``) swallows every later line into
  that one cell: csv.reader is not strict, the import answers 200, ``rejected: 0``, and the rows after it are gone
  without a word (imports._read_csv);
- an XLSX sheet is read through openpyxl's read-only mode, which trusts the ``<dimension>`` the writing program
  declared: a stale one (``A1:D3`` on a sheet of 7 rows) cuts the rows (and columns) beyond it, silently; a hostile
  one (``A1:XFD1048576`` on a 5 KB file) pads every one of a million rows to 16,384 cells, and the import of a
  one-row file runs for hours (shared/workbooks.FirstSheet);
- the first sheet of the workbook is read even when it is hidden: a clerk's file with last year's figures kept in a
  hidden sheet in front of this year's imports last year's (the sheet nobody sees) and drops this year's;
- on the intake topic a credit code padded with spaces (a CHAR(20) column of a department's database) is
  dead-lettered ``invalid_payload`` by the contract's length before the handler normalizes it, while HTTP and the
  import take it;
- a register file without a 是否在园区 column is refused whole (``missing_column: in_park``) although the README says
  an entry without ``in_park`` keeps the register's, "as a file without those columns does".
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

from openpyxl import Workbook

from shared.contracts.assessment import EnterpriseReported, IndicatorsReported
from tests.support.services import ADMIN

from .conftest import TopicTail
from .test_imports_api import ENTERPRISE_HEADER, bad_rows, to_csv, upload
from .test_review_intake import INDUSTRY, TAX, figures_of, register, send, wait_handled

ROOT = Path(__file__).resolve().parents[3]


def _register(c, county, numbers, in_park: str = "否") -> None:
    rows = [[county.code(n), f"企业{n}", county.township, "C3311", in_park, ""] for n in numbers]
    out = upload(c, to_csv(ENTERPRISE_HEADER, rows), "企业台账.csv", kind="enterprises")
    assert out.status_code == 200 and out.json()["rejected"] == 0, out.text


def _with_sheet_xml(data: bytes, edit, sheet: str = "xl/worksheets/sheet1.xml") -> bytes:
    """The workbook with one part's XML rewritten by ``edit`` (as another program would have written it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            part = src.read(item.filename)
            if item.filename == sheet:
                part = edit(part.decode()).encode()
            dst.writestr(item, part)
    return out.getvalue()


def _dimension(ref: str):
    def edit(xml: str) -> str:
        xml, n = re.subn(r'<dimension ref="[^"]*"\s*/>', f'<dimension ref="{ref}"/>', xml)
        assert n == 1, "no dimension element"
        return xml
    return edit


def _xlsx(rows: list[list]) -> bytes:
    wb = Workbook()
    for r in rows:
        wb.active.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


FIGURES = ["统一社会信用代码", "年度", "用地面积(亩)", "实缴税金(万元)", "备注"]


# -- CSV: a quote opened and never closed ------------------------------------------------------------------------

def test_an_unclosed_quote_in_a_csv_does_not_silently_swallow_the_rows_after_it(api, county):
    """Line 4's remark opens a quote that nothing closes. Read leniently, lines 5-8 become the text of that remark: the
    import said 200, 3 rows, 0 rejected, and four enterprises' figures were gone without a report. Either the file is
    refused naming the line (it is not well-formed CSV), or every later row is recorded or reported."""
    _, c = api
    _register(c, county, range(1, 8))
    lines = [",".join(FIGURES)]
    for n in range(1, 8):
        remark = '"重点监管' if n == 3 else "正常"
        lines.append(f"{county.code(n)},2023,{10 + n},{100 + n},{remark}")
    data = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    r = upload(c, data, "亩均数据.csv", kind="indicators", department="工信局")
    if r.status_code == 422:
        assert r.json()["reason"] == "unreadable_file" and "line 4" in r.json()["message"], r.text
        assert all(figures_of(c, county.code(n)) is None for n in range(1, 8)), "refused, yet some rows were kept"
        return
    assert r.status_code == 200, r.text
    report = r.json()
    reported = {b["credit_code"] for b in report["bad_rows"]}
    lost = [n for n in range(4, 8) if figures_of(c, county.code(n)) is None and county.code(n) not in reported]
    assert not lost, (f"rows of enterprises {lost} (lines {[n + 1 for n in lost]}) were neither recorded nor reported: "
                      f"rows={report['rows']} rejected={report['rejected']} bad_rows={report['bad_rows']}")


# -- XLSX: the sheet's declared dimension -------------------------------------------------------------------------

def test_an_xlsx_whose_declared_dimension_is_stale_is_read_to_its_last_row(api, county):
    """Exported by a department system that wrote <dimension ref="A1:D3"/> (its first draft) and then 7 rows of 5
    columns: every row and column the sheet holds is read, not the 2 rows and 4 columns the dimension claims."""
    _, c = api
    _register(c, county, range(1, 8))
    rows = [FIGURES] + [[county.code(n), 2023, 10 + n, 100 + n, "正常"] for n in range(1, 8)]
    data = _with_sheet_xml(_xlsx(rows), _dimension("A1:D3"))
    r = upload(c, data, "亩均数据.xlsx", kind="indicators", department="工信局")
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["rows"], report["rejected"], report["outcomes"]) == (7, 0, {"recorded": 7}), report
    assert report["ignored_columns"] == ["备注"], "the 备注 column past the dimension's D was dropped unseen"
    assert figures_of(c, county.code(7))["figures"] == {"land": "17.0000", "tax": "1070000.00"}


_HOSTILE_RUN = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {root!r})
    from services.assessment.imports import ImportOptions, ImportRefused, import_file

    class Runtime:  # the parse is what is timed; a write would record the chunk's rows
        def transaction(self, fn):
            return {{}}, []

    data = open({path!r}, "rb").read()
    started = time.perf_counter()
    try:
        r = import_file(Runtime(), data, ImportOptions(kind="indicators", department="tax"), principal="t")
        out = {{"rows": r.rows, "bad": [b.line for b in r.bad_rows]}}
    except ImportRefused as exc:
        out = {{"refused": exc.reason}}
    out["seconds"] = time.perf_counter() - started
    print(json.dumps(out))
""")


def test_a_five_kilobyte_xlsx_declaring_the_whole_grid_is_read_in_seconds(tmp_path):
    """A header row, one data row, an empty <row r="1048576"/> and <dimension ref="A1:XFD1048576"/>: openpyxl's
    read-only mode then yields a million rows of 16,384 cells each, and the import walks every cell (measured ~4.5 ms a row: over an hour per
    request, in the API's thread pool). The file must be read (or refused) in seconds, the work following the cells
    it holds, not the grid it claims."""
    from services.assessment.domain.credit_code import make_credit_code

    def hostile(xml: str) -> str:  # the whole grid declared, and an empty last row
        return _dimension("A1:XFD1048576")(xml).replace("</sheetData>", '<row r="1048576"/></sheetData>')

    data = _with_sheet_xml(_xlsx([["统一社会信用代码", "年度", "用地面积(亩)"],
                                  [make_credit_code("91320623000000001"), 2023, 12.5]]), hostile)
    assert len(data) < 10_000
    path = tmp_path / "hostile.xlsx"
    path.write_bytes(data)
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", _HOSTILE_RUN.format(root=str(ROOT), path=str(path))],
                              capture_output=True, text=True, timeout=20, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the import of a {len(data)}-byte workbook was still running after "
                             f"{time.monotonic() - started:.0f} s (killed)") from None
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "refused" in out or (out["rows"], out["bad"]) == (1, []), out


# -- XLSX: which sheet ---------------------------------------------------------------------------------------------

def test_a_hidden_first_sheet_is_not_imported_in_place_of_the_visible_one(api, county):
    """The clerk keeps last year's figures in a sheet she hid, in front of this year's (the only sheet she sees, and
    the one the workbook opens on). The import read the hidden sheet: 2022's figures recorded again, 2023's not at
    all, and a report of success. What is imported is what the clerk can see (or the file is refused)."""
    _, c = api
    _register(c, county, (1, 2))
    wb = Workbook()
    old = wb.active
    old.title = "2022年(旧)"
    new = wb.create_sheet("2023年")
    for ws, year, tax in ((old, 2022, 90), (new, 2023, 120)):
        ws.append(FIGURES)
        for n in (1, 2):
            ws.append([county.code(n), year, 10, tax + n, ""])
    old.sheet_state = "hidden"
    wb.active = 1
    buf = io.BytesIO()
    wb.save(buf)
    r = upload(c, buf.getvalue(), "亩均数据.xlsx", kind="indicators", department="工信局")
    if r.status_code == 422:
        return  # refused with a reason: nothing taken that the clerk did not see
    assert r.status_code == 200, r.text
    assert figures_of(c, county.code(1), 2022) is None, "figures of the hidden sheet were imported"
    assert figures_of(c, county.code(1), 2023)["figures"]["tax"] == "1210000.00", "the visible sheet was not imported"


# -- the intake topic: a credit code as a CHAR column holds it -----------------------------------------------------

def test_kafka_takes_a_credit_code_padded_with_spaces_as_http_and_the_import_do(county, consuming_service,
                                                                               kafka_bootstrap):
    runtime, c, topic = consuming_service
    a, b, h = county.code(1), county.code(2), county.code(3)
    # HTTP and the import trim what a spreadsheet or a CHAR(20) column adds around the code
    r = c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": h + "  ", "name": "甲",
                                                       "township_code": county.township, "industry_code": "C3311"})
    assert (r.status_code, r.json()["enterprise"]["credit_code"]) == (201, h), r.text
    out = upload(c, to_csv(["统一社会信用代码", "年度", "实缴税金(元)"], [[h + "  ", "2023", "1"]]), "t.csv",
                 kind="indicators", department="tax")
    assert out.json()["outcomes"] == {"recorded": 1}, out.text
    register(c, county, b)
    dlq = TopicTail(kafka_bootstrap, f"{topic}.dlq")
    send(kafka_bootstrap, topic, EnterpriseReported(credit_code=a, name="乙", township_code=county.township,
                                                    industry_code="C3311"), INDUSTRY, credit_code=a + "  ")
    send(kafka_bootstrap, topic, IndicatorsReported(credit_code=b, year=2023, department="tax",
                                                    fields={"tax": "1.00"}), TAX, credit_code=b + "  ")
    wait_handled(runtime, 2)
    reasons = [dict(rec.headers)["dlq-reason"].decode() for rec in dlq.until(lambda _: True, timeout=2)]
    dlq.close()
    assert runtime.consumer.stats.dead_lettered == 0, f"refused on Kafka what HTTP and the import take: {reasons}"
    assert c.get(f"/v1/enterprises/{a}", headers=ADMIN).status_code == 200
    assert figures_of(c, b)["figures"] == {"tax": "1.00"}


# -- the register: a file without 是否在园区 ---------------------------------------------------------------------

def test_a_register_file_without_an_in_park_column_keeps_what_the_register_says(api, county):
    """README: an entry sent without in_park keeps the register's, "as a file without those columns does". The
    市场监管局 export the clerk refreshes names from has no 是否在园区 column: it was refused whole (missing_column)."""
    _, c = api
    _register(c, county, (1,), in_park="是")
    basic = ["统一社会信用代码", "企业名称", "乡镇代码", "行业代码"]
    r = upload(c, to_csv(basic, [[county.code(1), "企业1有限公司", county.township, "C3311"]]), "市场监管.csv",
               kind="enterprises")
    assert r.status_code == 200, r.text
    assert (r.json()["outcomes"], bad_rows(r.json())) == ({"updated": 1}, {}), r.text
    e = c.get(f"/v1/enterprises/{county.code(1)}", headers=ADMIN).json()
    assert (e["name"], e["in_park"]) == ("企业1有限公司", True), e
