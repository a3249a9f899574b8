"""Imports found wanting in a review, on SQLite and PostgreSQL: a register file without a column leaves that
part of the register as it was; a NUL in a name is one bad row (and a 422 at the API), not a failed import; a
file year or department the intake would refuse is a 422 with its reason, not a 500; a part another writer
inserted meanwhile makes an import read its chunk again (and POST /v1/indicators answer 409), not a 500."""
from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.services import ADMIN

from .test_imports_api import ENTERPRISE_HEADER, bad_rows, to_csv, upload


def test_a_register_file_without_a_column_keeps_what_the_register_says(county, service):
    _, c, _ = service
    full = ["统一社会信用代码", "企业名称", "乡镇代码", "行业代码", "是否在园区", "园区编号", "规模", "安全隐患", "其他标记"]
    first = upload(c, to_csv(full, [[county.code(1), "甲", county.township, "C3311", "是", "P-1", "规上", "是", "high_tech"],
                                    [county.code(2), "乙", county.township, "C3311", "否", "", "", "否", ""]]),
                   "full.csv", kind="enterprises")
    assert first.json()["outcomes"] == {"created": 2}, first.text
    # the industry bureau's yearly refresh: the basic columns only, one enterprise renamed
    basic = ["统一社会信用代码", "企业名称", "乡镇代码", "行业代码", "是否在园区"]
    out = upload(c, to_csv(basic, [[county.code(1), "甲公司", county.township, "C3311", "是"],
                                   [county.code(2), "乙", county.township, "C3311", "否"]]), "basic.csv", kind="enterprises")
    assert out.json()["outcomes"] == {"updated": 1, "unchanged": 1}, out.text
    e = c.get(f"/v1/enterprises/{county.code(1)}", headers=ADMIN).json()
    assert (e["name"], e["flags"], e["park_id"], e["scale"]) == ("甲公司", ["high_tech", "safety_hazard"], "P-1", "规上")
    # a column the file has still says what it says, empty cells included
    out = upload(c, to_csv(basic + ["安全隐患", "园区编号"], [[county.code(1), "甲公司", county.township, "C3311", "是", "否", ""]]),
                 "hazard.csv", kind="enterprises", all_or_nothing="true")
    assert out.json()["outcomes"] == {"updated": 1}, out.text
    e = c.get(f"/v1/enterprises/{county.code(1)}", headers=ADMIN).json()
    assert (e["flags"], e["park_id"], e["scale"]) == (["high_tech"], None, "规上")


def test_a_nul_in_a_name_is_one_bad_row_and_a_422(county, service):
    _, c, _ = service
    rows = [[county.code(i), f"企业{i}", county.township, "C3311", "否", ""] for i in (1, 2, 3)]
    rows[1][1] = "企业\x002"
    out = upload(c, to_csv(ENTERPRISE_HEADER, rows), "register.csv", kind="enterprises")
    assert out.status_code == 200, out.text
    assert (out.json()["outcomes"], bad_rows(out.json())) == ({"created": 2}, {3: ["bad_value"]})
    r = c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": county.code(4), "name": "a\x00b",
                                                       "township_code": county.township, "industry_code": "C3311"})
    assert (r.status_code, r.json()["reason"]) == (422, "invalid_enterprise")


def test_a_file_year_or_department_the_intake_would_refuse_is_a_422(county, service):
    _, c, _ = service
    c = TestClient(c.app, raise_server_exceptions=False)
    data = to_csv(["统一社会信用代码", "用地面积(亩)"], [[county.code(1), "1"]])
    for form, reason in (({"year": "1800"}, "bad_year"), ({"year": "²"}, "invalid_request"),
                         ({"year": "2023", "department": "tax bureau"}, "bad_department"),
                         ({"year": "2023", "department": "t" * 201}, "bad_department")):
        r = upload(c, data, "x.csv", kind="indicators", **{"department": "tax", **form})
        assert (r.status_code, r.json()["reason"]) == (422, reason), (form, r.text)


def test_a_part_another_writer_inserts_meanwhile_retries_the_chunk_not_a_500(county, service, monkeypatch):
    """The intake topic (or another import) records the department's part between an import chunk's read and its
    insert: the chunk is read again (the part is then a correction), not a raw driver error that stopped the
    import half written. Simulated by one read that misses the stored part."""
    import services.assessment.register as register
    from services.assessment.imports import ImportOptions, import_file

    runtime, c, _ = service
    assert upload(c, to_csv(ENTERPRISE_HEADER, [[county.code(1), "甲", county.township, "C3311", "否", ""]]), "r.csv",
                  kind="enterprises").json()["outcomes"] == {"created": 1}
    header = ["统一社会信用代码", "年度", "实缴税金(元)"]
    assert upload(c, to_csv(header, [[county.code(1), "2023", "100"]]), "t.csv", kind="indicators",
                  department="tax").json()["outcomes"] == {"recorded": 1}
    real, calls = register._existing_parts, []

    def stale_once(s, parts):
        calls.append(1)
        return {} if len(calls) == 1 else real(s, parts)

    monkeypatch.setattr(register, "_existing_parts", stale_once)
    report = import_file(runtime, to_csv(header, [[county.code(1), "2023", "120"]]),
                         ImportOptions(kind="indicators", department="tax"), principal="t")
    assert (report.outcomes, report.bad_rows, len(calls)) == ({"recorded": 1}, [], 2)
    got = c.get(f"/v1/enterprises/{county.code(1)}/indicators/2023", headers=ADMIN).json()
    assert got["figures"]["tax"] == "120.00" and len(got["parts"]) == 1


def test_the_same_race_at_post_indicators_is_a_409(county, service, monkeypatch):
    import services.assessment.register as register

    _, c, _ = service
    c = TestClient(c.app, raise_server_exceptions=False)
    assert upload(c, to_csv(ENTERPRISE_HEADER, [[county.code(1), "甲", county.township, "C3311", "否", ""]]), "r.csv",
                  kind="enterprises").status_code == 200
    body = {"credit_code": county.code(1), "year": 2023, "department": "tax", "fields": {"tax": "100"}}
    assert c.post("/v1/indicators", headers=ADMIN, json=body).status_code == 201
    monkeypatch.setattr(register, "_existing_parts", lambda s, parts: {})  # a read that missed the other's insert
    r = c.post("/v1/indicators", headers=ADMIN, json={**body, "fields": {"tax": "120"}})
    assert (r.status_code, r.json()["reason"]) == (409, "concurrent_change"), r.text
