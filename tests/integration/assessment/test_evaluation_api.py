"""Policies and evaluation runs over HTTP, events read back from Kafka, on SQLite and PostgreSQL.

The figures are the worked examples of tests/unit/assessment/test_scoring.py and test_evaluation.py,
sent in 元, 亩, tce, kWh and t: enterprise 1 (规上) scores 77, enterprise 3 (规上, less tax, more COD)
64.5, enterprise 2 (规下) 41.6667; enterprise 4 is a utility (class T); enterprise 5 has no figures.
"""
from __future__ import annotations

from sqlalchemy import text

from tests.support.services import ADMIN, auth

from .conftest import of_type

BIG = {"land": "50", "tax": "6000000", "revenue": "300000000", "value_added": "60000000", "energy": "2000",
       "emissions.COD": "10", "emissions.NH3-N": "1", "emissions.SO2": "5", "emissions.NOx": "4", "employees": "250",
       "rnd": "9000000"}
SMALL = {"land": "2", "tax": "50000", "electricity": "250000", "revenue": "1000000"}
FIGURES = {1: BIG, 2: SMALL, 3: BIG | {"tax": "3000000", "emissions.COD": "40", "emissions.NH3-N": "0",
                                      "emissions.SO2": "0", "emissions.NOx": "0"}, 4: BIG}


def _setup(c, county):
    for n, extra in ((1, {"park_id": "P-A", "in_park": True}), (2, {}), (3, {"park_id": "P-B", "in_park": True}),
                     (4, {"flags": ["utility"]}), (5, {})):
        body = {"credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township, "industry_code": "C3311", **extra}
        assert c.post("/v1/enterprises", headers=ADMIN, json=body).status_code == 201
    for n, fields in FIGURES.items():
        r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": 2023, "department": "tax",
                                                          "fields": fields})
        assert r.status_code == 201, r.text


def _outbox_count(runtime, event: str) -> int:
    with runtime.db.sessions() as s:
        return s.execute(text("SELECT count(*) FROM outbox WHERE event_type = :t"), {"t": f"countypool.{event}.v1"}).scalar()


def test_runs_are_reproducible_versioned_and_published(county, service, events_tail):
    runtime, c, _ = service
    _setup(c, county)
    assert c.get(f"/v1/policies/{county.code_}/2023", headers=ADMIN).json()["stored"] is False

    first = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert first.status_code == 201, first.text
    run = first.json()["run"]
    assert (run["policy_version"], run["enterprise_count"], run["without_data"], run["current"]) == (1, 4, 1, True)
    assert run["class_counts"] == {"规上": {"A": 1, "B": 1, "T": 1}, "规下": {"A": 1}}
    rid = run["run_id"]

    rows = {r["credit_code"]: r for r in c.get(f"/v1/evaluations/{rid}/enterprises", headers=ADMIN).json()["items"]}
    assert {n: (rows[county.code(n)]["score"], rows[county.code(n)]["class_label"]) for n in (1, 2, 3, 4)} == {
        1: ("77.0000", "A"), 2: ("41.6667", "A"), 3: ("64.5000", "B"), 4: (None, "T")}
    b = c.get(rows[county.code(1)]["breakdown_ref"], headers=auth("dev-finance-token")).json()
    assert {t["indicator"]: t["capped_term"] for t in b["score"]["terms"]} == {
        "tax_per_mu": "16", "revenue_per_mu": "25", "value_added_per_energy": "15", "value_added_per_emission": "12",
        "labour_productivity": "4", "rnd_ratio": "5"}
    assert b["recommendation"]["disposition"] == "none" and b["policy_version"] == 1
    assert b["treatment"]["land_priority"] is True

    late = {"credit_code": county.code(9), "name": "企业9", "township_code": county.township, "industry_code": "C3311"}
    assert c.post("/v1/enterprises", headers=ADMIN, json=late).status_code == 201  # registered, no figures: no input
    again = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert (again.status_code, again.json()["created"], again.json()["run"]["run_id"]) == (200, False, rid)
    assert again.json()["run"]["content_hash"] == run["content_hash"]
    assert again.json()["run"]["without_data"] == 2, "counted as the register is now: 5 and 9 have no figures"
    assert _outbox_count(runtime, "EnterpriseAssessed") == 4, "the same run is not published twice"

    # a new policy version: 规下 weights 50/50
    policy = c.get(f"/v1/policies/{county.code_}/2023", headers=ADMIN).json()["policy"]
    assert policy["version"] == 1
    for term in policy["groups"][1]["terms"]:
        term["weight"] = "50"
    stale = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy})
    assert (stale.status_code, stale.json()["reason"]) == (409, "policy_version_conflict")
    put = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 2}, "note": "50/50"})
    assert put.status_code == 200 and put.json()["changed"] is True and put.json()["policy"]["version"] == 2
    same = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 3}})
    assert same.json()["changed"] is False and same.json()["policy"]["version"] == 2
    floats = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 3, "emission_weights": {"COD": 0.5}}})
    assert floats.status_code == 422, "numbers in a policy are decimal strings, never floats"

    second = c.post("/v1/evaluations", headers=ADMIN, json=county.run).json()
    assert second["created"] is True and second["run"]["policy_version"] == 2 and second["run"]["run_id"] != rid
    rows2 = {r["credit_code"]: r for r in c.get(f"/v1/evaluations/{second['run']['run_id']}/enterprises", headers=ADMIN).json()["items"]}
    assert rows2[county.code(2)]["score"] == "45.8333"  # 50 x 2.5 / 10 + 50 x 0.2 / 0.3
    old = c.get(f"/v1/evaluations/{rid}", headers=ADMIN).json()
    assert (old["policy_version"], old["current"]) == (1, False)
    assert c.get(f"/v1/policies/{county.code_}/2023/versions/1", headers=ADMIN).json()["policy"]["groups"][1]["terms"][0]["weight"] == "60"
    assert [v["version"] for v in c.get(f"/v1/policies/{county.code_}/2023/versions", headers=ADMIN).json()] == [1, 2]

    # corrected figures: a third run; the first two stay readable
    c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(3), "year": 2023, "department": "tax",
                                                  "fields": {"tax": "3600000"}})
    third = c.post("/v1/evaluations", headers=ADMIN, json=county.run).json()
    assert third["created"] is True and third["run"]["inputs_hash"] != second["run"]["inputs_hash"]
    assert [r["run_id"] for r in c.get("/v1/evaluations", headers=ADMIN, params=county.run).json()] == [
        rid, second["run"]["run_id"], third["run"]["run_id"]]
    assert c.get(f"/v1/evaluations/{rid}/enterprises/{county.code(1)}", headers=ADMIN).json()["policy_version"] == 1

    ranking = c.get(f"/v1/clusters/{county.code_}/2023/ranking", headers=ADMIN).json()
    assert [(x["cluster_id"], x["rank"], x["members"]) for x in ranking["clusters"]] == [
        ("P-A", 1, [county.code(1)]), ("P-B", 2, [county.code(3)])]
    assert ranking["policy_version"] == 2

    # the topic's partitions are read independently: wait for both kinds (keyed apart, they may come in any order)
    events_tail.until(lambda _: len(of_type(events_tail.events(county), "EnterpriseAssessed")) >= 12
                      and len(of_type(events_tail.events(county), "AssessmentPolicyChanged")) >= 2)
    assessed = of_type(events_tail.events(county), "EnterpriseAssessed")
    assert sorted({e["data"]["run_id"] for e in assessed}) == sorted({rid, second["run"]["run_id"], third["run"]["run_id"]})
    e1 = next(e for e in assessed if e["data"]["run_id"] == rid and e["subject"] == county.code(1))
    assert (e1["data"]["score"], e1["data"]["class_label"], e1["data"]["policy_version"]) == ("77.0000", "A", 1)
    assert e1["data"]["breakdown_ref"] == f"/v1/evaluations/{rid}/enterprises/{county.code(1)}"
    changed = of_type(events_tail.events(county), "AssessmentPolicyChanged")
    assert [e["data"]["policy_version"] for e in changed] == [1, 2]


def test_nothing_to_evaluate_and_missing_last_year_average(county, service):
    _, c, _ = service
    r = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert (r.status_code, r.json()["reason"]) == (422, "nothing_to_evaluate")
    _setup(c, county)
    policy = c.get(f"/v1/policies/{county.code_}/2023", headers=ADMIN).json()["policy"]
    policy["groups"][0]["terms"][0]["benchmark"] = {"kind": "relative", "factor": "2"}
    assert c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 2}}).status_code == 200
    r = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert (r.status_code, r.json()["reason"]) == (422, "benchmark_needs_last_year_average")
