"""Bulk import of CSV and XLSX department files through POST /v1/imports, on SQLite and PostgreSQL: every
bad row is reported with its line and reasons and the good ones are kept, or none with all_or_nothing."""
from __future__ import annotations

import csv
import io

from openpyxl import Workbook
from sqlalchemy import text

from services.assessment.imports import ImportOptions, import_file
from tests.support.services import ADMIN, auth


ENTERPRISE_HEADER = ["统一社会信用代码", "企业名称", "乡镇代码", "行业代码", "是否在园区", "园区编号"]
INDICATOR_HEADER = ["统一社会信用代码", "年度", "用地面积(亩)", "实缴税金(万元)", "用电量(万千瓦时)", "备注"]
def indicator_rows(county, numbers_as_text: bool = True) -> list[list]:
    n = (lambda v: v) if numbers_as_text else (lambda v: float(v) if "." in v else int(v))
    return [
        [county.code(1), "2023", n("12.5"), n("183"), n("25"), "ok"],  # line 2
        [county.bad_code(5), "2023", n("10"), n("1"), n("1"), ""],  # 3: bad credit code
        [county.code(2), "2023", n("-3"), n("1"), n("1"), ""],  # 4: negative land
        [county.code(3), "2023", n("10"), "abc", n("1"), ""],  # 5: non-numeric
        [county.code(1), "2023", n("12.5"), n("183"), n("25"), "ok"],  # 6: repeats line 2
        [county.code(2), "2023", n("8"), n("40.5"), n("12"), ""],  # 7
        [county.code(3), "2023", n("10"), n("5"), n("1"), ""],  # 8: conflicts with 9
        [county.code(3), "2023", n("10"), n("6"), n("1"), ""],  # 9
        [county.code(9), "2023", n("10"), n("6"), n("1"), ""],  # 10: not in the register
        ["", "", "", "", "", ""],  # blank: not a row
    ]


EXPECTED_BAD = {3: ["bad_credit_code"], 4: ["negative"], 5: ["not_a_number"], 6: ["duplicate_row"],
                8: ["conflicting_duplicate_rows"], 9: ["conflicting_duplicate_rows"], 10: ["enterprise_not_registered"]}


def to_csv(header: list, rows: list[list]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def to_xlsx(header: list, rows: list[list]) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append([None if v == "" else v for v in r])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def register_file(county) -> bytes:
    rows = [[county.code(i), f"企业{i}", county.township, "C3311", "否", ""] for i in (1, 2, 3)]
    rows.append([county.bad_code(5), "坏码", county.township, "C3311", "否", ""])
    rows.append([county.code(4), "", county.township, "C3311", "maybe", ""])
    return to_csv(ENTERPRISE_HEADER, rows)


def upload(c, data: bytes, filename: str, headers=ADMIN, **form):
    return c.post("/v1/imports", headers=headers, files={"file": (filename, data, "application/octet-stream")},
                  data={k: str(v) for k, v in form.items()})


def bad_rows(report: dict) -> dict[int, list[str]]:
    return {b["line"]: [p["reason"] for p in b["problems"]] for b in report["bad_rows"]}


def test_csv_and_xlsx_keep_the_good_rows_and_report_every_bad_one(county, service):
    runtime, c, _ = service
    reg = upload(c, register_file(county), "register.csv", kind="enterprises")
    assert reg.status_code == 200, reg.text
    r = reg.json()
    assert (r["rows"], r["accepted"], r["outcomes"]) == (5, 3, {"created": 3})
    assert bad_rows(r) == {5: ["bad_credit_code"], 6: ["missing_required", "not_a_boolean"]}

    for data, name in ((to_csv(INDICATOR_HEADER, indicator_rows(county)), "tax.csv"),
                       (to_xlsx(INDICATOR_HEADER, indicator_rows(county, numbers_as_text=False)), "tax.xlsx")):
        out = upload(c, data, name, kind="indicators", department="tax").json()
        assert out["format"] == name.rsplit(".", 1)[1]
        assert (out["rows"], out["rejected"], out["written"]) == (9, 7, True), out
        assert bad_rows(out) == EXPECTED_BAD, name
        assert out["ignored_columns"] == ["备注"]
        first = out["bad_rows"][0]
        assert first["credit_code"] == county.bad_code(5) and first["problems"][0]["column"] == "统一社会信用代码"
        # the first file records two parts; the second (same figures) changes nothing
        assert out["outcomes"] == ({"recorded": 2} if name.endswith("csv") else {"unchanged": 2})

    figures = c.get(f"/v1/enterprises/{county.code(2)}/indicators/2023", headers=ADMIN).json()["figures"]
    assert figures == {"electricity": "120000", "land": "8.0000", "tax": "405000.00"}  # 万元 and 万kWh converted
    with runtime.db.sessions() as s:
        assert s.execute(text("SELECT count(*) FROM outbox WHERE event_type = 'countypool.IndicatorsRecorded.v1'")).scalar() == 2


def test_all_or_nothing_and_who_may_import(county, service):
    runtime, c, _ = service
    assert upload(c, register_file(county), "register.csv", kind="enterprises").status_code == 200
    data = to_csv(INDICATOR_HEADER, indicator_rows(county))
    out = upload(c, data, "tax.csv", kind="indicators", department="tax", all_or_nothing="true").json()
    assert (out["written"], out["accepted"], out["outcomes"]) == (False, 0, {})
    assert bad_rows(out) == EXPECTED_BAD, "the database checks run too, so the report is complete"
    assert c.get(f"/v1/enterprises/{county.code(1)}/indicators/2023", headers=ADMIN).status_code == 404

    good = to_csv(INDICATOR_HEADER, [indicator_rows(county)[0], indicator_rows(county)[5]])
    raw = c.post("/v1/imports", params={"kind": "indicators", "department": "tax", "all_or_nothing": "true"},
                 content=good, headers={**auth("dev-tax-token"), "content-type": "text/csv"})
    assert raw.status_code == 200 and raw.json()["written"] is True and raw.json()["outcomes"] == {"recorded": 2}

    denied = upload(c, data, "x.csv", headers=auth("dev-tax-token"), kind="indicators", department="industry")
    assert (denied.status_code, denied.json()["reason"]) == (403, "insufficient_scope")
    assert upload(c, register_file(county), "r.csv", headers=auth("dev-tax-token"), kind="enterprises").status_code == 403
    no_code = upload(c, to_csv(["企业名称", "年度"], [["x", "2023"]]), "x.csv", kind="indicators", department="tax")
    assert (no_code.status_code, no_code.json()["reason"]) == (422, "missing_column")
    no_dept = upload(c, data, "x.csv", kind="indicators")
    assert (no_dept.status_code, no_dept.json()["reason"]) == (422, "department_required")

    # the function the CLI calls, with its progress callback
    seen = []
    report = import_file(runtime, data, ImportOptions(kind="indicators", department="tax"), principal="cli",
                         progress=lambda phase, done, total: seen.append((phase, done, total)), chunk_size=2)
    assert report.outcomes == {"unchanged": 2} and report.rejected == 7
    assert seen[-1] == ("write", 3, 3) and ("parse", 9, 9) in seen  # 3 rows reach the database, 1 refused there
