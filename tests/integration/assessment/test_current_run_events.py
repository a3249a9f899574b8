"""Which evaluation run is a county-year's current one is published (EvaluationRunMadeCurrent), on SQLite and
PostgreSQL, relay stopped: what the service would publish is read from its outbox.

Run A over the figures of test_evaluation_api; a corrected figure gives run B; the correction taken back makes A
current again. A reader that keeps the latest EnterpriseAssessed per enterprise would keep B's results: the event
telling it A is current again is what it has to go on (A's results are not published a second time).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import text

from services.assessment.evaluations import evaluate
from services.assessment.events import Actor
from shared.envelope import decode
from tests.support.services import ADMIN

from .conftest import YEAR
from .test_evaluation_api import FIGURES, _setup

MADE_CURRENT = "EvaluationRunMadeCurrent"


def _outbox(runtime, event: str) -> list[tuple[str, dict]]:
    """(key, envelope) of the outbox rows of one event type, in outbox order; each decodes against its contract."""
    with runtime.db.sessions() as s:
        rows = s.execute(text("SELECT key, envelope FROM outbox WHERE event_type = :t ORDER BY position"),
                         {"t": f"countypool.{event}.v1"}).all()
    for _, envelope in rows:
        decode(envelope)
    return [(key, json.loads(envelope)) for key, envelope in rows]


def _evaluate(c, county, status: int) -> dict:
    r = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert r.status_code == status, r.text
    return r.json()


def _tax(c, county, n: int, tax: str) -> None:
    r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": YEAR, "department": "tax",
                                                      "fields": {"tax": tax}})
    assert r.status_code in (200, 201), r.text


def _the_run(run: dict) -> dict:
    """The event's fields that restate the run row."""
    return {k: run[k] for k in ("run_id", "county_code", "year", "content_hash", "policy_version", "policy_hash",
                                "enterprise_count", "class_counts")}


def test_every_change_of_the_current_run_is_published_once(api, county):
    runtime, c = api
    _setup(c, county)
    key = f"{county.code_}/{YEAR}"

    a = _evaluate(c, county, 201)["run"]
    [(k, first)] = _outbox(runtime, MADE_CURRENT)
    assert k == key and first["subject"] == key and first["aggregatetype"] == "county-year"
    assert first["data"] == {**_the_run(a), "previous_run_id": None, "why": "created"}

    _tax(c, county, 3, "3600000")  # a corrected figure: run B
    b = _evaluate(c, county, 201)["run"]
    assert b["run_id"] != a["run_id"] and b["current"]
    events = _outbox(runtime, MADE_CURRENT)
    assert len(events) == 2
    assert events[1][1]["data"] == {**_the_run(b), "previous_run_id": a["run_id"], "why": "created"}

    _tax(c, county, 3, FIGURES[3]["tax"])  # the correction taken back: the inputs of run A again
    again = _evaluate(c, county, 200)
    assert (again["created"], again["run"]["run_id"], again["run"]["current"]) == (False, a["run_id"], True)
    assert c.get(f"/v1/evaluations/{b['run_id']}", headers=ADMIN).json()["current"] is False
    events = _outbox(runtime, MADE_CURRENT)
    assert len(events) == 3, "exactly one event for run A made current again"
    k, reinstated = events[2]
    assert k == key
    assert reinstated["data"] == {**_the_run(a), "previous_run_id": b["run_id"], "why": "reinstated"}
    # its results are not published again: 4 enterprises per run, runs A and B
    assessed = _outbox(runtime, "EnterpriseAssessed")
    assert sorted(e["data"]["run_id"] for _, e in assessed) == sorted([a["run_id"]] * 4 + [b["run_id"]] * 4)

    # requesting the current run again is idempotent: no event
    same = _evaluate(c, county, 200)
    assert (same["created"], same["run"]["run_id"], same["run"]["current"]) == (False, a["run_id"], True)
    assert len(_outbox(runtime, MADE_CURRENT)) == 3
    assert len(_outbox(runtime, "EnterpriseAssessed")) == 8


def test_a_request_whose_clock_is_behind_still_makes_its_run_current(api, county):
    """The run a request made current is the current one afterwards, and its event says so, even when the request's
    clock reads earlier than the last request of the run it replaces (another replica's clock, or a request that
    read the time before it waited for the county-year's lock)."""
    runtime, c = api
    _setup(c, county)
    a = _evaluate(c, county, 201)["run"]
    _tax(c, county, 3, "3600000")
    b = _evaluate(c, county, 201)["run"]
    _tax(c, county, 3, FIGURES[3]["tax"])

    behind = datetime.fromisoformat(b["last_requested_at"].replace("Z", "+00:00")) - timedelta(hours=1)
    row, created = runtime.transaction(lambda uow: evaluate(uow.session, uow.outbox, county.code_, YEAR,
                                                            Actor("t"), behind))
    assert (row.run_id, created) == (a["run_id"], False)
    runs = {r["run_id"]: r["current"] for r in c.get("/v1/evaluations", headers=ADMIN, params=county.run).json()}
    assert runs == {a["run_id"]: True, b["run_id"]: False}
    events = [e["data"] for _, e in _outbox(runtime, MADE_CURRENT)]
    assert [(e["run_id"], e["previous_run_id"], e["why"]) for e in events] == [
        (a["run_id"], None, "created"), (b["run_id"], a["run_id"], "created"), (a["run_id"], b["run_id"], "reinstated")]

    # and the current run requested again with a clock behind stays current, publishing nothing
    runtime.transaction(lambda uow: evaluate(uow.session, uow.outbox, county.code_, YEAR, Actor("t"),
                                             behind - timedelta(hours=1)))
    runs = {r["run_id"]: r["current"] for r in c.get("/v1/evaluations", headers=ADMIN, params=county.run).json()}
    assert runs == {a["run_id"]: True, b["run_id"]: False}
    assert len(_outbox(runtime, MADE_CURRENT)) == 3
