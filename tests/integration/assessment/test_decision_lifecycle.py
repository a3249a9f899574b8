"""What happens to a county decision after it is taken, on SQLite and PostgreSQL (relay stopped: what the
service would publish is read from its outbox).

- a re-evaluation that changes the enterprise's recommendation leaves the decision standing but no longer
  executable (decision_outdated) until the county decides again; one that does not change it leaves it be;
- a closure or relocation is recorded once it has taken effect (not dated after the county's today);
- an exited enterprise takes no new decision or task, and none of its tasks stays open (overdue forever);
- a task is not closed on a day still to come;
- (PostgreSQL) an override racing the execution of the decision it overrides: never an exit published for a
  decision recorded as superseded.

The county of test_dispositions_api: 规上 1 scores 77 (A, upgrade); 6 scores 73 (B, in an ecological control
zone: close); 7 scores 64.5 (C, outside a park: relocate).
"""
from __future__ import annotations

import threading
import time
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import text

import services.assessment.api.routes_dispositions as routes
from services.assessment.dispositions import decide, execute
from services.assessment.domain.disposition import Disposition
from services.assessment.events import Actor
from shared.errors import Conflict
from tests.support.services import ADMIN, running_service

from .test_dispositions_api import FIGURES

# decisions, executions and tasks are judged at 2024-03-02 00:30 in China, still 1 March in UTC (runs keep the
# real clock: two runs requested at the same instant would not tell which is current)
NOW = datetime(2024, 3, 1, 16, 30, tzinfo=timezone.utc)


@pytest.fixture
def api(db_url, kafka_bootstrap, county, monkeypatch):
    monkeypatch.setattr(routes, "now", lambda: NOW)
    with running_service("assessment", db_url, kafka_bootstrap, background=False) as (runtime, c):
        yield runtime, c


def _register(c, county, n: int, flags: list[str]) -> int:
    body = {"credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township, "industry_code": "C3311",
            "flags": flags}
    return c.post("/v1/enterprises", headers=ADMIN, json=body).status_code


def _setup(c, county, years=(2023,)):
    for n, fields in FIGURES.items():
        assert _register(c, county, n, ["ecological_control_zone"] if n == 6 else []) == 201
        for year in years:
            r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": year,
                                                                "department": "tax", "fields": fields})
            assert r.status_code == 201, r.text
    for year in years:
        r = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": year})
        assert r.status_code == 201, r.text


def _decide(c, county, n, year=2023, **kw):
    return c.post("/v1/dispositions", headers=ADMIN,
                  json={"credit_code": county.code(n), "year": year, "decided_by": "县政府常务会议", **kw})


def _execute(c, county, n, year=2023, **kw):
    return c.post(f"/v1/dispositions/{county.code(n)}/{year}/execution", headers=ADMIN, json=kw)


def _outbox(runtime, event: str, subject: str) -> int:
    with runtime.db.sessions() as s:
        return s.execute(text("SELECT count(*) FROM outbox WHERE event_type = :t AND key = :k"),
                         {"t": f"countypool.{event}.v1", "k": subject}).scalar()


def _recommendation(c, run_id: str, code: str) -> str:
    return c.get(f"/v1/evaluations/{run_id}/enterprises/{code}", headers=ADMIN).json()["recommendation"]["disposition"]


def test_a_decision_on_a_recommendation_the_current_run_no_longer_makes_is_not_carried_out(api, county):
    runtime, c = api
    _setup(c, county)
    closing = _decide(c, county, 6, rectification_deadline="2024-06-30")
    assert (closing.status_code, closing.json()["decided"]) == (201, "close"), closing.text
    moving = _decide(c, county, 7)
    assert moving.json()["decided"] == "relocate"

    # the register is corrected: 6 is not in an ecological control zone after all; the county re-evaluates
    assert _register(c, county, 6, []) == 200
    rerun = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": 2023}).json()["run"]
    assert rerun["run_id"] != closing.json()["run_id"] and rerun["current"]
    assert _recommendation(c, rerun["run_id"], county.code(6)) == "upgrade"
    assert _recommendation(c, rerun["run_id"], county.code(7)) == "relocate"

    stale = _execute(c, county, 6, effective_on="2024-03-01")
    assert (stale.status_code, stale.json().get("reason")) == (409, "decision_outdated"), stale.text
    assert stale.json()["details"]["now_recommended"] == "upgrade"
    assert c.get(f"/v1/enterprises/{county.code(6)}", headers=ADMIN).json()["status"] == "active"
    assert _outbox(runtime, "EnterpriseExited", county.code(6)) == 0, "no quota freed on an outdated decision"

    # the county may still close it, by a decision on the current recommendation (an override, with its reason)
    again = _decide(c, county, 6, decided="close", reason="群众信访, 县政府常务会议决定关闭")
    assert (again.json()["recommended"], again.json()["decided"], again.json()["overridden"]) == ("upgrade", "close", True)
    assert again.json()["run_id"] == rerun["run_id"]
    assert _execute(c, county, 6, effective_on="2024-03-01").status_code == 201
    assert _outbox(runtime, "EnterpriseExited", county.code(6)) == 1

    # 7's recommendation did not change with the new run: its decision stands and is carried out
    assert _execute(c, county, 7, effective_on="2024-03-01", to_park_id="P-GREEN").status_code == 201
    assert _outbox(runtime, "EnterpriseRelocated", county.code(7)) == 1


def test_a_closure_or_relocation_is_recorded_once_it_has_taken_effect(api, county):
    runtime, c = api
    _setup(c, county)
    _decide(c, county, 6)
    _decide(c, county, 7)
    ahead = _execute(c, county, 6, effective_on="2024-03-03")  # today in China is 2 March
    assert (ahead.status_code, ahead.json().get("reason")) == (422, "effective_on_in_future"), ahead.text
    ahead = _execute(c, county, 7, effective_on="2024-03-03", to_park_id="P-GREEN")
    assert (ahead.status_code, ahead.json().get("reason")) == (422, "effective_on_in_future")
    assert _outbox(runtime, "EnterpriseExited", county.code(6)) == _outbox(runtime, "EnterpriseRelocated", county.code(7)) == 0
    assert c.get(f"/v1/dispositions/{county.code(6)}/2023", headers=ADMIN).json()["standing"]["status"] == "decided"
    assert _execute(c, county, 6, effective_on="2024-03-02").status_code == 201  # the county's today
    assert _execute(c, county, 7, effective_on="2024-03-02", to_park_id="P-GREEN").status_code == 201


def test_none_of_an_exited_enterprise_s_tasks_stays_open(api, county):
    _, c = api
    _setup(c, county)
    code = county.code(6)
    decision = _decide(c, county, 6, rectification_deadline="2024-01-31").json()
    upgrade = {"task_id": f"T-{county.code_}-up", "credit_code": code, "disposition": "upgrade", "deadline": "2024-01-15",
               "note": "更换燃煤锅炉"}
    closing = {"task_id": f"T-{county.code_}-close", "credit_code": code, "disposition": "close", "deadline": "2024-02-01"}
    for body in (upgrade, closing):
        assert c.post("/v1/tasks", headers=ADMIN, json=body).status_code == 201
    overdue = c.get("/v1/tasks/overdue", headers=ADMIN, params={"county_code": county.code_}).json()["items"]
    assert len(overdue) == 3

    assert _execute(c, county, 6, effective_on="2024-03-01").status_code == 201
    tasks = {t["id"]: t for t in c.get("/v1/tasks", headers=ADMIN, params={"county_code": county.code_}).json()["items"]}
    assert {t["status"] for t in tasks.values() if t["decision_id"] == decision["id"]} == {"done"}
    assert (tasks[closing["task_id"]]["status"], tasks[closing["task_id"]]["closed_on"]) == ("done", "2024-03-01")
    cancelled = tasks[upgrade["task_id"]]
    assert (cancelled["status"], cancelled["closed_on"]) == ("cancelled", "2024-03-01")
    assert "exited" in cancelled["closing_note"] and "exited" not in cancelled["note"]  # the order stays
    assert c.get("/v1/tasks/overdue", headers=ADMIN, params={"county_code": county.code_}).json()["items"] == []


def test_an_exited_enterprise_takes_no_new_decision_or_task(api, county):
    runtime, c = api
    _setup(c, county, years=(2022, 2023))
    code = county.code(6)
    upgrade = {"task_id": f"T-{county.code_}-up", "credit_code": code, "disposition": "upgrade", "deadline": "2024-01-15",
               "note": "更换燃煤锅炉"}
    closing = {"task_id": f"T-{county.code_}-close", "credit_code": code, "disposition": "close", "deadline": "2024-02-01"}
    assert c.post("/v1/tasks", headers=ADMIN, json=closing).status_code == 201
    assert _decide(c, county, 6).status_code == 201
    assert _execute(c, county, 6, effective_on="2024-03-01").status_code == 201

    late = c.post("/v1/tasks", headers=ADMIN, json=upgrade | {"task_id": f"T-{county.code_}-late"})
    assert (late.status_code, late.json().get("reason")) == (409, "enterprise_not_active"), late.text
    assert c.post("/v1/tasks", headers=ADMIN, json=closing).status_code == 200, "the same request again: as it is"
    other_year = _decide(c, county, 6, year=2022)
    assert (other_year.status_code, other_year.json().get("reason")) == (409, "enterprise_not_active"), other_year.text
    assert c.get(f"/v1/dispositions/{code}/2022", headers=ADMIN).json()["standing"] is None
    assert _outbox(runtime, "DispositionDecided", code) == 1


def test_a_task_is_not_closed_on_a_day_to_come(api, county):
    _, c = api
    _setup(c, county)
    body = {"task_id": f"T-{county.code_}-1", "credit_code": county.code(1), "disposition": "upgrade", "deadline": "2024-06-30"}
    assert c.post("/v1/tasks", headers=ADMIN, json=body).status_code == 201
    for path, note in (("completion", "验收通过"), ("cancellation", "企业申请撤销")):
        ahead = c.post(f"/v1/tasks/{body['task_id']}/{path}", headers=ADMIN, json={"on": "2024-03-03", "note": note})
        assert (ahead.status_code, ahead.json().get("reason")) == (422, "closed_on_in_future"), ahead.text
    assert c.get(f"/v1/tasks/{body['task_id']}", headers=ADMIN).json()["status"] == "open"
    done = c.post(f"/v1/tasks/{body['task_id']}/completion", headers=ADMIN, json={"on": "2024-03-02"}).json()
    assert (done["status"], done["closed_on"]) == ("done", "2024-03-02")


def _waiting_for_a_lock(runtime, within: float = 5) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with runtime.db.sessions() as s:
            if s.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND wait_event_type = 'Lock'")).scalar():
                return True
        time.sleep(0.05)
    return False


def test_an_override_racing_the_execution_of_the_decision_it_overrides(pg_url, kafka_bootstrap, county, monkeypatch):
    """The execution holds its transaction open while an override of the same decision arrives: the override
    must wait and then find the decision carried out, not supersede it after the exit was published."""
    monkeypatch.setattr(routes, "now", lambda: NOW)
    with running_service("assessment", pg_url, kafka_bootstrap, background=False) as (runtime, c):
        _setup(c, county)
        code = county.code(6)
        assert _decide(c, county, 6).json()["decided"] == "close"
        who = Actor("test")
        holding, release = threading.Event(), threading.Event()
        outcome: dict = {}

        def executing(uow):
            row = execute(uow.session, uow.outbox, code, 2023, date(2024, 3, 1), None, "", who, NOW)
            holding.set()
            assert release.wait(20)
            return row

        def overriding(uow):
            return decide(uow.session, uow.outbox, code, 2023, Disposition.RELOCATE, "县政府常务会议", "改为搬迁入园",
                          who, NOW)

        def run(name, fn):
            try:
                outcome[name] = runtime.transaction(fn)
            except Exception as exc:  # noqa: BLE001 - the outcome is asserted below
                outcome[name] = exc

        first = threading.Thread(target=run, args=("execute", executing))
        first.start()
        assert holding.wait(20)
        second = threading.Thread(target=run, args=("decide", overriding))
        second.start()
        _waiting_for_a_lock(runtime)
        release.set()
        first.join(20)
        second.join(20)

        assert not isinstance(outcome["execute"], Exception), outcome["execute"]
        assert isinstance(outcome["decide"], Conflict) and outcome["decide"].reason == "decision_already_executed", \
            outcome["decide"]
        history = c.get(f"/v1/dispositions/{code}/2023", headers=ADMIN).json()
        assert [(d["decided"], d["status"]) for d in history["history"]] == [("close", "executed")]
        assert history["standing"]["status"] == "executed"
        assert _outbox(runtime, "EnterpriseExited", code) == 1
        assert _outbox(runtime, "DispositionDecided", code) == 1


def test_a_re_run_of_the_year_still_counts_an_enterprise_closed_after_it(api, county):
    """A closure decided on 2023's run takes effect in 2024: re-running 2023 (here: over the same figures) must
    evaluate the same enterprises, or every other one's rank and class move though nothing about them changed."""
    runtime, c = api
    _setup(c, county)
    first = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": 2023}).json()
    assert _decide(c, county, 6).json()["decided"] == "close"
    assert _execute(c, county, 6, effective_on="2024-03-01").status_code == 201
    assert c.get(f"/v1/enterprises/{county.code(6)}", headers=ADMIN).json()["status"] == "exited"

    again = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": 2023})
    assert again.status_code in (200, 201), again.text
    assert (again.json()["created"], again.json()["run"]["content_hash"]) == (False, first["run"]["content_hash"])
    assert again.json()["run"]["enterprise_count"] == len(FIGURES)

    # 2024's run is another matter: the enterprise was gone for most of it
    for n, fields in FIGURES.items():
        c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": 2024, "department": "tax",
                                                      "fields": fields})
    run_2024 = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": 2024}).json()["run"]
    assert run_2024["enterprise_count"] == len(FIGURES) - 1
    listed = c.get(f"/v1/evaluations/{run_2024['run_id']}/enterprises", headers=ADMIN, params={"limit": 100}).json()
    assert county.code(6) not in {r["credit_code"] for r in listed["items"]}


def test_the_same_decision_again_is_the_standing_one(api, county):
    """A retried POST /v1/dispositions (a timeout, a double click) supersedes nothing, cancels no task and publishes
    nothing; a decision that differs in anything is a new one."""
    runtime, c = api
    _setup(c, county)
    code = county.code(6)
    first = _decide(c, county, 6, rectification_deadline="2024-06-30")
    assert first.status_code == 201, first.text
    again = _decide(c, county, 6, rectification_deadline="2024-06-30")
    assert (again.status_code, again.json()["id"], again.json()["status"]) == (200, first.json()["id"], "decided")
    assert _outbox(runtime, "DispositionDecided", code) == 1
    with runtime.db.sessions() as s:
        tasks = s.execute(text("SELECT status, deadline FROM rectification_tasks WHERE credit_code = :c"), {"c": code}).all()
    assert [t.status for t in tasks] == ["open"]

    later = _decide(c, county, 6, rectification_deadline="2024-07-31")  # another deadline: another decision
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    history = c.get(f"/v1/dispositions/{code}/2023", headers=ADMIN).json()["history"]
    assert [d["status"] for d in history] == ["superseded", "decided"]
    assert _outbox(runtime, "DispositionDecided", code) == 2


def test_a_re_run_of_the_year_judges_a_relocated_enterprise_where_it_stood(api, county):
    """7 was outside a park in 2023 (relocate); it moves into P-GREEN in 2024. Re-running 2023 must judge it where
    it stood then: the same run, not one where it sits in the park and needs nothing."""
    runtime, c = api
    _setup(c, county)
    first = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": 2023}).json()
    assert _decide(c, county, 7).json()["decided"] == "relocate"
    assert _execute(c, county, 7, effective_on="2024-03-01", to_park_id="P-GREEN").status_code == 201
    assert c.get(f"/v1/enterprises/{county.code(7)}", headers=ADMIN).json()["park_id"] == "P-GREEN"

    again = c.post("/v1/evaluations", headers=ADMIN, json={"county_code": county.code_, "year": 2023}).json()
    assert (again["created"], again["run"]["content_hash"]) == (False, first["run"]["content_hash"])
    assert _recommendation(c, again["run"]["run_id"], county.code(7)) == "relocate"
