"""Review of the assessment policy API (PUT/GET /v1/policies/{county}/{year}), 1 December.

- a policy number the service cannot compute with is refused 422 policy_number_out_of_range (policies.py), but the
  model's own validators (policy.py) do arithmetic on those numbers first: a group's weights are summed in the
  default decimal context (a weight beyond its exponents raised decimal.Overflow: a 500), and bonus/penalty points
  are quantized through a Python integer of as many digits as the exponent says (its cost grows with the square
  of the exponent: '1E+800000' keeps a worker busy for about 10 s before the 422, far larger ones for minutes);
- guard: PUTs of one county-year at the same moment (PostgreSQL takes no lock once version 1 is stored): the same
  body sent at once makes one new version and one AssessmentPolicyChanged, the others answered changed=false; two
  different bodies for the same version make one version, the other a 409 policy_version_conflict.
"""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.support.concurrency import together
from tests.support.services import ADMIN

from .test_evaluation_api import _setup

YEAR = 2023


def _policy(c, county) -> dict:
    return c.get(f"/v1/policies/{county.code_}/{YEAR}", headers=ADMIN).json()["policy"]


def _put(c, county, policy: dict, version: int):
    return c.put(f"/v1/policies/{county.code_}/{YEAR}", headers=ADMIN, json={"policy": policy | {"version": version}})


def _group(policy: dict, name: str) -> dict:
    return next(g for g in policy["groups"] if g["name"] == name)


def _policy_events(runtime, county) -> int:
    with runtime.db.sessions() as s:
        return s.execute(text("SELECT count(*) FROM outbox WHERE event_type = :t AND key = :k"),
                         {"t": "countypool.AssessmentPolicyChanged.v1", "k": f"{county.code_}/{YEAR}"}).scalar()


def _unchanged(c, county) -> None:
    """Nothing was stored: the county-year still has its default, and its runs work under version 1."""
    current = c.get(f"/v1/policies/{county.code_}/{YEAR}", headers=ADMIN).json()
    assert (current["version"], current["stored"]) == (1, False)
    run = c.post("/v1/evaluations", headers=ADMIN, json=county.run)
    assert run.status_code == 201, run.text[:300]
    assert run.json()["run"]["policy_version"] == 1


# -- numbers the validators compute with before the range check ------------------------------------------------

@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # no database involved: the body's validation
@pytest.mark.parametrize("weights", [
    ("1E+5000000", "40"),  # one weight beyond the decimal context's exponents
    ("9E+999999", "9E+999999"),  # each within them, their sum not
], ids=["one-beyond", "sum-beyond"])
def test_a_weight_beyond_the_decimal_context_is_a_422_not_a_500(api, county, weights):
    runtime, c = api
    _setup(c, county)
    policy = _policy(c, county)
    below = _group(policy, "规下")
    below["terms"][0]["weight"], below["terms"][1]["weight"] = weights
    quiet = TestClient(c.app, raise_server_exceptions=False)  # a 500 as a client sees it, not the exception
    r = quiet.put(f"/v1/policies/{county.code_}/{YEAR}", headers=ADMIN, json={"policy": policy | {"version": 2}})
    assert r.status_code == 422, (r.status_code, r.text[:300])
    # the route documents policy_number_out_of_range for a number of 10^16 or more; a refusal of the sum is as good
    assert r.json()["reason"] in ("policy_number_out_of_range", "invalid_request"), r.text[:300]
    _unchanged(c, county)
    assert _policy_events(runtime, county) == 1  # version 1, stored by the run; none for the refused PUT


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bonus_points_of_a_huge_magnitude_are_refused_at_once(api, county, monkeypatch):
    """BonusPenaltyItem._nonzero quantized the points (a Python integer of 800,000 digits made a Decimal) before
    policies._check_numbers refused them: about 10 s of CPU here, growing with the square of the exponent. No timing
    asserted: quantizing a number that large is what must not happen (the module's quantize is watched)."""
    import services.assessment.domain.policy as policy_module

    runtime, c = api
    _setup(c, county)
    real = policy_module.quantize

    def watched(v):
        assert abs(v) < 10**30, f"quantize({str(v)[:20]}...) of a number no policy holds: its arithmetic costs seconds"
        return real(v)

    monkeypatch.setattr(policy_module, "quantize", watched)
    policy = _policy(c, county)
    for points in ("1E+800000", "9" * 800_000):  # not a plain decimal; more digits than any figure has
        policy["bonus_penalty"][0]["points"] = points
        r = TestClient(c.app, raise_server_exceptions=False).put(
            f"/v1/policies/{county.code_}/{YEAR}", headers=ADMIN, json={"policy": policy | {"version": 2}})
        assert r.status_code == 422, r.text[:300]
        assert r.json()["reason"] == "invalid_request", r.text[:300]
    _unchanged(c, county)


# -- guards: PUTs at the same moment ------------------------------------------------------------------------------

def test_puts_of_one_county_year_at_once_make_one_version_each(api, county):
    runtime, c = api
    _setup(c, county)
    assert c.post("/v1/evaluations", headers=ADMIN, json=county.run).status_code == 201  # version 1 is stored
    policy = _policy(c, county)
    for version, cap in ((2, "1.3"), (3, "1.4")):
        _group(policy, "规上")["cap_factor"] = cap
        answers = together([lambda: _put(c, county, policy, version) for _ in range(4)])
        assert all(not isinstance(a, Exception) and a.status_code == 200 for a in answers), answers
        assert sorted(a.json()["changed"] for a in answers) == [False, False, False, True]
        assert {a.json()["policy"]["version"] for a in answers} == {version}
    # two different bodies for the same next version: one is stored, the other told the version moved on
    a, b = (dict(policy), dict(policy))
    a["groups"] = [g | {"cap_factor": "1.5"} if g["name"] == "规上" else g for g in policy["groups"]]
    b["groups"] = [g | {"cap_factor": "1.6"} if g["name"] == "规上" else g for g in policy["groups"]]
    answers = together([lambda: _put(c, county, a, 4), lambda: _put(c, county, b, 4)])
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text[:200] for r in answers]
    refused = next(r for r in answers if r.status_code == 409)
    assert refused.json()["reason"] == "policy_version_conflict"
    versions = c.get(f"/v1/policies/{county.code_}/{YEAR}/versions", headers=ADMIN).json()
    assert [v["version"] for v in versions] == [1, 2, 3, 4]
    assert _policy_events(runtime, county) == 4
