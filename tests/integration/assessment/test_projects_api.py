"""Project admission over HTTP at, just below and just above each threshold (10 亩: 25,000,000 元 of
investment and 1,500,000 元 of yearly tax are exactly the default 2.5 million and 150,000 per 亩)."""
from __future__ import annotations

from tests.support.services import ADMIN

from .conftest import of_type


def base(county) -> dict:
    return {"applicant_credit_code": county.code(1), "county_code": county.code_, "year": 2023, "park_id": "P-A",
            "land": "10", "investment": "25000000.00", "expected_yearly_tax": "1500000.00", "energy_need": "120.5",
            "emission_needs": {"COD": "0.8"}, "industry_code": "C3311"}


CASES = [  # investment, tax, failed rules
    ("25000000.00", "1500000.00", []),
    ("24999999.99", "1500000.00", ["investment_per_mu_below_threshold"]),
    ("25000000.01", "1499999.99", ["tax_per_mu_below_threshold"]),
    ("24999999.99", "1499999.99", ["investment_per_mu_below_threshold", "tax_per_mu_below_threshold"]),
]


def test_thresholds_at_just_below_and_just_above(county, service):
    _, c, _ = service
    for i, (investment, tax, failed) in enumerate(CASES):
        r = c.post("/v1/projects", headers=ADMIN, json=base(county) | {"project_id": f"PRJ-{i}", "investment": investment,
                                                               "expected_yearly_tax": tax})
        assert r.status_code == 201, r.text
        out = r.json()
        assert [f["code"] for f in out["failures"]] == failed, (investment, tax)
        assert out["admitted"] is (not failed)
        if "investment_per_mu_below_threshold" in failed:
            f = out["failures"][0]
            assert (f["figure"], f["threshold"], f["unit"]) == ("2499999.99", "2500000.00", "元/亩")


def test_every_failed_rule_is_listed_stored_and_published(county, service, events_tail):
    _, c, _ = service
    c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": county.code(2), "name": "乙", "township_code": county.township,
                                                    "industry_code": "C2614", "flags": ["environmental_hazard"]})
    body = base(county) | {"project_id": "PRJ-X", "applicant_credit_code": county.code(2), "park_id": None, "two_high": True,
                   "investment": "1000000", "industry_code": "C2614"}
    r = c.post("/v1/projects", headers=ADMIN, json=body)
    assert r.status_code == 201
    out = r.json()
    assert [f["code"] for f in out["failures"]] == [
        "not_in_park_or_cluster", "two_high_project", "applicant_on_safety_or_env_list", "investment_per_mu_below_threshold"]
    assert out["listed_in_register"] is True and out["policy_version"] == 1
    assert out["application"]["land"] == "10.0000" and out["application"]["emission_needs"] == {"COD": "0.8000"}

    assert c.post("/v1/projects", headers=ADMIN, json=body).status_code == 200, "the same request: the stored answer"
    reused = c.post("/v1/projects", headers=ADMIN, json=body | {"land": "11"})
    assert (reused.status_code, reused.json()["reason"]) == (409, "project_id_reused")
    assert c.get("/v1/projects/PRJ-X", headers=ADMIN).json()["failures"] == out["failures"]
    assert c.get("/v1/projects/none", headers=ADMIN).status_code == 404
    bad_land = c.post("/v1/projects", headers=ADMIN, json=base(county) | {"project_id": "PRJ-Y", "land": "0"})
    assert (bad_land.status_code, bad_land.json()["reason"]) == (422, "amount_must_not_be_zero")
    bad_code = c.post("/v1/projects", headers=ADMIN, json=base(county) | {"project_id": "PRJ-Z", "applicant_credit_code": "X" * 18})
    assert (bad_code.status_code, bad_code.json()["reason"]) == (422, "invalid_credit_code")

    events_tail.until(lambda _: of_type(events_tail.events(county), "ProjectEvaluated"))
    [ev] = of_type(events_tail.events(county), "ProjectEvaluated")
    assert (ev["subject"], ev["data"]["admitted"], ev["data"]["land"], ev["data"]["investment_per_mu"]) == (
        "PRJ-X", False, "10.0000", "100000.00")
    assert len(ev["data"]["failures"]) == 4


def test_a_project_without_a_year_takes_the_county_s_year(county, service, monkeypatch):
    """At 00:30 on 1 January in China it is still 31 December in UTC: the project is checked under the new year."""
    from datetime import datetime, timezone

    import services.assessment.api.routes_projects as routes

    _, c, _ = service
    monkeypatch.setattr(routes, "now", lambda: datetime(2023, 12, 31, 16, 30, tzinfo=timezone.utc))
    body = {k: v for k, v in base(county).items() if k != "year"} | {"project_id": "PRJ-new-year"}
    r = c.post("/v1/projects", headers=ADMIN, json=body)
    assert (r.status_code, r.json()["year"]) == (201, 2024), r.text
