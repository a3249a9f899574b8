"""A county-year's cluster ranking is its evaluation run's, kept when the run is made (seed 七; issue 4: answers
reproducible years later): a figure corrected afterwards changes it only through a new run, and an old run's
ranking stays readable by its id. SQLite and PostgreSQL."""
from __future__ import annotations

from tests.support.services import ADMIN

from .test_decision_lifecycle import api  # noqa: F401  (the fixture, clock at 2024-03-02)
from .test_evaluation_api import BIG
from .test_review_reads import _figures, _register, _run


def _ranking(c, county) -> dict:
    r = c.get(f"/v1/clusters/{county.code_}/2023/ranking", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def _correct_tax(c, county, n: int, tax: str) -> None:
    r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": 2023,
                                                      "department": "tax", "fields": {"tax": tax}})
    assert r.status_code in (200, 201), r.text


def test_a_runs_cluster_ranking_is_kept_with_it_and_changes_only_with_a_new_run(api, county):
    runtime, c = api
    for n, park in ((1, "P-A"), (2, "P-B")):
        _register(c, county, n, park_id=park, in_park=True)
        _figures(c, county, n, BIG)
    first = _run(c, county)
    kept = _ranking(c, county)
    assert kept["run_id"] == first and [x["cluster_id"] for x in kept["clusters"]] == ["P-A", "P-B"]
    assert kept["clusters"][0]["score"]["total"] == kept["clusters"][1]["score"]["total"], "the same figures: a tie"

    _correct_tax(c, county, 2, "9000000")  # P-B's enterprise paid more tax: P-B would now rank first
    assert _ranking(c, county) == kept, "the current run is still the first: so is its ranking"

    second = _run(c, county)
    assert second != first
    now = _ranking(c, county)
    assert now["run_id"] == second and now["content_hash"] != kept["content_hash"]
    assert [x["cluster_id"] for x in now["clusters"]] == ["P-B", "P-A"]

    old = c.get(f"/v1/evaluations/{first}/clusters", headers=ADMIN)
    assert old.status_code == 200 and old.json() == kept, old.text
    assert c.get("/v1/evaluations/nope/clusters", headers=ADMIN).json()["reason"] == "run_not_found"


def test_without_a_run_the_ranking_is_of_todays_figures_and_says_so(api, county):
    runtime, c = api
    _register(c, county, 1, park_id="P-A", in_park=True)
    _figures(c, county, 1, BIG)
    before = _ranking(c, county)
    assert before["run_id"] is None and [x["cluster_id"] for x in before["clusters"]] == ["P-A"]
    run = _run(c, county)
    after = _ranking(c, county)
    # the same inputs and policy: the kept ranking is the one computed on read, hash included
    assert after == {**before, "run_id": run}
