"""Review (dec01): the lifecycle of evaluation runs and county decisions, on SQLite and PostgreSQL (relay stopped: what
the service would publish is read from its outbox).

- the county's settlement of a figure two departments gave alike, taken back once no longer needed, leaves the merged
  figures as they were: evaluating again finds the earlier run (reinstated), not a new run of the same figures;
- an enterprise relocated once is not relocated again into the park it already stands in: no second
  EnterpriseRelocated, and the years before the move keep judging it where it stood;
- (guard) a figure another department added and then withdrew: the run before it is reinstated, published once.

The county of test_dispositions_api: 规上 1 scores 77 (A, upgrade); 6 scores 73 (B, in an ecological control zone:
close); 7 scores 64.5 (C, outside a park: relocate).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

import services.assessment.api.routes_dispositions as routes
from tests.support.services import ADMIN, running_service

from .test_dispositions_api import FIGURES

# decisions and executions are judged at 2024-03-02 00:30 in China (runs keep the real clock)
NOW = datetime(2024, 3, 1, 16, 30, tzinfo=timezone.utc)


@pytest.fixture
def api(db_url, kafka_bootstrap, monkeypatch):
    monkeypatch.setattr(routes, "now", lambda: NOW)
    with running_service("assessment", db_url, kafka_bootstrap, background=False) as (runtime, c):
        yield runtime, c


def _register(c, county, n: int, flags: list[str], **extra) -> None:
    body = {"credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township,
            "industry_code": "C3311", "flags": flags, **extra}
    r = c.post("/v1/enterprises", headers=ADMIN, json=body)
    assert r.status_code in (200, 201), r.text


def _part(c, code: str, year: int, department: str, fields: dict):
    return c.post("/v1/indicators", headers=ADMIN, json={"credit_code": code, "year": year, "department": department,
                                                         "fields": fields})


def _setup(c, county, years=(2023,)) -> None:
    for n, fields in FIGURES.items():
        _register(c, county, n, ["ecological_control_zone"] if n == 6 else [])
        for year in years:
            r = _part(c, county.code(n), year, "tax", fields)
            assert r.status_code == 201, r.text


def _evaluate(c, county, year: int = 2023):
    return c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": year})


def _decide(c, county, n, year=2023, **kw):
    return c.post("/v1/dispositions", headers=ADMIN,
                  json={"credit_code": county.code(n), "year": year, "decided_by": "县政府常务会议", **kw})


def _execute(c, county, n, year=2023, **kw):
    return c.post(f"/v1/dispositions/{county.code(n)}/{year}/execution", headers=ADMIN, json=kw)


def _outbox(runtime, event: str, key: str | None = None) -> int:
    q = "SELECT count(*) FROM outbox WHERE event_type = :t" + (" AND key = :k" if key else "")
    with runtime.db.sessions() as s:
        return s.execute(text(q), {"t": f"countypool.{event}.v1", "k": key}).scalar()


# -- a correction taken back --------------------------------------------------------------------------------------

def test_the_countys_settlement_taken_back_reinstates_the_run_before_it(api, county):
    """The tax bureau gave 1's land first (50 亩); the land bureau then gave the same figure. Run 1. The county
    settles 1's land at 60 亩: run 2. The figure is found right after all and the county takes its settlement back
    (the departments agree): the merged figures are those of run 1, so evaluating again is run 1, made current again
    ('reinstated'), not a third run of the same figures with its own round of EnterpriseAssessed."""
    runtime, c = api
    _setup(c, county)
    one = county.code(1)
    assert _part(c, one, 2023, "land", {"land": FIGURES[1]["land"]}).status_code == 201
    before = c.get(f"/v1/enterprises/{one}/indicators/2023", headers=ADMIN).json()
    first = _evaluate(c, county)
    assert first.status_code == 201, first.text
    run1 = first.json()["run"]

    assert _part(c, one, 2023, "county", {"land": "60"}).status_code == 201
    second = _evaluate(c, county)
    assert second.status_code == 201 and second.json()["run"]["run_id"] != run1["run_id"], second.text

    taken_back = c.post("/v1/indicators/withdrawals", headers=ADMIN, json={
        "credit_code": one, "year": 2023, "department": "county", "fields": ["land"]})
    assert taken_back.status_code == 200, taken_back.text
    after = c.get(f"/v1/enterprises/{one}/indicators/2023", headers=ADMIN).json()
    assert after["figures"] == before["figures"]

    assessed = _outbox(runtime, "EnterpriseAssessed")
    again = _evaluate(c, county)
    assert again.status_code in (200, 201), again.text
    assert (again.json()["created"], again.json()["run"]["run_id"], again.json()["run"]["content_hash"]) == (
        False, run1["run_id"], run1["content_hash"]), \
        f"the same figures as run 1 made another run; merged sources {before['sources']} -> {after['sources']}"
    assert _outbox(runtime, "EnterpriseAssessed") == assessed, "no second round of results for the same figures"
    assert [r["run_id"] for r in c.get("/v1/evaluations", headers=ADMIN,
                                       params={"county_code": county.code_, "year": 2023}).json()] == [
        run1["run_id"], second.json()["run"]["run_id"]]


# -- relocations ----------------------------------------------------------------------------------------------------

def test_an_enterprise_already_relocated_is_not_relocated_again_into_the_same_park(api, county):
    """7 stood outside a park in 2022 and 2023; both years' runs recommend relocating it, and the county decided on
    2023's. It moved into P-GREEN (EnterpriseRelocated, effective 2024-03-01). The county then confirms 2022's
    recommendation too and records it carried out, into the same park: the enterprise did not leave anywhere, so no
    second EnterpriseRelocated (quota would free its old quotas again), and a re-run of 2023 still judges it where it
    stood (outside a park: the same run)."""
    runtime, c = api
    _setup(c, county, years=(2022, 2023))
    code = county.code(7)
    run_2022 = _evaluate(c, county, 2022)
    assert run_2022.status_code == 201, run_2022.text
    run_2023 = _evaluate(c, county, 2023).json()["run"]
    assert _decide(c, county, 7).json()["decided"] == "relocate"
    moved = _execute(c, county, 7, effective_on="2024-03-01", to_park_id="P-GREEN")
    assert moved.status_code == 201, moved.text
    assert _outbox(runtime, "EnterpriseRelocated", code) == 1
    assert c.get(f"/v1/enterprises/{code}", headers=ADMIN).json()["park_id"] == "P-GREEN"

    assert _decide(c, county, 7, year=2022).json()["decided"] == "relocate"
    again = _execute(c, county, 7, year=2022, effective_on="2024-02-20", to_park_id="P-GREEN")
    assert again.status_code < 500, again.text
    assert _outbox(runtime, "EnterpriseRelocated", code) == 1, \
        f"a second EnterpriseRelocated for an enterprise already in P-GREEN ({again.status_code})"

    rerun = _evaluate(c, county, 2023)
    assert rerun.status_code in (200, 201), rerun.text
    assert (rerun.json()["created"], rerun.json()["run"]["content_hash"]) == (False, run_2023["content_hash"]), \
        "2023 re-run no longer judges 7 where it stood in 2023"


def test_a_figure_another_department_added_and_withdrew_reinstates_the_run_before_it(api, county):
    """Guard: the energy bureau adds 1's electricity (run 2, a decision taken on it), then takes it back: the merged
    record is run 1's again, so evaluating again reinstates run 1 (one EvaluationRunMadeCurrent 'reinstated' naming
    run 2, no EnterpriseAssessed again), run 2 stays readable as it was, and a decision is then taken on run 1."""
    runtime, c = api
    _setup(c, county)
    one = county.code(1)
    run1 = _evaluate(c, county).json()["run"]
    assert _part(c, one, 2023, "energy", {"electricity": "800000"}).status_code == 201
    second = _evaluate(c, county)
    assert second.status_code == 201, second.text
    run2 = second.json()["run"]
    results2 = c.get(f"/v1/evaluations/{run2['run_id']}/enterprises", headers=ADMIN).json()["items"]
    assert _decide(c, county, 1).json()["run_id"] == run2["run_id"]

    r = c.post("/v1/indicators/withdrawals", headers=ADMIN, json={
        "credit_code": one, "year": 2023, "department": "energy", "fields": ["electricity"]})
    assert r.status_code == 200, r.text
    assessed, made_current = _outbox(runtime, "EnterpriseAssessed"), _outbox(runtime, "EvaluationRunMadeCurrent")
    again = _evaluate(c, county)
    assert (again.status_code, again.json()["run"]["run_id"], again.json()["run"]["current"]) == (
        200, run1["run_id"], True), again.text
    assert _outbox(runtime, "EnterpriseAssessed") == assessed
    assert _outbox(runtime, "EvaluationRunMadeCurrent") == made_current + 1
    with runtime.db.sessions() as s:
        last = s.execute(text("SELECT envelope FROM outbox WHERE event_type = :t ORDER BY position DESC LIMIT 1"),
                         {"t": "countypool.EvaluationRunMadeCurrent.v1"}).scalar()
    data = json.loads(last)["data"]
    assert (data["run_id"], data["previous_run_id"], data["why"]) == (run1["run_id"], run2["run_id"], "reinstated")
    assert _evaluate(c, county).status_code == 200 and _outbox(runtime, "EvaluationRunMadeCurrent") == made_current + 1
    old = c.get(f"/v1/evaluations/{run2['run_id']}", headers=ADMIN).json()
    assert (old["content_hash"], old["current"]) == (run2["content_hash"], False)
    assert c.get(f"/v1/evaluations/{run2['run_id']}/enterprises", headers=ADMIN).json()["items"] == results2
    d = _decide(c, county, 1, rectification_deadline="2024-06-30")
    assert (d.status_code, d.json()["run_id"]) == (201, run1["run_id"]), d.text
