"""Replay of the assessment service on SQLite and PostgreSQL: the real service (HTTP, its Kafka relay running)
goes through a county's year, then its read models are rebuilt from its outbox and must equal the live
tables; a row changed behind the service's back is named by model and key.

Enterprises 1 (规上, in park P-A), 6 (ecological control zone) and 7 have figures from the tax bureau (the
worked examples of test_dispositions_api) and 1 also from the land bureau; 8 has none (not evaluated).
"""
from __future__ import annotations

import pytest
from sqlalchemy import text

from services.assessment.replay import MODELS, AssessmentProjection, rebuild
from shared.replay import replay
from tests.support.services import ADMIN

from .test_dispositions_api import FIGURES

YEAR = 2023


def _ok(r, status: int = 201) -> dict:
    assert r.status_code == status, r.text
    return r.json()


def _county_year(c, county) -> dict:
    """Drive the service through every event the replay folds; returns what the checks need."""
    for n in (1, 6, 7, 8):
        extra = {"in_park": True, "park_id": "P-A", "scale": "规上"} if n == 1 else {}
        flags = ["ecological_control_zone"] if n == 6 else []
        _ok(c.post("/v1/enterprises", headers=ADMIN, json={
            "credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township, "industry_code": "C3311",
            "flags": flags, **extra}))
    renamed = {"credit_code": county.code(8), "name": "企业八", "township_code": county.township, "industry_code": "C3311"}
    assert _ok(c.post("/v1/enterprises", headers=ADMIN, json=renamed), 200)["result"] == "updated"

    def figures(n: int, department: str, fields: dict):
        return c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": YEAR,
                                                             "department": department, "fields": fields})

    for n, fields in FIGURES.items():
        _ok(figures(n, "tax", fields))
    # the same land figure from a second department (the field stays the tax bureau's), and its own figure
    _ok(figures(1, "land", {"land": "50", "electricity": "1000000"}))
    _ok(figures(1, "land", {"electricity": "1200000"}))  # a correction of its own figure
    assert figures(1, "land", {"land": "51"}).status_code == 409, "a conflicting figure is refused, nothing recorded"

    run1 = _ok(c.post("/v1/evaluations", headers=ADMIN, json=county.run))["run"]
    assert _ok(c.post("/v1/evaluations", headers=ADMIN, json=county.run), 200)["created"] is False  # a re-run
    policy = _ok(c.get(f"/v1/policies/{county.code_}/{YEAR}", headers=ADMIN), 200)["policy"]
    for term in policy["groups"][1]["terms"]:
        term["weight"] = "50"
    _ok(c.put(f"/v1/policies/{county.code_}/{YEAR}", headers=ADMIN, json={"policy": policy | {"version": 2}}), 200)
    run2 = _ok(c.post("/v1/evaluations", headers=ADMIN, json=county.run))["run"]

    def decide(n: int, **kw) -> dict:
        return _ok(c.post("/v1/dispositions", headers=ADMIN, json={"credit_code": county.code(n), "year": YEAR,
                                                                    "decided_by": "县政府常务会议", **kw}))

    decide(1)
    decide(1, decided="close", reason="环保督察整改未完成")  # supersedes the first
    decide(6, rectification_deadline="2024-01-31")
    decide(7, decided="relocate", reason="园区有承接能力")
    _ok(c.post(f"/v1/dispositions/{county.code(6)}/{YEAR}/execution", headers=ADMIN, json={"effective_on": "2024-03-01"}))
    _ok(c.post(f"/v1/dispositions/{county.code(7)}/{YEAR}/execution", headers=ADMIN,
               json={"effective_on": "2024-05-01", "to_park_id": "P-GREEN"}))
    project = {"county_code": county.code_, "year": YEAR, "park_id": "P-A", "land": "10", "investment": "25000000.00",
               "expected_yearly_tax": "1500000.00", "energy_need": "120.5", "industry_code": "C3311"}
    _ok(c.post("/v1/projects", headers=ADMIN, json=project | {"project_id": f"PRJ-{county.code_}-1",
                                                              "applicant_credit_code": county.code(1)}))
    _ok(c.post("/v1/projects", headers=ADMIN, json=project | {"project_id": f"PRJ-{county.code_}-2", "park_id": None,
                                                              "applicant_credit_code": county.code(7),
                                                              "investment": "1000000"}))
    return {"run1": run1["run_id"], "run2": run2["run_id"]}


EXPECTED_ROWS = {"enterprises": 4, "indicator_parts": 4, "indicators": 3, "policies": 2, "evaluation_runs": 2,
                 "assessment_results": 6, "latest_assessments": 3, "current_runs": 1, "decisions": 4, "executions": 2,
                 "projects": 2}


def test_rebuilt_read_models_equal_the_live_ones_and_name_a_tampered_row(county, service):
    runtime, c, _ = service
    runs = _county_year(c, county)
    db = runtime.db

    report = rebuild(db)
    assert report.equal, "\n".join(str(d) for d in report.differences)
    assert report.rows == EXPECTED_ROWS
    # 5 registrations, 5 figure parts, 2 policies, 3 + 3 results, 2 runs made current, 4 decisions, 1 exit,
    # 1 relocation, 2 projects
    assert (report.events_read, report.events_applied) == (28, 28)

    p = AssessmentProjection()
    replay(db, p, compare_live=False)
    m = p.rebuilt()
    c1, c6, c7, c8 = (county.code(n) for n in (1, 6, 7, 8))
    assert m["enterprises"][c1][7] == "规上" and m["enterprises"][c8][0] == "企业八"
    assert m["enterprises"][c6][8:] == ("exited", 2)
    assert m["enterprises"][c7][3:5] == (True, "P-GREEN")
    assert dict((f, (v, d)) for f, v, d in m["indicators"][(c1, YEAR)])["land"] == ("50.0000", "tax")
    assert dict(m["indicator_parts"][(c1, YEAR, "land")]) == {"land": "50.0000", "electricity": "1200000"}
    assert m["latest_assessments"][(c1, YEAR)][:2] == (runs["run2"], 2)
    assert m["current_runs"] == {(county.code_, YEAR): (runs["run2"],)}
    assert m["decisions"][(c1, YEAR, 1)][-1] is True and m["decisions"][(c1, YEAR, 2)][3] == "close"
    assert m["executions"][(c6, YEAR)][:2] == ("close", "2024-03-01")

    # behind the service's back: an old run's score, and a department's part that disappears
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE enterprise_results SET score = '99.0000' WHERE run_id = :r AND credit_code = :c"),
                     {"r": runs["run1"], "c": c1})
        conn.execute(text("DELETE FROM indicator_parts WHERE credit_code = :c AND department = 'land'"), {"c": c1})
    tampered = rebuild(db)
    assert [(d.model, d.key) for d in tampered.differences] == [
        ("assessment_results", (runs["run1"], c1)), ("indicator_parts", (c1, YEAR, "land"))]
    score = tampered.differences[0]
    assert (score.live[2], score.rebuilt[2]) == ("99.0000", "77.0000")
    assert tampered.differences[1].live is None
    with pytest.raises(NotImplementedError):
        rebuild(db, repair=True)
    assert len(rebuild(db).differences) == 2, "a refused repair changes nothing"
    assert set(report.rows) == set(MODELS)


def test_a_run_made_current_again_is_rebuilt_current(county, api):
    """Run A, a corrected figure (run B), the correction taken back: A is current again. The rebuilt current run
    follows the EvaluationRunMadeCurrent events (A), not the most recently created run (B, which each enterprise's
    latest EnterpriseAssessed still names). Without those events (a history written before they existed) the rebuilt
    current run is the last created one, and the replay names the county-year as a difference."""
    runtime, c = api
    for n in (1, 7):
        _ok(c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": county.code(n), "name": f"企业{n}",
                                                           "township_code": county.township, "industry_code": "C3311"}))

    def tax(n: int, fields: dict):
        _ok(c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": YEAR,
                                                          "department": "tax", "fields": fields}))

    for n in (1, 7):
        tax(n, FIGURES[n])
    a = _ok(c.post("/v1/evaluations", headers=ADMIN, json=county.run))["run"]["run_id"]
    tax(7, {"tax": "1"})
    b = _ok(c.post("/v1/evaluations", headers=ADMIN, json=county.run))["run"]["run_id"]
    tax(7, {"tax": FIGURES[7]["tax"]})
    assert _ok(c.post("/v1/evaluations", headers=ADMIN, json=county.run), 200)["run"]["run_id"] == a
    db = runtime.db

    report = rebuild(db)
    assert report.equal, "\n".join(str(d) for d in report.differences)
    p = AssessmentProjection()
    replay(db, p, compare_live=False)
    m = p.rebuilt()
    assert m["current_runs"] == {(county.code_, YEAR): (a,)}
    assert m["latest_assessments"][(county.code(1), YEAR)][0] == b

    with db.engine.begin() as conn:  # the history as it was before the event existed
        conn.execute(text("DELETE FROM outbox WHERE event_type = 'countypool.EvaluationRunMadeCurrent.v1'"))
    old = rebuild(db)
    assert [(d.model, d.key, d.live, d.rebuilt) for d in old.differences] == [
        ("current_runs", (county.code_, YEAR), (a,), (b,))]
