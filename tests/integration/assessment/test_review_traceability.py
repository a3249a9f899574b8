"""Traceability review of issue 4 (the assessment service), on SQLite and PostgreSQL: the behaviours of the issue that
no earlier test pinned down, each tried as a county office or a department would try to break it.

- XLSX cells typed as numbers, dates, booleans and formulas (with and without a stored value), a blank row in the
  middle: every bad row reported with its sheet line and reason, the good ones kept;
- several departments sending overlapping parts by file (Chinese department names, a GB18030 file): the same
  figure keeps its first source, a different one is a bad row with its line; all-or-nothing takes none; the same
  file imported twice changes nothing and publishes nothing;
- ties at class boundaries with T-excluded enterprises among them, a tie on the published score whose exact sums
  differ, and what EnterpriseAssessed says of each;
- corrections after an evaluation, and a correction taken back: the first run (same content hash) is current again;
- a policy changed between two runs of the same year (per-term caps, handling of missing values), and changed back;
- the CLI import: progress bar, bad-row report, exit status, --all-or-nothing;
- admission thresholds configured per county and per industry, at, just below and just above the override;
- only admitted projects may ask the quota service for quota: the ProjectEvaluated this service writes, taken by
  the quota service as its consumer takes it.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text

from shared.envelope import decode
from tests.support.cli import run_cli
from tests.support.pg import fresh_database
from tests.support.services import ADMIN, running_service
from tests.support.workbooks import workbook

from .conftest import County
from .test_evaluation_api import BIG, _setup
from .test_imports_api import ENTERPRISE_HEADER, bad_rows, to_csv, upload
from .test_review_policy_runs_tasks import _register

YEAR = 2023
NO_EMISSIONS = {k: v for k, v in BIG.items() if not k.startswith("emissions.")}



def _figures(c, county, n: int, fields: dict, department: str = "tax", year: int = YEAR):
    r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": year,
                                                      "department": department, "fields": fields})
    assert r.status_code in (200, 201), r.text
    return r.json()


def _indicators(c, code: str, year: int = YEAR):
    r = c.get(f"/v1/enterprises/{code}/indicators/{year}", headers=ADMIN)
    return r.json() if r.status_code == 200 else None


def _evaluate(c, county, year: int = YEAR):
    r = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": year})
    assert r.status_code in (200, 201), r.text
    return r


def _results(c, run_id: str) -> dict:
    items = c.get(f"/v1/evaluations/{run_id}/enterprises", headers=ADMIN, params={"limit": 1000}).json()["items"]
    return {r["credit_code"]: r for r in items}


def _breakdown(c, run_id: str, code: str) -> dict:
    r = c.get(f"/v1/evaluations/{run_id}/enterprises/{code}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def _term(breakdown: dict, indicator: str) -> dict:
    return next(t for t in breakdown["score"]["terms"] if t["indicator"] == indicator)


def _outbox(runtime, event: str) -> list[dict]:
    with runtime.db.sessions() as s:
        rows = s.execute(text("SELECT envelope FROM outbox WHERE event_type = :t ORDER BY position"),
                         {"t": f"countypool.{event}.v1"}).scalars().all()
    return [json.loads(r) for r in rows]


def _policy(c, county, year: int = YEAR) -> dict:
    return c.get(f"/v1/policies/{county.code_}/{year}", headers=ADMIN).json()["policy"]


def _put(c, county, policy: dict, version: int, year: int = YEAR):
    r = c.put(f"/v1/policies/{county.code_}/{year}", headers=ADMIN, json={"policy": policy | {"version": version}})
    assert r.status_code == 200, r.text
    return r.json()


def _group(policy: dict, name: str) -> dict:
    return next(g for g in policy["groups"] if g["name"] == name)


def _register_file(county, numbers) -> bytes:
    return to_csv(ENTERPRISE_HEADER, [[county.code(i), f"如东县某某纺织有限公司{i}", county.township, "C1711", "否", ""]
                                      for i in numbers])


# -- XLSX cells as spreadsheets type them ---------------------------------------------------------------------

XLSX_HEADER = ["统一社会信用代码", "年度", "用地面积(亩)", "实缴税金(万元)", "用电量(万千瓦时)", "备注"]


def test_xlsx_cells_typed_as_numbers_dates_booleans_and_formulas(api, county):
    """A county office's workbook: numbers typed as numbers (int and float), a blank row, a year typed as a date, a
    tax cell holding TRUE (a check box column pasted one column too far), a formula Excel computed, a formula a
    script wrote without a value, a land area typed as a date. Each bad row is reported with its sheet row and
    reason, the good ones are kept; nothing is read as a figure it is not (TRUE is not 1 元)."""
    _, c = api
    assert upload(c, _register_file(county, (1, 2, 3)), "企业台账.csv", kind="enterprises").json()["outcomes"] == {
        "created": 3}
    one, two, three = county.code(1), county.code(2), county.code(3)
    rows = [XLSX_HEADER,
            [one, 2023, 12.5, 183, 25, "正常"],  # 2
            [],  # 3: blank, not a row
            [two, datetime(2023, 1, 1), 8, 40.5, 12, "年度填成了日期"],  # 4
            [three, 2023, 10, True, 1, "布尔值"],  # 5
            [two, 2023, "=4*2", 40.5, 12, "公式, Excel 已计算"],  # 6: cached value 8
            [three, 2023, 10, "=1+1", 1, "公式, 无值"],  # 7
            [three, 2023, datetime(2024, 5, 6), 5, 1, "面积填成了日期"]]  # 8
    data = workbook(rows, cached={"C6": 8})
    out = upload(c, data, "税务局.xlsx", kind="indicators", department="税务局")
    assert out.status_code == 200, out.text
    report = out.json()
    assert (report["format"], report["rows"], report["written"]) == ("xlsx", 6, True), report
    assert bad_rows(report) == {4: ["bad_year"], 5: ["not_a_number"], 7: ["formula_without_value"],
                                8: ["not_a_number"]}, report["bad_rows"]
    by_line = {b["line"]: b for b in report["bad_rows"]}
    assert [(p["field"], p["column"]) for p in by_line[5]["problems"]] == [("tax", "实缴税金(万元)")]
    assert [(p["field"], p["column"]) for p in by_line[8]["problems"]] == [("land", "用地面积(亩)")]
    assert report["outcomes"] == {"recorded": 2} and report["ignored_columns"] == ["备注"]
    assert _indicators(c, one)["figures"] == {"electricity": "250000", "land": "12.5000", "tax": "1830000.00"}
    assert _indicators(c, two)["figures"] == {"electricity": "120000", "land": "8.0000", "tax": "405000.00"}
    assert _indicators(c, three) is None, "no row of enterprise 3 was good: nothing recorded for it"


def test_a_register_file_takes_only_the_flags_http_and_kafka_take(api, county):
    """其他标记 (county flags) in a register file: names in Chinese are names ('专精特新', '高新技术企业'); 'high-tech' is
    refused over HTTP (and Kafka) as no flag name, and 55 flags make an EnterpriseRegistered its own contract refuses
    (at most 50): the file took both, and wrote an event no consumer could decode. Each is a bad row with its line."""
    runtime, c = api
    header = ENTERPRISE_HEADER + ["其他标记"]
    rows = [[county.code(n), f"企业{n}", county.township, "C3311", "否", "", flags] for n, flags in (
        (1, ""), (2, "high-tech"), (3, "、".join(f"flag{i}" for i in range(55))), (4, "专精特新、高新技术企业"))]
    http = c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": county.code(2), "name": "企业2",
                                                           "township_code": county.township, "industry_code": "C3311",
                                                           "flags": ["high-tech"]})
    assert http.status_code == 422, http.text
    out = upload(c, to_csv(header, rows), "企业台账.csv", kind="enterprises").json()
    assert (out["outcomes"], bad_rows(out)) == ({"created": 2}, {3: ["bad_value"], 4: ["bad_value"]}), out
    assert c.get(f"/v1/enterprises/{county.code(4)}", headers=ADMIN).json()["flags"] == ["专精特新", "高新技术企业"]
    for envelope in _outbox(runtime, "EnterpriseRegistered"):
        decode(envelope)  # every event the register writes decodes against its contract
    assert len(_outbox(runtime, "EnterpriseRegistered")) == 2


# -- several departments, overlapping parts, the same file twice -----------------------------------------------

def test_departments_overlapping_by_file_and_the_same_file_twice(api, county):
    """The tax bureau (税务局) files land and tax; the natural resources bureau (自然资源和规划局) files land in GB18030,
    as Excel saves CSV in China: for 1 the same area (its first source stays), for 2 another (a bad row, line 3,
    conflicting_departments; the tax bureau's figure stays), for 3 a new figure. All-or-nothing takes none of it.
    The same files imported again change nothing and publish nothing."""
    runtime, c = api
    tax_dept, land_dept = "税务局", "自然资源和规划局"
    register = _register_file(county, (1, 2, 3))
    assert upload(c, register, "企业台账.csv", kind="enterprises").json()["outcomes"] == {"created": 3}
    header = ["统一社会信用代码", "年度", "用地面积(亩)", "实缴税金(万元)"]
    tax = to_csv(header, [[county.code(1), "2023", "12.5", "183"], [county.code(2), "2023", "8", "40.5"]])
    out = upload(c, tax, "税收.csv", kind="indicators", department=tax_dept).json()
    assert (out["outcomes"], out["bad_rows"]) == ({"recorded": 2}, []), out

    land_rows = [["统一社会信用代码", "年度", "实际用地面积(亩)", "备注"],
                 [county.code(1), "2023", "12.5000", "与税务一致"],
                 [county.code(2), "2023", "9", "实测面积不同"],
                 [county.code(3), "2023", "5", "新增"]]
    land = "\r\n".join(",".join(r) for r in land_rows).encode("gb18030")
    events_before = len(_outbox(runtime, "IndicatorsRecorded"))
    none = upload(c, land, "用地.csv", kind="indicators", department=land_dept, all_or_nothing="true").json()
    assert (none["written"], none["accepted"], none["outcomes"]) == (False, 0, {}), none
    assert bad_rows(none) == {3: ["conflicting_departments"]}, none
    assert _indicators(c, county.code(3)) is None
    assert [p["department"] for p in _indicators(c, county.code(1))["parts"]] == [tax_dept]
    assert len(_outbox(runtime, "IndicatorsRecorded")) == events_before, "nothing taken, nothing published"

    some = upload(c, land, "用地.csv", kind="indicators", department=land_dept).json()
    assert (some["written"], some["outcomes"], bad_rows(some)) == (True, {"recorded": 2}, {3: ["conflicting_departments"]})
    problem = some["bad_rows"][0]
    assert problem["credit_code"] == county.code(2) and tax_dept in problem["problems"][0]["message"]
    first = _indicators(c, county.code(1))
    assert first["figures"]["land"] == "12.5000" and first["sources"]["land"] == tax_dept
    assert sorted(p["department"] for p in first["parts"]) == sorted([tax_dept, land_dept])
    assert _indicators(c, county.code(2))["figures"]["land"] == "8.0000"
    assert (_indicators(c, county.code(3))["figures"], _indicators(c, county.code(3))["sources"]) == (
        {"land": "5.0000"}, {"land": land_dept})

    # the same files once more: unchanged, nothing published
    registered, recorded = len(_outbox(runtime, "EnterpriseRegistered")), len(_outbox(runtime, "IndicatorsRecorded"))
    assert upload(c, register, "企业台账.csv", kind="enterprises").json()["outcomes"] == {"unchanged": 3}
    assert upload(c, tax, "税收.csv", kind="indicators", department=tax_dept).json()["outcomes"] == {"unchanged": 2}
    again = upload(c, land, "用地.csv", kind="indicators", department=land_dept).json()
    assert (again["outcomes"], bad_rows(again)) == ({"unchanged": 2}, {3: ["conflicting_departments"]})
    assert (len(_outbox(runtime, "EnterpriseRegistered")), len(_outbox(runtime, "IndicatorsRecorded"))) == (
        registered, recorded)


# -- ties at class boundaries, T among them ------------------------------------------------------------------

def test_ties_at_class_boundaries_with_t_excluded_enterprises_among_them(api, county):
    """规上, default rank rule (A 20 %, B to 60 %, C to 95 %). Two T enterprises with the largest tax of all (a utility,
    one under two years in production) are left out: 6 are ranked, A ends at rank ceil(1.2) = 2, B at ceil(3.6) = 4,
    C at ceil(5.7) = 6. 1 scores 80 (77 + 3 high_tech). 2 and 3 tie at 77.0000 across the A/B boundary (ranks 2, 3):
    3 pays 1 元 more (term 16.00000267, published 16.0000), so only the published score ties, and both are A. 4 and 5
    tie at 73 across the B/C boundary: both B. 8 scores 69: C. Had the T enterprises been ranked, 1 would be B."""
    runtime, c = api
    plan = {1: (BIG, ["high_tech"]), 2: (BIG, []), 3: (BIG | {"tax": "6000001"}, []), 4: (BIG | {"tax": "4500000"}, []),
            5: (BIG | {"tax": "4500000"}, []), 6: (BIG | {"tax": "60000000"}, ["utility"]),
            7: (BIG | {"tax": "60000000"}, ["under_two_years"]), 8: (BIG | {"tax": "3000000"}, [])}
    for n, (fields, flags) in plan.items():
        _register(c, county, n, flags=flags, scale="规上")
        _figures(c, county, n, fields)
    run = _evaluate(c, county).json()["run"]
    assert run["class_counts"] == {"规上": {"A": 3, "B": 2, "C": 1, "T": 2}}
    rows = _results(c, run["run_id"])
    got = {n: (rows[county.code(n)]["class_label"], rows[county.code(n)]["rank"], rows[county.code(n)]["score"])
           for n in plan}
    assert got == {1: ("A", 1, "80.0000"), 2: ("A", 2, "77.0000"), 3: ("A", 3, "77.0000"), 4: ("B", 4, "73.0000"),
                   5: ("B", 5, "73.0000"), 6: ("T", None, None), 7: ("T", None, None), 8: ("C", 6, "69.0000")}
    three = _breakdown(c, run["run_id"], county.code(3))
    assert (_term(three, "tax_per_mu")["value"], _term(three, "tax_per_mu")["capped_term"]) == ("12.000002", "16")
    assert [(_breakdown(c, run["run_id"], county.code(n))["score_rank"],
             _breakdown(c, run["run_id"], county.code(n))["group_size"]) for n in (2, 3, 4, 5, 8)] == [
        (2, 6), (2, 6), (4, 6), (4, 6), (6, 6)]
    t = _breakdown(c, run["run_id"], county.code(7))
    assert (t["excluded_by"], t["score"], t["rank"], t["group_size"]) == ("under_two_years", None, None, None)

    assessed = {e["data"]["credit_code"]: e["data"] for e in _outbox(runtime, "EnterpriseAssessed")
                if e["data"]["run_id"] == run["run_id"]}
    assert {n: (assessed[county.code(n)]["class_label"], assessed[county.code(n)]["rank"],
                assessed[county.code(n)]["score"]) for n in plan} == got
    assert all(e["policy_version"] == 1 and e["breakdown_ref"] == f"/v1/evaluations/{run['run_id']}/enterprises/{code}"
               for code, e in assessed.items())


# -- corrections after an evaluation; a policy changed between two runs ------------------------------------------

def test_a_correction_after_an_evaluation_and_taken_back(api, county):
    """Run 1; the tax bureau corrects 3's tax: run 2 (another inputs and content hash). The correction is taken back:
    the same inputs and policy as run 1, so run 1 again (200, same content hash), current once more, published once."""
    runtime, c = api
    _setup(c, county)
    first = _evaluate(c, county)
    assert first.status_code == 201
    run1 = first.json()["run"]
    before = _breakdown(c, run1["run_id"], county.code(3))

    _figures(c, county, 3, {"tax": "3600000"})
    second = _evaluate(c, county)
    run2 = second.json()["run"]
    assert second.status_code == 201 and run2["inputs_hash"] != run1["inputs_hash"]
    assert _results(c, run2["run_id"])[county.code(3)]["score"] == "66.1000"  # 40 x 7.2 / 30 = 9.6 instead of 8

    _figures(c, county, 3, {"tax": "3000000"})
    third = _evaluate(c, county)
    assert third.status_code == 200, third.text
    assert (third.json()["created"], third.json()["run"]["run_id"], third.json()["run"]["content_hash"]) == (
        False, run1["run_id"], run1["content_hash"])
    assert third.json()["run"]["current"] is True
    assert c.get(f"/v1/evaluations/{run2['run_id']}", headers=ADMIN).json()["current"] is False
    assert [r["run_id"] for r in c.get("/v1/evaluations", headers=ADMIN, params=county.run).json()] == [
        run1["run_id"], run2["run_id"]]
    assert _breakdown(c, run1["run_id"], county.code(3)) == before
    assessed = [e["data"]["run_id"] for e in _outbox(runtime, "EnterpriseAssessed")]
    assert (assessed.count(run1["run_id"]), assessed.count(run2["run_id"])) == (4, 4), "each run published once"
    # a decision is taken on the current run: run 1 again
    d = c.post("/v1/dispositions", headers=ADMIN, json={"credit_code": county.code(3), "year": YEAR,
                                                         "decided_by": "县政府常务会议"})
    assert (d.status_code, d.json()["run_id"]) == (201, run1["run_id"]), d.text


def test_a_figure_two_departments_gave_alike_is_corrected_through_the_countys_part(api, county):
    """Tax and statistics both gave 3's tax as 3,000,000. Neither can correct it alone (the other still stands by
    the old figure: 409 conflicting_departments, the way out named); the county's part (department 'county') settles
    it, a new evaluation run follows, the departments' own parts stay as they sent them, and a department sending
    the old figure again is refused naming the county. Rebuilding from the events gives the same merged figures."""
    runtime, c = api
    _setup(c, county)
    code = county.code(3)
    assert _indicators(c, code)["figures"]["tax"] == "3000000.00"
    _figures(c, county, 3, {"tax": "3000000"}, department="statistics")  # the same figure: tax stays its source
    run1 = _evaluate(c, county).json()["run"]

    for dept in ("tax", "statistics"):
        r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": code, "year": YEAR, "department": dept,
                                                           "fields": {"tax": "3600000"}})
        assert r.status_code == 409 and r.json()["reason"] == "conflicting_departments", r.text
        assert "'county'" in r.json()["message"], "the refusal names the way out"
    assert _indicators(c, code)["figures"]["tax"] == "3000000.00"

    out = _figures(c, county, 3, {"tax": "3600000"}, department="county")
    assert (out["figures"]["tax"], out["sources"]["tax"]) == ("3600000.00", "county")
    parts = {p["department"]: p["figures"] for p in out["parts"]}
    assert parts["tax"]["tax"] == parts["statistics"]["tax"] == "3000000.00", "a department's part is what it sent"
    run2 = _evaluate(c, county)
    assert run2.status_code == 201 and run2.json()["run"]["inputs_hash"] != run1["inputs_hash"]
    assert _results(c, run2.json()["run"]["run_id"])[code]["score"] == "66.1000"  # as the tax bureau's correction gave

    r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": code, "year": YEAR, "department": "tax",
                                                       "fields": {"tax": "3000000"}})
    assert r.status_code == 409 and "county" in r.json()["message"], r.text
    same = _figures(c, county, 3, {"tax": "3600000"}, department="statistics")  # agreeing with the county: kept
    assert same["sources"]["tax"] == "county"
    _figures(c, county, 3, {"tax": "3500000"}, department="county")  # the county may change its own figure
    assert _indicators(c, code)["figures"]["tax"] == "3500000.00"

    from services.assessment.replay import rebuild
    report = rebuild(runtime.db)
    assert report.equal and report.rows.get("indicators"), report.differences[:3]


def test_a_policy_changed_between_two_runs_of_the_same_year_caps_and_missing_values(api, county):
    """6 reports no emissions. Version 1 (cap 1.2 x weight, missing emissions take the group's average term): 1's
    emissions term 15 is capped at 12; 6 takes (12 + 7.5) / 2 = 9.75 from 1 and 3 (4 is T and does not count):
    74.75. Version 2 (cap 1.5, missing emissions score 0): 1 gets 15 (80), 6 gets 0 (65). The version 1 run reads as
    before. Version 3 says what version 1 said: a new version, a new run, the scores of the first."""
    runtime, c = api
    _setup(c, county)
    _register(c, county, 6)
    _figures(c, county, 6, NO_EMISSIONS)
    run1 = _evaluate(c, county).json()["run"]
    v1 = _policy(c, county)
    one, six = _breakdown(c, run1["run_id"], county.code(1)), _breakdown(c, run1["run_id"], county.code(6))
    em1, em6 = _term(one, "value_added_per_emission"), _term(six, "value_added_per_emission")
    assert (em1["raw_term"], em1["capped_term"], one["score"]["total"]) == ("15", "12", "77.0000")
    assert (em6["status"], em6["value"], Decimal(em6["capped_term"]), six["score"]["total"]) == (
        "missing_group_average", None, Decimal("9.75"), "74.7500")

    v2 = json.loads(json.dumps(v1))
    above = _group(v2, "规上")
    above["cap_factor"] = "1.5"
    next(t for t in above["terms"] if t["indicator"] == "value_added_per_emission")["missing"] = "zero"
    assert _put(c, county, v2, 2)["changed"] is True
    run2 = _evaluate(c, county).json()["run"]
    assert (run2["policy_version"], run2["run_id"] != run1["run_id"]) == (2, True)
    one2, six2 = _breakdown(c, run2["run_id"], county.code(1)), _breakdown(c, run2["run_id"], county.code(6))
    em1, em6 = _term(one2, "value_added_per_emission"), _term(six2, "value_added_per_emission")
    assert (em1["raw_term"], em1["capped_term"], one2["score"]["total"]) == ("15", "15", "80.0000")
    assert (em6["status"], em6["capped_term"], six2["score"]["total"]) == ("missing_zero", "0", "65.0000")
    assert (_breakdown(c, run1["run_id"], county.code(1)), _breakdown(c, run1["run_id"], county.code(6))) == (one, six)

    back = _put(c, county, v1, 3)
    assert (back["changed"], back["policy"]["version"]) == (True, 3)
    run3 = _evaluate(c, county).json()["run"]
    assert run3["policy_version"] == 3 and run3["run_id"] not in (run1["run_id"], run2["run_id"])
    assert {k: (v["score"], v["class_label"], v["rank"]) for k, v in _results(c, run3["run_id"]).items()} == {
        k: (v["score"], v["class_label"], v["rank"]) for k, v in _results(c, run1["run_id"]).items()}
    changed = [e["data"]["policy_version"] for e in _outbox(runtime, "AssessmentPolicyChanged")]
    assert changed == [1, 2, 3], "every change is an event"


def test_a_county_defines_its_own_indicator_group_rule_and_bonus_through_the_api(api, county):
    """Version 2 of the county's policy: a new indicator 人均税收 (tax / employees, 万元/人) replaces 全员劳动生产率 in
    规上 (weight 5, benchmark 2); 规上 begins at 30,000 万元 of revenue; a county flag named in Chinese (专精特新)
    earns 2.5 points. 1 (exactly 30,000 万元) stays 规上: 2.4 万元/人 -> 5 x 2.4 / 2 = 6, capped at 6; 79 + 2.5.
    6 (1 fen less) falls to 规下: 60 x 12 / 10 = 72 (the cap), no electricity: 72, A of 规下 before 2."""
    _, c = api
    _setup(c, county)
    _register(c, county, 1, park_id="P-A", in_park=True, flags=["专精特新"])
    _register(c, county, 6)
    _figures(c, county, 6, BIG | {"revenue": "299999999.99"})
    first = _evaluate(c, county).json()["run"]
    assert {k: v["group"] for k, v in _results(c, first["run_id"]).items() if k in (county.code(1), county.code(6))} == {
        county.code(1): "规上", county.code(6): "规上"}

    policy = _policy(c, county)
    policy["indicators"].append({"code": "tax_per_employee", "name": "人均税收", "numerator": "tax",
                                 "denominator": "employees"})
    above = _group(policy, "规上")
    above["terms"] = [t if t["indicator"] != "labour_productivity" else
                      {"indicator": "tax_per_employee", "weight": "5", "benchmark": {"kind": "fixed", "value": "2"}}
                      for t in above["terms"]]
    policy["group_rule"] = {"revenue_threshold_fen": 30_000_000_000}
    policy["bonus_penalty"].append({"code": "zjtx", "flag": "专精特新", "points": "2.5", "description": "县认定专精特新"})
    _put(c, county, policy, 2)
    run = _evaluate(c, county).json()["run"]
    assert run["policy_version"] == 2
    one = _breakdown(c, run["run_id"], county.code(1))
    t = _term(one, "tax_per_employee")
    assert (t["name"], t["unit"], t["value"], t["raw_term"], t["capped_term"]) == ("人均税收", "万元/人", "2.4", "6", "6")
    assert "labour_productivity" not in {x["indicator"] for x in one["score"]["terms"]}
    assert [(a["code"], a["flag"], a["points"]) for a in one["score"]["adjustments"]] == [("zjtx", "专精特新", "2.5")]
    assert (one["group"], one["score"]["total"], one["class_label"]) == ("规上", "81.5000", "A")
    six = _breakdown(c, run["run_id"], county.code(6))
    assert (six["group"], six["score"]["total"], six["class_label"], six["rank"]) == ("规下", "72.0000", "A", 1)
    assert [(x["indicator"], x["status"], x["capped_term"]) for x in six["score"]["terms"]] == [
        ("tax_per_mu", "value", "72"), ("tax_per_electricity", "missing_zero", "0")]
    two = _breakdown(c, run["run_id"], county.code(2))
    assert (two["group"], two["score"]["total"], two["class_label"], two["rank"]) == ("规下", "41.6667", "B", 2)


def test_an_emission_weight_no_figure_can_carry_is_refused(api, county):
    """A county weights 总磷 (total phosphorus) in Chinese: no channel can ever deliver a figure of that name (HTTP and
    Kafka take emissions.<letters, digits, '-'>, the import its five pollutant columns), so the weight would weight
    nothing, year after year, as a misspelt 'nox' would. Refused where it is set; 'TP' is taken and counts."""
    _, c = api
    _setup(c, county)
    unusable = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(1), "year": YEAR,
                                                               "department": "ecology", "fields": {"emissions.总磷": "5"}})
    assert (unusable.status_code, unusable.json()["reason"]) == (422, "unknown_field"), unusable.text
    policy = _policy(c, county)
    r = c.put(f"/v1/policies/{county.code_}/{YEAR}", headers=ADMIN,
              json={"policy": policy | {"version": 2, "emission_weights": {**policy["emission_weights"], "总磷": "2"}}})
    assert (r.status_code, r.json().get("reason")) == (422, "pollutant_name_invalid"), r.text
    assert [p["field"] for p in r.json()["details"]] == ["emission_weights.总磷"]
    assert _policy(c, county)["version"] == 1

    _put(c, county, policy | {"emission_weights": {**policy["emission_weights"], "TP": "2"}}, 2)
    _figures(c, county, 1, {"emissions.TP": "5"}, department="ecology")
    run = _evaluate(c, county).json()["run"]
    # weighted emissions 10 + 1 + 5 + 4 + 2 x 5 = 30 t: 6,000 万元 / 30 t = 200 -> 10 x 200 / 200 = 10 (was 12, capped)
    one = _breakdown(c, run["run_id"], county.code(1))
    assert (_term(one, "value_added_per_emission")["value"], _term(one, "value_added_per_emission")["capped_term"],
            one["score"]["total"]) == ("200", "10", "75.0000")


# -- the CLI import -----------------------------------------------------------------------------------------

def test_cli_import_shows_progress_reports_bad_rows_and_exits_by_them(api, county, db_url, tmp_path, monkeypatch, capsys):
    """countypool import assessment FILE: a progress bar per phase on stderr, every bad row with its line on stdout,
    exit 1 when a row was refused (--all-or-nothing: nothing written), 0 when none was."""
    _, c = api
    monkeypatch.setenv("COUNTYPOOL_ASSESSMENT_DATABASE_URL", db_url)
    monkeypatch.setenv("COUNTYPOOL_DATA_DIR", str(tmp_path / "data"))
    register = tmp_path / "企业台账.csv"
    register.write_bytes(_register_file(county, (1, 2)))
    code, out, err = run_cli(capsys, "import", "assessment", str(register), "--kind", "enterprises")
    assert code == 0, (out, err)
    assert out.splitlines()[0] == "2 rows, 2 accepted, 0 rejected"
    assert "parse" in err and "write" in err and "2/2" in err, err

    figures = tmp_path / "税收.csv"
    figures.write_bytes(to_csv(["统一社会信用代码", "实缴税金(万元)", "用地面积(亩)"],
                               [[county.code(1), "183", "12.5"], [county.code(2), "一百", "8"],
                                [county.bad_code(3), "1", "1"]]))
    argv = ("import", "assessment", str(figures), "--kind", "indicators", "--department", "税务局", "--year", "2023")
    code, out, err = run_cli(capsys, *argv, "--all-or-nothing")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "3 rows, 0 accepted, 2 rejected — nothing written (all-or-nothing)"
    assert lines[1:] == [f"  line 3: {county.code(2)}: 实缴税金(万元): not_a_number",
                         f"  line 4: {county.bad_code(3)}: 统一社会信用代码: bad_credit_code"]
    assert _indicators(c, county.code(1)) is None

    code, out, _ = run_cli(capsys, *argv)
    assert (code, out.splitlines()[0]) == (1, "3 rows, 1 accepted, 2 rejected")
    assert _indicators(c, county.code(1))["figures"] == {"land": "12.5000", "tax": "1830000.00"}
    code, out, _ = run_cli(capsys, "import", "assessment", str(register), "--kind", "enterprises")
    assert (code, out.splitlines()) == (0, ["2 rows, 2 accepted, 0 rejected"])


# -- admission per county and per industry -----------------------------------------------------------------------

def _project(county, pid: str, **kw) -> dict:
    return {"project_id": pid, "applicant_credit_code": county.code(1), "county_code": county.code_, "year": YEAR,
            "park_id": "P-A", "land": "4", "investment": "12000000.00", "expected_yearly_tax": "800000.00",
            "industry_code": "2614", **kw}


def test_admission_thresholds_per_county_and_industry_at_just_below_and_just_above(api, county):
    """This county raises the thresholds of industry C26 to 300 万元 and 20 万元 per 亩; another county keeps the
    defaults. A project on 4 亩 in 2614 (written without its door letter): 12,000,000 元 and 800,000 元 a year are
    exactly the override's; one fen less of each fails both, with figure and threshold; one fen more passes. The
    project one fen short here is admitted in the other county, and a C3311 project here is held to the defaults."""
    runtime, c = api
    policy = _policy(c, county)
    policy["admission"]["industry_overrides"] = {"C26": {"investment_fen_per_mu": 300_000_000,
                                                         "tax_fen_per_mu": 20_000_000}}
    _put(c, county, policy, 2)
    other = County(f"{(int(county.code_) + 1) % 1000000:06d}")
    cases = [("at", "12000000.00", "800000.00", []),
             ("below", "11999999.99", "799999.99",
              [("investment_per_mu_below_threshold", "2999999.99", "3000000.00", "元/亩"),
               ("tax_per_mu_below_threshold", "199999.99", "200000.00", "元/亩/年")]),
             ("above", "12000000.01", "800000.01", [])]
    for name, investment, tax, failures in cases:
        pid = f"PRJ-{county.code_}-{name}"
        r = c.post("/v1/projects", headers=ADMIN, json=_project(county, pid, investment=investment,
                                                                expected_yearly_tax=tax))
        assert r.status_code == 201, r.text
        out = r.json()
        assert (out["admitted"], out["override_prefix"], out["policy_version"]) == (not failures, "C26", 2), name
        assert [(f["code"], f["figure"], f["threshold"], f["unit"]) for f in out["failures"]] == failures, name
    elsewhere = c.post("/v1/projects", headers=ADMIN, json=_project(other, f"PRJ-{other.code_}-below",
                                                                    investment="11999999.99",
                                                                    expected_yearly_tax="799999.99"))
    assert elsewhere.status_code == 201, elsewhere.text
    assert (elsewhere.json()["admitted"], elsewhere.json()["override_prefix"], elsewhere.json()["policy_version"]) == (
        True, None, 1)
    plain = c.post("/v1/projects", headers=ADMIN, json=_project(county, f"PRJ-{county.code_}-3311", industry_code="C3311",
                                                                investment="9999999.99", expected_yearly_tax="600000"))
    assert [(f["code"], f["threshold"]) for f in plain.json()["failures"]] == [
        ("investment_per_mu_below_threshold", "2500000.00")]
    published = {e["data"]["project_id"]: e["data"] for e in _outbox(runtime, "ProjectEvaluated")}
    below = published[f"PRJ-{county.code_}-below"]
    assert (below["admitted"], below["county_code"], below["industry_code"], below["policy_version"]) == (
        False, county.code_, "2614", 2)
    assert [(f["code"], f["figure"], f["threshold"]) for f in below["failures"]] == [x[:3] for x in cases[1][3]]


# -- only admitted projects ask the quota service ----------------------------------------------------------------

@contextmanager
def _quota_database(db_url: str, tmp_path):
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'quota.sqlite3'}"
    else:
        with fresh_database(db_url) as url:
            yield url


def test_only_admitted_projects_may_ask_the_quota_service(api, county, db_url, kafka_bootstrap, tmp_path):
    """The ProjectEvaluated events this service writes (one admitted, one refused for 两高 and its tax), taken by the
    quota service as its consumer takes them: the admitted project's request is opened, the refused one's is 409
    project_not_admitted."""
    from services.quota.application.assessment_facts import project_evaluated
    from services.quota.application.tx import Tx

    runtime, c = api
    ok, refused = f"PRJ-{county.code_}-ok", f"PRJ-{county.code_}-two-high"
    assert c.post("/v1/projects", headers=ADMIN, json=_project(county, ok, industry_code="C3311")).json()["admitted"]
    no = c.post("/v1/projects", headers=ADMIN, json=_project(county, refused, industry_code="C3311", two_high=True,
                                                             expected_yearly_tax="500000")).json()
    assert (no["admitted"], [f["code"] for f in no["failures"]]) == (False, ["two_high_project",
                                                                              "tax_per_mu_below_threshold"])
    with runtime.db.sessions() as s:
        envelopes = s.execute(text("SELECT envelope FROM outbox WHERE event_type = 'countypool.ProjectEvaluated.v1'")
                              ).scalars().all()
    events = [decode(e)[1] for e in envelopes]
    assert sorted(e.project_id for e in events) == sorted([ok, refused])

    with _quota_database(db_url, tmp_path) as quota_url, \
            running_service("quota", quota_url, kafka_bootstrap, background=False) as (quota, q):
        for ev in events:
            quota.transaction(lambda uow, ev=ev: project_evaluated(Tx.of_uow(uow), ev))

        def ask(request_id: str, project_id: str):
            return q.post("/v1/requests", headers=ADMIN, json={
                "request_id": request_id, "project_id": project_id, "county_code": county.code_,
                "lines": [{"asset": "COD", "amount": "0.8"}]})

        denied = ask(f"Q-{county.code_}-no", refused)
        assert (denied.status_code, denied.json()["reason"]) == (409, "project_not_admitted"), denied.text
        opened = ask(f"Q-{county.code_}-ok", ok)
        assert opened.status_code in (200, 201, 202), opened.text
        assert q.get(f"/v1/requests/Q-{county.code_}-ok", headers=ADMIN).json()["state"] == "requested"
