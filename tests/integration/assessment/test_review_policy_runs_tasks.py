"""Review of policy versions, evaluation runs, decisions and rectification tasks, on SQLite and PostgreSQL (relay
stopped: what the service would publish is read from its outbox).

- relative benchmarks: a group last year's run has no average for is a 422 naming it; once last year is re-run
  (a corrected run supersedes the first) this year takes the corrected average, and the old run stays as it was;
- threshold classes (with a C- band): a score equal to a band's min_score is in that band; T stays out;
- a county may list T among its close-with-hazard classes (disposition.py rule 5): the policy is accepted and a T
  enterprise with a hazard is recommended for closure;
- a decision names who took it (not blanks); a task asked for on a decision to do nothing is refused, not dropped;
- a task id reused with another year is a 409; a task closed once is not closed again the other way;
- a policy PUT that stores nothing publishes nothing;
- an accepted policy whose scores the run cannot publish is a 422 with a reason, not a 500.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text

from tests.support.services import ADMIN

from .test_evaluation_api import BIG, SMALL, _setup

YEAR = 2023


def _register(c, county, n: int, **extra) -> None:
    body = {"credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township,
            "industry_code": "C3311", **extra}
    r = c.post("/v1/enterprises", headers=ADMIN, json=body)
    assert r.status_code in (200, 201), r.text


def _figures(c, county, n: int, fields: dict, year: int = YEAR) -> None:
    r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": year,
                                                      "department": "tax", "fields": fields})
    assert r.status_code in (200, 201), r.text


def _evaluate(c, county, year: int = YEAR):
    return c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": year})


def _policy(c, county, year: int = YEAR) -> dict:
    return c.get(f"/v1/policies/{county.code_}/{year}", headers=ADMIN).json()["policy"]


def _put(c, county, policy: dict, version: int, year: int = YEAR):
    return c.put(f"/v1/policies/{county.code_}/{year}", headers=ADMIN, json={"policy": policy | {"version": version}})


def _group(policy: dict, name: str) -> dict:
    return next(g for g in policy["groups"] if g["name"] == name)


def _term(group: dict, indicator: str) -> dict:
    return next(t for t in group["terms"] if t["indicator"] == indicator)


def _outbox(runtime, event: str) -> list[str]:
    with runtime.db.sessions() as s:
        return list(s.execute(text("SELECT key FROM outbox WHERE event_type = :t ORDER BY position"),
                              {"t": f"countypool.{event}.v1"}).scalars())


def _rows(c, run_id: str) -> dict:
    items = c.get(f"/v1/evaluations/{run_id}/enterprises", headers=ADMIN, params={"limit": 1000}).json()["items"]
    return {r["credit_code"]: r for r in items}


# -- relative benchmarks -------------------------------------------------------------------------------------

def test_relative_benchmark_without_last_year_values_then_from_the_corrected_run(api, county):
    """2023 takes the 规下 tax per 亩 against 2 x 2022's 规下 average. 2022's run had no 规下 enterprise: 422 naming
    the group and indicator, and no run. 2022 re-run with one (2.5 万元/亩): benchmark 5. 2022 corrected and run
    again (5 万元/亩): the corrected run is last year's current one, so 2023 gets a new run with benchmark 10 and
    the first 2023 run still reads as it did."""
    _, c = api
    _register(c, county, 1)
    _register(c, county, 2)
    _figures(c, county, 1, BIG, 2022)
    _figures(c, county, 1, BIG)
    _figures(c, county, 2, SMALL)
    first_2022 = _evaluate(c, county, 2022).json()["run"]
    assert first_2022["averages"]["规下"] == {}
    policy = _policy(c, county)
    _term(_group(policy, "规下"), "tax_per_mu")["benchmark"] = {"kind": "relative", "factor": "2"}
    assert _put(c, county, policy, 2).status_code == 200

    refused = _evaluate(c, county)
    assert refused.status_code == 422, refused.text
    assert refused.json()["reason"] == "benchmark_needs_last_year_average"
    assert refused.json()["details"] == {"group": "规下", "indicator": "tax_per_mu"}
    assert c.get("/v1/evaluations", headers=ADMIN, params={"county_code": county.code_, "year": YEAR}).json() == []

    _figures(c, county, 2, SMALL, 2022)  # 50,000 元 on 2 亩: 2.5 万元/亩
    assert _evaluate(c, county, 2022).status_code == 201
    run = _evaluate(c, county)
    assert run.status_code == 201, run.text
    first = run.json()["run"]
    assert Decimal(first["benchmarks"]["规下"]["tax_per_mu"]) == 5
    before = c.get(f"/v1/evaluations/{first['run_id']}/enterprises/{county.code(2)}", headers=ADMIN).json()
    assert Decimal(_term(before["score"], "tax_per_mu")["benchmark"]) == 5

    _figures(c, county, 2, {"tax": "100000"}, 2022)  # corrected: 5 万元/亩
    corrected = _evaluate(c, county, 2022).json()["run"]
    assert corrected["current"] and Decimal(corrected["averages"]["规下"]["tax_per_mu"]) == 5
    again = _evaluate(c, county).json()
    assert again["created"] and again["run"]["run_id"] != first["run_id"]
    assert Decimal(again["run"]["benchmarks"]["规下"]["tax_per_mu"]) == 10
    assert again["run"]["inputs_hash"] != first["inputs_hash"]
    old = c.get(f"/v1/evaluations/{first['run_id']}", headers=ADMIN).json()
    assert (old["content_hash"], old["benchmarks"], old["current"]) == (first["content_hash"], first["benchmarks"], False)
    assert c.get(f"/v1/evaluations/{first['run_id']}/enterprises/{county.code(2)}", headers=ADMIN).json() == before
    # the same inputs again: the same run, not a third
    same = _evaluate(c, county)
    assert (same.status_code, same.json()["run"]["content_hash"]) == (200, again["run"]["content_hash"])


# -- classes -------------------------------------------------------------------------------------------------

def test_threshold_classes_take_a_score_on_the_boundary_into_the_band(api, county):
    """Scores 77 (1), 64.5 (3), 41.6667 (2, 规下); 4 is a utility. Bands A >= 77, B >= 65, C >= 64.5, C- >= 41.6667,
    D: each score sits exactly on a boundary and belongs to the band above it; C- gets its half surcharge."""
    runtime, c = api
    _setup(c, county)
    policy = _policy(c, county)
    policy["class_rule"] = {"mode": "threshold", "bands": [
        {"label": "A", "min_score": "77"}, {"label": "B", "min_score": "65"}, {"label": "C", "min_score": "64.5"},
        {"label": "C-", "min_score": "41.6667"}, {"label": "D"}]}
    policy["treatments"]["C-"] = {"electricity_surcharge_yuan_per_kwh": "0.05"}
    policy["disposition"]["relocate_classes"] = ["C", "C-", "D"]
    r = _put(c, county, policy, 2)
    assert r.status_code == 200, r.text
    run = _evaluate(c, county).json()["run"]
    assert run["policy_version"] == 2
    assert run["class_counts"] == {"规上": {"A": 1, "C": 1, "T": 1}, "规下": {"C-": 1}}
    rows = _rows(c, run["run_id"])
    assert {n: (rows[county.code(n)]["class_label"], rows[county.code(n)]["rank"]) for n in (1, 2, 3, 4)} == {
        1: ("A", 1), 2: ("C-", 1), 3: ("C", 2), 4: ("T", None)}
    b = c.get(rows[county.code(2)]["breakdown_ref"], headers=ADMIN).json()
    assert b["treatment"]["electricity_surcharge_yuan_per_kwh"] == "0.05"
    assert (b["recommendation"]["disposition"], [x["code"] for x in b["recommendation"]["reasons"]]) == (
        "relocate", ["low_class_outside_park"])
    assert _outbox(runtime, "AssessmentPolicyChanged") == [f"{county.code_}/{YEAR}"] * 2


def test_a_county_may_close_excluded_enterprises_with_hazards(api, county):
    """disposition.py rule 5: T enterprises with a hazard are closed when the county lists T among its
    close-with-hazard classes. The policy validator refused that setting ('disposition names unknown classes: T'),
    so no county could use it."""
    runtime, c = api
    _setup(c, county)
    _register(c, county, 4, flags=["utility", "safety_hazard"])
    policy = _policy(c, county)
    policy["disposition"]["close_with_hazard_classes"] = ["A", "B", "C", "D", "T"]
    r = _put(c, county, policy, 2)
    assert r.status_code == 200, r.text
    run = _evaluate(c, county).json()["run"]
    b = c.get(f"/v1/evaluations/{run['run_id']}/enterprises/{county.code(4)}", headers=ADMIN).json()
    assert (b["class_label"], b["recommendation"]["disposition"]) == ("T", "close")
    assert {x["code"] for x in b["recommendation"]["reasons"]} == {"class_with_safety_hazard", "not_evaluated"}
    decided = c.post("/v1/dispositions", headers=ADMIN, json={"credit_code": county.code(4), "year": YEAR,
                                                               "decided_by": "县政府常务会议"}).json()
    assert (decided["recommended"], decided["decided"], decided["run_id"]) == ("close", "close", run["run_id"])
    assert c.post(f"/v1/dispositions/{county.code(4)}/{YEAR}/execution", headers=ADMIN,
                  json={"effective_on": "2024-03-01"}).status_code == 201
    assert _outbox(runtime, "EnterpriseExited") == [county.code(4)]
    # relocate and upgrade rules apply to ranked classes only: T there still says nothing and is refused
    policy["disposition"]["upgrade_classes"] = ["A", "B", "T"]
    refused = _put(c, county, policy, 3)
    assert refused.status_code == 422, refused.text
    assert refused.json()["reason"]


# -- decisions and tasks -------------------------------------------------------------------------------------

def test_a_decision_names_who_took_it_and_a_task_needs_something_to_do(api, county):
    """decided_by of blanks named nobody and was recorded (and published); a rectification deadline on a decision
    to do nothing opened no task and answered 201, as if the task had been opened."""
    runtime, c = api
    _setup(c, county)
    _evaluate(c, county)
    blank = c.post("/v1/dispositions", headers=ADMIN, json={"credit_code": county.code(2), "year": YEAR,
                                                             "decided_by": "   "})
    assert (blank.status_code, blank.json().get("reason")) == (422, "invalid_decision"), blank.text
    nothing = c.post("/v1/dispositions", headers=ADMIN, json={
        "credit_code": county.code(1), "year": YEAR, "decided_by": "县政府常务会议",
        "rectification_deadline": "2024-06-30"})  # 1 is A in a park: recommended none
    assert nothing.status_code == 422, nothing.text
    assert nothing.json()["reason"] == "invalid_task"
    for n in (1, 2):
        assert c.get(f"/v1/dispositions/{county.code(n)}/{YEAR}", headers=ADMIN).json() == {"standing": None,
                                                                                            "history": []}
    assert _outbox(runtime, "DispositionDecided") == []
    # the same without a deadline is a plain confirmation; an override to relocate with one opens its task
    assert c.post("/v1/dispositions", headers=ADMIN, json={"credit_code": county.code(1), "year": YEAR,
                                                            "decided_by": "县政府常务会议"}).status_code == 201
    moved = c.post("/v1/dispositions", headers=ADMIN, json={
        "credit_code": county.code(2), "year": YEAR, "decided_by": "县政府常务会议", "decided": "relocate",
        "reason": "入园集聚", "rectification_deadline": "2024-06-30"}).json()
    tasks = c.get("/v1/tasks", headers=ADMIN, params={"county_code": county.code_}).json()["items"]
    assert [(t["credit_code"], t["decision_id"], t["disposition"], t["deadline"]) for t in tasks] == [
        (county.code(2), moved["id"], "relocate", "2024-06-30")]


def test_a_task_id_names_one_task_and_a_closed_task_is_not_closed_again(api, county):
    """A task id reused with another year answered 200 with the first task (year 2023), as if it were the same."""
    _, c = api
    _setup(c, county)
    ids = {}
    for what in ("done", "cancelled"):
        ids[what] = f"T-{county.code_}-{what}"
        body = {"task_id": ids[what], "credit_code": county.code(2), "disposition": "upgrade",
                "deadline": "2024-01-31", "year": YEAR, "note": "更换燃煤锅炉"}
        assert c.post("/v1/tasks", headers=ADMIN, json=body).status_code == 201
        assert c.post("/v1/tasks", headers=ADMIN, json=body).status_code == 200
        for other in ({"year": 2024}, {"year": None}):
            r = c.post("/v1/tasks", headers=ADMIN, json=body | other)
            assert (r.status_code, r.json().get("reason")) == (409, "task_id_reused"), (other, r.text)
        assert c.get(f"/v1/tasks/{ids[what]}", headers=ADMIN).json()["year"] == YEAR
    blank = c.post(f"/v1/tasks/{ids['cancelled']}/cancellation", headers=ADMIN, json={"on": "2024-01-10", "note": "  "})
    assert (blank.status_code, blank.json().get("reason")) == (422, "reason_required")
    assert c.post(f"/v1/tasks/{ids['done']}/completion", headers=ADMIN, json={"on": "2024-02-05"}).status_code == 200
    assert c.post(f"/v1/tasks/{ids['cancelled']}/cancellation", headers=ADMIN,
                  json={"on": "2024-01-10", "note": "企业已注销"}).status_code == 200
    for tid, path in ((ids["done"], "cancellation"), (ids["cancelled"], "completion")):
        r = c.post(f"/v1/tasks/{tid}/{path}", headers=ADMIN, json={"on": "2024-02-06", "note": "再次关闭"})
        assert (r.status_code, r.json().get("reason")) == (409, "task_not_open"), r.text
    done = c.get(f"/v1/tasks/{ids['done']}", headers=ADMIN).json()
    cancelled = c.get(f"/v1/tasks/{ids['cancelled']}", headers=ADMIN).json()
    assert (done["status"], done["closed_on"], done["overdue"]) == ("done", "2024-02-05", False)
    # closing keeps what the task ordered (a cancellation's reason replaced it)
    assert (done["note"], done["closing_note"], cancelled["note"]) == ("更换燃煤锅炉", "", "更换燃煤锅炉")
    assert (cancelled["status"], cancelled["closed_on"], cancelled["closing_note"]) == ("cancelled", "2024-01-10", "企业已注销")
    assert c.get("/v1/tasks/overdue", headers=ADMIN, params={"county_code": county.code_,
                                                              "as_of": "2024-03-01"}).json()["items"] == []


# -- policy versions -----------------------------------------------------------------------------------------

def test_a_policy_put_that_stores_nothing_publishes_nothing(api, county):
    runtime, c = api
    _setup(c, county)
    policy = _policy(c, county)
    _group(policy, "规下")["cap_factor"] = "1.5"
    stale = _put(c, county, policy, 1)  # the default becomes version 1 when first used: the next is 2
    assert (stale.status_code, stale.json()["reason"]) == (409, "policy_version_conflict")
    assert stale.json()["details"] == {"current_version": 1}
    assert c.get(f"/v1/policies/{county.code_}/{YEAR}", headers=ADMIN).json()["stored"] is False
    assert _outbox(runtime, "AssessmentPolicyChanged") == []
    assert _put(c, county, policy, 2).json()["changed"] is True
    assert _put(c, county, policy, 3).json()["changed"] is False
    versions = c.get(f"/v1/policies/{county.code_}/{YEAR}/versions", headers=ADMIN).json()
    assert [(v["version"], v["created_by"]) for v in versions] == [(1, "system:default"), (2, "county-admin")]
    assert len(_outbox(runtime, "AssessmentPolicyChanged")) == 2


# -- odd input -----------------------------------------------------------------------------------------------

def test_a_score_the_run_cannot_publish_is_a_422_not_a_500(api, county):
    """An uncapped term with the smallest benchmark (10^-12) and the largest multiplier (10^15) the policy checks
    allow: 12,000 万元/亩 scores 4.8 x 10^32 for 40 points. EnterpriseAssessed carries at most 30 integer digits (a 500
    on SQLite), the results' score column 40 characters (a bare invalid_value on PostgreSQL)."""
    runtime, c = api
    _setup(c, county)
    _figures(c, county, 1, {"tax": "6000000000"})
    policy = _policy(c, county)
    above = _group(policy, "规上")
    above["cap_factor"] = None
    _term(above, "tax_per_mu")["benchmark"] = {"kind": "fixed", "value": "0.000000000001"}
    next(i for i in policy["indicators"] if i["code"] == "tax_per_mu")["multiplier"] = "1000000000000000"
    assert _put(c, county, policy, 2).status_code == 200
    r = _evaluate(c, county)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["reason"] == "score_out_of_range"
    assert r.json()["details"]["credit_code"] == county.code(1)
    assert c.get("/v1/evaluations", headers=ADMIN, params={"county_code": county.code_, "year": YEAR}).json() == []
    assert _outbox(runtime, "EnterpriseAssessed") == []
