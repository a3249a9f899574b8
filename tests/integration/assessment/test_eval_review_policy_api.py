"""Review of the policy API: a policy version that is accepted must be one the service can evaluate and store.
On SQLite and PostgreSQL (whose columns have widths and refuse NUL characters)."""
from __future__ import annotations

import pytest

from tests.support.services import ADMIN

from .test_evaluation_api import _setup


def _policy(c, county) -> dict:
    return c.get(f"/v1/policies/{county.code_}/2023", headers=ADMIN).json()["policy"]


@pytest.mark.parametrize("where, label", [
    ("band", "A" * 21),  # the results' class_label column holds 20 characters
    ("exclusion", "T" * 21),
    ("band", "A\x00"),  # PostgreSQL text holds no NUL
    ("exclusion", "T\x00"),
    ("exclusion", ""),  # a result with no class at all
])
def test_a_class_label_the_results_cannot_hold_is_refused_where_it_is_set(county, service, where, label):
    _, c, _ = service
    _setup(c, county)
    policy = _policy(c, county)
    if where == "band":
        old = policy["class_rule"]["bands"][0]["label"]
        policy["class_rule"]["bands"][0]["label"] = label
        policy["treatments"][label] = policy["treatments"].pop(old)
        policy["disposition"]["upgrade_classes"] = [label, "B"]
        policy["disposition"]["close_with_hazard_classes"] = [label, "B", "C", "D"]
    else:
        policy["exclusions"][0]["label"] = label
    r = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 2}})
    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "class_label_invalid"
    # nothing was stored: the county's runs still work under version 1
    run = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert run.status_code == 201, run.text
    assert run.json()["run"]["policy_version"] == 1


def test_a_label_of_twenty_characters_is_evaluated(county, service):
    _, c, _ = service
    _setup(c, county)
    policy = _policy(c, county)
    policy["exclusions"][0]["label"] = "T" * 20
    r = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 2}})
    assert r.status_code == 200, r.text
    run = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert run.status_code == 201, run.text
    assert run.json()["run"]["class_counts"]["规上"]["T" * 20] == 1


@pytest.mark.parametrize("path, value, reason", [
    # exponents are not plain decimals, refused as every door refuses them (beyond the decimal context, 1E+5000000
    # made the content hash raise Overflow; 1E+999999 put a million digits in every run's arithmetic)
    (("groups", 0, "cap_factor"), "1E+5000000", "invalid_request"),
    (("groups", 0, "terms", 0, "benchmark", "value"), "1E-5000000", "invalid_request"),
    (("emission_weights", "COD"), "1E+999999", "invalid_request"),
    (("emission_weights", "COD"), "1" + "0" * 40, "invalid_request"),  # 41 digits: more than any figure has
    (("treatments", "D", "electricity_surcharge_yuan_per_kwh"), "0.1000000000001", "policy_number_out_of_range"),
])
def test_a_number_the_policy_cannot_compute_with_is_a_422(county, service, path, value, reason):
    _, c, _ = service
    _setup(c, county)
    policy = _policy(c, county)
    node = policy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    r = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 2}})
    assert r.status_code == 422, r.text[:300]
    assert r.json()["reason"] == reason
    assert _policy(c, county)["version"] == 1


def test_the_same_policy_in_another_order_is_not_a_new_version(county, service):
    _, c, _ = service
    _setup(c, county)
    first = c.post("/v1/evaluations", headers=ADMIN, json=county.run).json()["run"]
    policy = _policy(c, county)
    policy["indicators"] = list(reversed(policy["indicators"]))
    policy["groups"] = list(reversed(policy["groups"]))
    policy["disposition"]["upgrade_classes"] = ["B", "A"]
    policy["admission"]["refused_industry_prefixes"] = []
    policy["groups"][0]["cap_factor"] = "1.20"  # and another spelling of the same number
    r = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 2}})
    assert r.status_code == 200, r.text[:300]
    assert (r.json()["changed"], r.json()["policy"]["version"]) == (False, 1)
    assert [v["version"] for v in c.get(f"/v1/policies/{county.code_}/2023/versions", headers=ADMIN).json()] == [1]
    again = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert (again.status_code, again.json()["run"]["run_id"]) == (200, first["run_id"])
    # a real change is still a new version
    policy["groups"][0]["cap_factor"] = "1.3"
    changed = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN, json={"policy": policy | {"version": 2}})
    assert (changed.json()["changed"], changed.json()["policy"]["version"]) == (True, 2)
