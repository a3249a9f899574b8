"""A project's answer says whether its applicant's class may have construction land (the treatment table: no new
construction land for C, no industrial land for D), and ProjectEvaluated carries it to the quota pool, which
refuses a land line on it (tests/integration/quota/test_quota_land_by_class.py). On SQLite and PostgreSQL."""
from __future__ import annotations

from tests.support.services import ADMIN

from .conftest import of_type
from .test_dispositions_api import _setup
from .test_eval_review_policy_api import _policy
from .test_projects_api import base


def test_the_answer_and_the_event_say_whether_the_class_may_have_land(county, service, events_tail):
    """Enterprise 1 is class A, 7 class C (test_dispositions_api); 9 is not in the register (a new investor)."""
    _, c, _ = service
    _setup(c, county)
    assert c.post("/v1/evaluations", headers=ADMIN, json=county.run).status_code == 201
    answers = {}
    for n in (1, 7, 9):
        r = c.post("/v1/projects", headers=ADMIN, json=base(county) | {"project_id": f"PRJ-land-{n}",
                                                                    "applicant_credit_code": county.code(n)})
        assert r.status_code == 201, r.text
        answers[n] = (r.json()["project_class"], r.json()["admitted"], r.json()["land_quota_allowed"])
    assert answers == {1: ("A", True, True), 7: ("C", True, False), 9: (None, True, True)}
    assert c.get("/v1/projects/PRJ-land-7", headers=ADMIN).json()["land_quota_allowed"] is False

    events_tail.until(lambda _: len(of_type(events_tail.events(county), "ProjectEvaluated")) == 3)
    published = {e["subject"]: (e["data"]["project_class"], e["data"]["land_quota_allowed"])
                 for e in of_type(events_tail.events(county), "ProjectEvaluated")}
    assert published == {"PRJ-land-1": ("A", True), "PRJ-land-7": ("C", False), "PRJ-land-9": (None, True)}


def test_a_county_whose_table_allows_land_to_class_c_says_so(county, service):
    """The table is the county's: one that lets class C have new construction land admits its projects to land."""
    _, c, _ = service
    _setup(c, county)
    policy = _policy(c, county)
    policy["treatments"]["C"]["new_construction_land_allowed"] = True
    put = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 2}})
    assert put.status_code == 200, put.text
    assert c.post("/v1/evaluations", headers=ADMIN, json=county.run).status_code == 201
    r = c.post("/v1/projects", headers=ADMIN, json=base(county) | {"project_id": "PRJ-land-c",
                                                                "applicant_credit_code": county.code(7)})
    assert (r.json()["project_class"], r.json()["land_quota_allowed"]) == ("C", True), r.text
