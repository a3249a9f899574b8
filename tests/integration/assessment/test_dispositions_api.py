"""Decisions on recommendations, carrying them out (EnterpriseExited / EnterpriseRelocated on Kafka), and
rectification tasks, on SQLite and PostgreSQL.

规上 group of three (ranks by score): 1 scores 77 (A, outside a park: upgrade); 6 scores 73 (B, but in an
ecological control zone: close); 7 scores 64.5 (C, outside a park: relocate).
"""
from __future__ import annotations

from datetime import datetime, timezone

from tests.support.services import ADMIN

from .conftest import of_type
from .test_evaluation_api import BIG

FIGURES = {1: BIG, 6: BIG | {"tax": "4500000"},
           7: BIG | {"tax": "3000000", "emissions.COD": "40", "emissions.NH3-N": "0", "emissions.SO2": "0", "emissions.NOx": "0"}}


def _setup(c, county):
    for n, fields in FIGURES.items():
        flags = ["ecological_control_zone"] if n == 6 else []
        body = {"credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township, "industry_code": "C3311", "flags": flags}
        assert c.post("/v1/enterprises", headers=ADMIN, json=body).status_code == 201
        assert c.post("/v1/indicators", headers=ADMIN, json={"credit_code": county.code(n), "year": 2023, "department": "tax",
                                                             "fields": fields}).status_code == 201


def decide(c, county, n, **kw):
    return c.post("/v1/dispositions", headers=ADMIN, json={"credit_code": county.code(n), "year": 2023, "decided_by": "县政府常务会议", **kw})


def test_decide_execute_and_free_quotas_downstream(county, service, events_tail):
    _, c, _ = service
    _setup(c, county)
    assert decide(c, county, 1).json()["reason"] == "not_assessed"
    assert c.post("/v1/evaluations", headers=ADMIN, json=county.run).status_code == 201

    closing = decide(c, county, 6, rectification_deadline="2024-01-31")
    assert closing.status_code == 201, closing.text
    assert (closing.json()["recommended"], closing.json()["decided"], closing.json()["overridden"]) == ("close", "close", False)
    no_reason = decide(c, county, 1, decided="close")
    assert (no_reason.status_code, no_reason.json()["reason"]) == (422, "invalid_decision")
    overridden = decide(c, county, 1, decided="close", reason="环保督察整改未完成").json()
    assert (overridden["recommended"], overridden["decided"], overridden["overridden"]) == ("upgrade", "close", True)
    moving = decide(c, county, 7, rectification_deadline="2024-06-30").json()
    assert moving["decided"] == "relocate"

    overdue = c.get("/v1/tasks/overdue", headers=ADMIN, params={"county_code": county.code_, "as_of": "2024-02-01"}).json()
    assert [(t["credit_code"], t["disposition"], t["overdue"]) for t in overdue["items"]] == [(county.code(6), "close", True)]
    on_deadline = c.get("/v1/tasks/overdue", headers=ADMIN, params={"as_of": "2024-01-31", "county_code": county.code_}).json()["items"]
    assert on_deadline == [], "the deadline day itself is still on time"

    exited = c.post(f"/v1/dispositions/{county.code(6)}/2023/execution", headers=ADMIN, json={"effective_on": "2024-03-01"})
    assert exited.status_code == 201 and exited.json()["status"] == "executed"
    again = c.post(f"/v1/dispositions/{county.code(6)}/2023/execution", headers=ADMIN, json={"effective_on": "2024-03-01"})
    assert again.status_code == 200
    other = c.post(f"/v1/dispositions/{county.code(6)}/2023/execution", headers=ADMIN, json={"effective_on": "2024-03-02"})
    assert (other.status_code, other.json()["reason"]) == (409, "decision_already_executed")
    assert decide(c, county, 6).json()["reason"] == "decision_already_executed"
    assert c.get(f"/v1/enterprises/{county.code(6)}", headers=ADMIN).json()["status"] == "exited"
    assert c.get("/v1/tasks", headers=ADMIN, params={"status": "done", "county_code": county.code_}).json()["items"][0]["credit_code"] == county.code(6)

    no_park = c.post(f"/v1/dispositions/{county.code(7)}/2023/execution", headers=ADMIN, json={"effective_on": "2024-05-01"})
    assert (no_park.status_code, no_park.json()["reason"]) == (422, "to_park_id_required")
    moved = c.post(f"/v1/dispositions/{county.code(7)}/2023/execution", headers=ADMIN,
                   json={"effective_on": "2024-05-01", "to_park_id": "P-GREEN"})
    assert moved.status_code == 201
    entry = c.get(f"/v1/enterprises/{county.code(7)}", headers=ADMIN).json()
    assert (entry["in_park"], entry["park_id"], entry["status"]) == (True, "P-GREEN", "active")

    history = c.get(f"/v1/dispositions/{county.code(1)}/2023", headers=ADMIN).json()
    assert history["standing"]["decided"] == "close" and len(history["history"]) == 1

    # one enterprise's events keep their order (same key); across enterprises (partitions) Kafka promises none:
    # wait for every enterprise's last event, not just one of them
    events_tail.until(lambda _: of_type(events_tail.events(county), "EnterpriseRelocated")
                      and of_type(events_tail.events(county), "EnterpriseExited")
                      and len(of_type(events_tail.events(county), "DispositionDecided")) >= 3)
    ev = events_tail.events(county)
    assert sorted((e["subject"], e["data"]["decided"], e["data"]["decided_by"]) for e in of_type(ev, "DispositionDecided")) == sorted([
        (county.code(6), "close", "县政府常务会议"), (county.code(1), "close", "县政府常务会议"), (county.code(7), "relocate", "县政府常务会议")])
    [out] = of_type(ev, "EnterpriseExited")
    assert (out["subject"], out["data"]["township_code"], out["data"]["effective_on"]) == (county.code(6), county.township, "2024-03-01")
    [rel] = of_type(ev, "EnterpriseRelocated")
    assert (rel["data"]["from_township_code"], rel["data"]["to_park_id"]) == (county.township, "P-GREEN")


def test_rectification_tasks(county, service):
    _, c, _ = service
    _setup(c, county)
    body = {"task_id": "T-2024-001", "credit_code": county.code(1), "disposition": "upgrade", "deadline": "2023-12-31",
            "note": "更换燃煤锅炉"}
    r = c.post("/v1/tasks", headers=ADMIN, json=body)
    assert (r.status_code, r.json()["status"], r.json()["county_code"]) == (201, "open", county.code_)
    assert c.post("/v1/tasks", headers=ADMIN, json=body).status_code == 200
    reused = c.post("/v1/tasks", headers=ADMIN, json=body | {"deadline": "2024-12-31"})
    assert (reused.status_code, reused.json()["reason"]) == (409, "task_id_reused")
    assert c.post("/v1/tasks/T-2024-001/cancellation", headers=ADMIN, json={"on": "2024-01-02"}).json()["reason"] == "reason_required"
    done = c.post("/v1/tasks/T-2024-001/completion", headers=ADMIN, json={"on": "2024-01-05", "note": "验收通过"}).json()
    assert (done["status"], done["closed_on"], done["overdue"]) == ("done", "2024-01-05", False)
    twice = c.post("/v1/tasks/T-2024-001/completion", headers=ADMIN, json={"on": "2024-01-06"})
    assert (twice.status_code, twice.json()["reason"]) == (409, "task_not_open")
    assert c.get("/v1/tasks/T-404", headers=ADMIN).json()["reason"] == "task_not_found"


def test_overdue_is_judged_by_the_county_s_day(county, service, monkeypatch):
    """At 01:00 in China on 1 February it is still 31 January in UTC: a task due on 31 January is overdue."""
    import services.assessment.api.routes_dispositions as routes

    _, c, _ = service
    _setup(c, county)
    body = {"task_id": f"T-{county.code_}-cst", "credit_code": county.code(1), "disposition": "upgrade",
            "deadline": "2024-01-31"}
    assert c.post("/v1/tasks", headers=ADMIN, json=body).status_code == 201
    monkeypatch.setattr(routes, "now", lambda: datetime(2024, 1, 31, 17, 0, tzinfo=timezone.utc))
    overdue = c.get("/v1/tasks/overdue", headers=ADMIN, params={"county_code": county.code_}).json()["items"]
    assert [(t["id"], t["overdue"]) for t in overdue] == [(body["task_id"], True)]
    monkeypatch.setattr(routes, "now", lambda: datetime(2024, 1, 31, 15, 59, tzinfo=timezone.utc))  # 23:59 in China
    assert c.get("/v1/tasks/overdue", headers=ADMIN, params={"county_code": county.code_}).json()["items"] == []
