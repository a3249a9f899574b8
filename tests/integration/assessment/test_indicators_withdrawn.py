"""A department takes back figures of its part (POST /v1/indicators/withdrawals), on SQLite and PostgreSQL: a figure it
sent for the wrong enterprise could only be changed to another value, never removed, so the enterprise was scored with
a figure it never had. The merged record falls back on the other departments' figures; the county's settlement of a
disagreement cannot be taken back, only changed; IndicatorsWithdrawn is published and the replay folds it."""
from __future__ import annotations

from services.assessment.replay import rebuild
from tests.support.services import ADMIN, auth

from .test_review_intake import outbox

INDUSTRY = auth("dev-industry-token")  # assessment:write
FINANCE = auth("dev-finance-token")  # assessment:read only
YEAR = 2023


def _setup(c, county, *ns):
    for n in ns:
        r = c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": county.code(n), "name": f"企业{n}",
                                                           "township_code": county.township, "industry_code": "C3311"})
        assert r.status_code == 201, r.text


def _part(c, code, department, **fields):
    return c.post("/v1/indicators", headers=INDUSTRY, json={"credit_code": code, "year": YEAR, "department": department,
                                                             "fields": fields})


def _withdraw(c, code, department, *fields, headers=INDUSTRY):
    return c.post("/v1/indicators/withdrawals", headers=headers, json={
        "credit_code": code, "year": YEAR, "department": department, "fields": list(fields)})


def _merged(c, code) -> dict:
    got = c.get(f"/v1/enterprises/{code}/indicators/{YEAR}", headers=ADMIN)
    return {} if got.status_code == 404 else {f: (v, got.json()["sources"][f]) for f, v in got.json()["figures"].items()}


def test_withdrawn_figures_fall_back_on_the_other_parts_and_the_replay_agrees(api, county):
    runtime, c = api
    _setup(c, county, 1, 2)
    one, two = county.code(1), county.code(2)
    assert _part(c, one, "tax", land="50", tax="1000").status_code == 201
    assert _part(c, one, "land", land="50", electricity="100").status_code == 201
    assert _merged(c, one)["land"] == ("50.0000", "tax")

    # the tax bureau's land figure goes: the land bureau's (the same figure) stands, now sourced to it
    r = _withdraw(c, one, "tax", "land")
    assert (r.status_code, r.json()["result"]) == (200, "withdrawn"), r.text
    assert _merged(c, one) == {"land": ("50.0000", "land"), "tax": ("1000.00", "tax"),
                               "electricity": ("100", "land")}
    assert {p["department"]: p["figures"] for p in r.json()["parts"]} == {
        "tax": {"tax": "1000.00"}, "land": {"land": "50.0000", "electricity": "100"}}
    # a figure no other part holds is gone
    assert _withdraw(c, one, "land", "electricity").status_code == 200
    assert "electricity" not in _merged(c, one)

    # refused, and nothing changes: a figure the part does not hold, an unknown name, an unknown year, no right
    before = _merged(c, one)
    r = _withdraw(c, one, "tax", "land")
    assert (r.status_code, r.json()["reason"]) == (409, "figure_not_given"), r.text
    assert (_withdraw(c, one, "tax", "profit").status_code, _withdraw(c, one, "tax", "profit").json()["reason"]) == (
        422, "unknown_field")
    r = c.post("/v1/indicators/withdrawals", headers=INDUSTRY, json={"credit_code": one, "year": 2019,
                                                                      "department": "tax", "fields": ["tax"]})
    assert (r.status_code, r.json()["reason"]) == (404, "indicators_not_found"), r.text
    assert _withdraw(c, one, "tax", "tax", headers=FINANCE).status_code == 403
    assert _merged(c, one) == before

    # the county settled a disagreement: its figure cannot be withdrawn while the departments still disagree
    assert _part(c, two, "tax", land="10").status_code == 201
    assert _part(c, two, "land", land="12").status_code == 409
    assert _part(c, two, "county", land="12").status_code == 201
    assert _part(c, two, "land", land="12").status_code == 201
    r = _withdraw(c, two, "county", "land")
    assert (r.status_code, r.json()["reason"]) == (409, "conflicting_departments"), r.text
    assert _merged(c, two) == {"land": ("12.0000", "county")}
    assert _part(c, two, "tax", land="12").status_code == 201  # the tax bureau corrects its figure
    assert _withdraw(c, two, "county", "land").status_code == 200
    assert _merged(c, two) == {"land": ("12.0000", "land")}, "sourced to the first remaining department by name"

    # everything withdrawn: the enterprise-year is as if never reported
    r = _withdraw(c, one, "tax", "tax")
    assert r.status_code == 200 and r.json()["figures"] == {"land": "50.0000"}
    assert [p["department"] for p in r.json()["parts"]] == ["land"], "an empty part is deleted"
    assert _withdraw(c, one, "land", "land").json()["figures"] == {}
    assert c.get(f"/v1/enterprises/{one}/indicators/{YEAR}", headers=ADMIN).status_code == 404

    assert [(e["department"], e["fields"]) for e in outbox(runtime, "IndicatorsWithdrawn", one)] == [
        ("tax", ["land"]), ("land", ["electricity"]), ("tax", ["tax"]), ("land", ["land"])]
    assert [(e["department"], e["fields"]) for e in outbox(runtime, "IndicatorsWithdrawn", two)] == [("county", ["land"])]
    report = rebuild(runtime.db)
    assert report.equal, "\n".join(str(d) for d in report.differences)
