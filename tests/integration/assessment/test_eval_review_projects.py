"""Review of project admission: the same request sent twice at once gets the same answer, not a 409."""
from __future__ import annotations

import pytest

import services.assessment.api.routes_projects as routes
import services.assessment.projects as projects
from tests.support.services import ADMIN

from .test_projects_api import base


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite serializes writers: no race there
def test_the_same_request_racing_itself_gets_the_stored_answer(county, service, db_url, monkeypatch):
    """A client retries while its first request is still in flight: both pass the 'is this id known' check, one
    inserts first, the other loses the unique-key race. It used to answer 409 project_id_reused ("evaluated with
    another request; use a new id") for what is the very same request. On SQLite writers are serialized (BEGIN
    IMMEDIATE), so the race exists on PostgreSQL only."""
    runtime, c, _ = service
    real_admit, real_listed = projects.admit, projects._listed_in_register
    seen: dict = {}

    def admit(s, outbox, application, county_code, year, actor, now, year_given=True):
        seen.setdefault("args", (application, county_code, year, actor, now))
        return real_admit(s, outbox, application, county_code, year, actor, now, year_given)

    def listed(s, credit_code):
        if not seen.get("raced"):  # between the first request's lookup and its insert, the retry commits
            seen["raced"] = True
            application, county_code, year, actor, now = seen["args"]
            runtime.transaction(lambda uow: real_admit(uow.session, uow.outbox, application, county_code, year, actor, now))
        return real_listed(s, credit_code)

    monkeypatch.setattr(routes, "admit", admit)
    monkeypatch.setattr(projects, "_listed_in_register", listed)
    body = base(county) | {"project_id": f"PRJ-race-{county.code_}"}
    r = c.post("/v1/projects", headers=ADMIN, json=body)
    assert seen.get("raced")
    assert r.status_code == 200, r.text
    assert r.json()["admitted"] is True and r.json()["failures"] == []
    # a different request under that id is still refused
    other = c.post("/v1/projects", headers=ADMIN, json=body | {"land": "11"})
    assert (other.status_code, other.json()["reason"]) == (409, "project_id_reused")
