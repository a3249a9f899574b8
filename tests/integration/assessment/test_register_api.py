"""The register and the yearly figures over HTTP, on SQLite and PostgreSQL; who may call what."""
from __future__ import annotations

from tests.support.services import ADMIN, auth

from .conftest import of_type

INDUSTRY = auth("dev-industry-token")  # assessment:write
FINANCE = auth("dev-finance-token")  # assessment:read only


def enterprise(county, n: int, **kw) -> dict:
    return {"credit_code": county.code(n), "name": f"企业{n}", "township_code": county.township, "industry_code": "C3311", **kw}


def test_register_entries_are_validated_created_updated_and_published(service, events_tail, county):
    _, c, _ = service
    r = c.post("/v1/enterprises", headers=INDUSTRY, json=enterprise(county, 1, flags=["safety_hazard", "high_tech"]))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["result"] == "created"
    assert body["enterprise"]["county_code"] == county.code_
    assert body["enterprise"]["flags"] == ["high_tech", "safety_hazard"]

    again = c.post("/v1/enterprises", headers=INDUSTRY, json=enterprise(county, 1, flags=["high_tech", "safety_hazard"]))
    assert (again.status_code, again.json()["result"]) == (200, "unchanged")
    moved = c.post("/v1/enterprises", headers=INDUSTRY, json=enterprise(county, 1, in_park=True, park_id="P-1"))
    assert (moved.status_code, moved.json()["result"], moved.json()["enterprise"]["revision"]) == (200, "updated", 2)

    bad = c.post("/v1/enterprises", headers=INDUSTRY, json=enterprise(county, 2) | {"credit_code": county.bad_code(2)})
    assert bad.status_code == 422
    assert bad.json()["reason"] == "invalid_credit_code"
    assert bad.json()["details"]["problem"] == "check_character_mismatch"
    short = c.post("/v1/enterprises", headers=INDUSTRY, json=enterprise(county, 2) | {"credit_code": "9132062300000"})
    assert (short.status_code, short.json()["details"]["problem"]) == (422, "wrong_length")
    wrong_industry = c.post("/v1/enterprises", headers=INDUSTRY, json=enterprise(county, 3, industry_code="ZZ"))
    assert (wrong_industry.status_code, wrong_industry.json()["reason"]) == (422, "invalid_enterprise")

    got = c.get(f"/v1/enterprises/{county.code(1)}", headers=FINANCE)
    assert got.status_code == 200 and got.json()["park_id"] == "P-1"
    assert c.get(f"/v1/enterprises/{county.code(9)}", headers=FINANCE).json()["reason"] == "enterprise_not_found"
    page = c.get("/v1/enterprises", headers=FINANCE, params={"county_code": county.code_}).json()
    assert [e["credit_code"] for e in page["items"]] == [county.code(1)] and page["next_after"] is None

    events_tail.until(lambda _: len(of_type(events_tail.events(county), "EnterpriseRegistered")) >= 2)
    registered = [e for e in of_type(events_tail.events(county), "EnterpriseRegistered") if e["subject"] == county.code(1)]
    assert [e["data"]["in_park"] for e in registered] == [False, True]


def test_department_parts_merge_and_conflicts_are_refused(service, county):
    _, c, _ = service
    assert c.post("/v1/enterprises", headers=ADMIN, json=enterprise(county, 1)).status_code == 201
    tax = {"credit_code": county.code(1), "year": 2023, "department": "tax",
           "fields": {"tax": "1830000.00", "land": "12.5", "electricity": "250000"}}
    r = c.post("/v1/indicators", headers=INDUSTRY, json=tax)
    assert (r.status_code, r.json()["result"]) == (201, "recorded"), r.text
    assert c.post("/v1/indicators", headers=INDUSTRY, json=tax).json()["result"] == "unchanged"

    industry = {"credit_code": county.code(1), "year": 2023, "department": "industry",
                "fields": {"revenue": "50000000", "land": "12.5000", "emissions.COD": "1.2"}}
    r = c.post("/v1/indicators", headers=INDUSTRY, json=industry)
    assert r.status_code == 201
    merged = r.json()
    assert merged["figures"] == {"electricity": "250000", "emissions.COD": "1.2000", "land": "12.5000",
                                 "revenue": "50000000.00", "tax": "1830000.00"}
    assert merged["sources"]["land"] == "tax", "the same figure from a second department keeps the first source"
    assert [p["department"] for p in merged["parts"]] == ["industry", "tax"]

    clash = c.post("/v1/indicators", headers=INDUSTRY, json=industry | {"fields": {"tax": "1.00"}})
    assert (clash.status_code, clash.json()["reason"]) == (409, "conflicting_departments")
    correction = c.post("/v1/indicators", headers=INDUSTRY, json=tax | {"fields": {"tax": "1900000.00"}})
    assert correction.json()["figures"]["tax"] == "1900000.00", "a department corrects its own figure"

    unknown = c.post("/v1/indicators", headers=INDUSTRY, json=tax | {"credit_code": county.code(5)})
    assert (unknown.status_code, unknown.json()["reason"]) == (409, "enterprise_not_registered")
    negative = c.post("/v1/indicators", headers=INDUSTRY, json=tax | {"fields": {"land": "-1"}})
    assert (negative.status_code, negative.json()["reason"]) == (422, "amount_must_not_be_negative")
    unknown_field = c.post("/v1/indicators", headers=INDUSTRY, json=tax | {"fields": {"profit": "1"}})
    assert (unknown_field.status_code, unknown_field.json()["reason"]) == (422, "unknown_field")
    assert c.get(f"/v1/enterprises/{county.code(1)}/indicators/2023", headers=FINANCE).json()["figures"]["tax"] == "1900000.00"


def test_a_known_pollutant_in_other_letters_is_refused_not_left_unweighted(service, county):
    _, c, _ = service
    assert c.post("/v1/enterprises", headers=ADMIN, json=enterprise(county, 1)).status_code == 201
    ecology = {"credit_code": county.code(1), "year": 2023, "department": "ecology",
               "fields": {"emissions.COD": "1.2", "emissions.nox": "0.5"}}
    lower = c.post("/v1/indicators", headers=INDUSTRY, json=ecology)
    assert (lower.status_code, lower.json()["reason"]) == (422, "pollutant_name_case"), lower.text
    [problem] = lower.json()["details"]
    assert (problem["field"], problem["reason"]) == ("emissions.nox", "pollutant_name_case")
    assert "'NOx'" in lower.json()["message"]
    asset_code = c.post("/v1/indicators", headers=INDUSTRY, json=ecology | {"fields": {"emissions.NH3N": "1"}})
    assert (asset_code.status_code, asset_code.json()["reason"]) == (422, "pollutant_name_variant")
    assert c.get(f"/v1/enterprises/{county.code(1)}/indicators/2023", headers=FINANCE).status_code == 404, "nothing recorded"

    spelled = c.post("/v1/indicators", headers=INDUSTRY, json=ecology | {"fields": {"emissions.COD": "1.2", "emissions.NOx": "0.5",
                                                                                     "emissions.TP": "0.1"}})
    assert spelled.status_code == 201, spelled.text
    assert spelled.json()["figures"] == {"emissions.COD": "1.2000", "emissions.NOx": "0.5000", "emissions.TP": "0.1000"}

    policy = c.get(f"/v1/policies/{county.code_}/2023", headers=ADMIN).json()["policy"]
    weights = c.put(f"/v1/policies/{county.code_}/2023", headers=ADMIN,
                    json={"policy": policy | {"version": 2, "emission_weights": {"COD": "1", "nox": "1"}}})
    assert (weights.status_code, weights.json()["reason"]) == (422, "pollutant_name_case"), weights.text
    assert [p["field"] for p in weights.json()["details"]] == ["emission_weights.nox"]


def test_tokens_and_scopes(service, county):
    _, c, _ = service
    assert c.post("/v1/enterprises", json=enterprise(county, 1)).json()["reason"] == "missing_token"
    assert c.post("/v1/enterprises", json=enterprise(county, 1)).status_code == 401
    assert c.get("/v1/policies/320623/2023", headers=auth("nope")).status_code == 401
    denied = c.post("/v1/enterprises", headers=FINANCE, json=enterprise(county, 1))
    assert (denied.status_code, denied.json()["reason"]) == (403, "insufficient_scope")
    assert c.post("/v1/evaluations", headers=auth("dev-tax-token"), json={"county_code": "320623", "year": 2023}).status_code == 403
    assert c.get("/v1/policies/320623/2023", headers=auth("dev-tax-token")).status_code == 403
    assert c.get("/v1/policies/320623/2023", headers=FINANCE).status_code == 200
    assert "/v1/imports" in c.get("/openapi.json").json()["paths"]
