"""The quota read API as county finance staff and operators meet it (SQLite and PostgreSQL):

- a county nothing is known of (a mistyped code) is a 404, a malformed one a 422: zeros would read as an empty pool
  and an agreeing reconciliation; a round is not run for it (that made a county of the typo);
- an unknown asset filter is a 422, an unknown project's provenance a 404 (not an empty list);
- rounds are paged (before_seq); a round read back shows what it closed before deciding, as the run did;
- an acceptance naming another area than the one accepted is refused (409), not silently ignored."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.quota.application import intake
from services.quota.domain.problems import QuotaDomainError
from tests.integration.quota.test_quota_application import T0, Pool
from tests.support.services import ADMIN, running_service

COUNTY = "320612"


@pytest.fixture
def service(db_url, kafka_bootstrap):
    with running_service("quota", db_url, kafka_bootstrap, background=False) as (rt, client):
        yield rt, client


COUNTY_READS = ("/v1/counties/{c}/pool", "/v1/counties/{c}/lots", "/v1/counties/{c}/rounds",
                "/v1/counties/{c}/reconciliation")


def test_an_unknown_county_is_not_an_empty_one(service):
    rt, client = service
    Pool(rt.db, COUNTY)  # a policy set: known, nothing in its pool yet
    pool = client.get(f"/v1/counties/{COUNTY}/pool", headers=ADMIN)
    assert pool.status_code == 200 and {a["released"] for a in pool.json()["assets"]} <= {"0.0000", "0.000"}
    for path in COUNTY_READS:
        r = client.get(path.format(c="320621"), headers=ADMIN)  # two digits swapped
        assert (r.status_code, r.json().get("reason")) == (404, "county_unknown"), (path, r.text)
        r = client.get(path.format(c="abc"), headers=ADMIN)
        assert (r.status_code, r.json().get("reason")) == (422, "county_code_malformed"), (path, r.text)
    r = client.post("/v1/counties/320621/rounds", headers=ADMIN)
    assert (r.status_code, r.json().get("reason")) == (404, "county_unknown"), r.text
    assert client.get("/v1/counties/320621/pool", headers=ADMIN).status_code == 404, "the round made no county"


def test_an_unknown_asset_is_an_error_not_nothing(service):
    rt, client = service
    pool = Pool(rt.db, COUNTY)
    pool.evaluate("P1")
    r = client.get(f"/v1/counties/{COUNTY}/lots", params={"asset": "GOLD"}, headers=ADMIN)
    assert (r.status_code, r.json().get("reason")) == (422, "unknown_asset"), r.text
    assert client.get(f"/v1/counties/{COUNTY}/lots", params={"asset": "COD"}, headers=ADMIN).json()["lots"] == []


def test_an_unknown_projects_provenance_is_a_404(service):
    rt, client = service
    pool = Pool(rt.db, COUNTY)
    pool.evaluate("P1")
    r = client.get("/v1/projects/P-NOBODY/provenance", headers=ADMIN)
    assert (r.status_code, r.json().get("reason")) == (404, "project_unknown"), r.text
    known = client.get("/v1/projects/P1/provenance", headers=ADMIN)  # evaluated, nothing allocated yet
    assert known.status_code == 200 and known.json()["allocations"] == []


def _three_rounds(rt):
    pool = Pool(rt.db, COUNTY, request_wait_seconds=60)
    pool.evaluate("P1")
    pool.request("R1", "P1", "1")
    later = T0 + timedelta(seconds=120)
    first = pool.round(now=later)  # R1 waited too long: expired before deciding
    assert first.expired_before == ("R1",)
    pool.round(now=later)
    pool.round(now=later)
    return first


def test_a_round_read_back_shows_what_it_closed_before_deciding(service):
    rt, client = service
    first = _three_rounds(rt)
    one = client.get(f"/v1/rounds/{first.round_id}", headers=ADMIN).json()
    assert (one["expired_before"], one["reproducible"]) == (["R1"], True)
    listed = client.get(f"/v1/counties/{COUNTY}/rounds", headers=ADMIN).json()
    assert [r["expired_before"] for r in listed] == [[], [], ["R1"]]


def test_rounds_are_paged(service):
    rt, client = service
    _three_rounds(rt)
    latest = client.get(f"/v1/counties/{COUNTY}/rounds", params={"limit": 2}, headers=ADMIN).json()
    assert [r["seq"] for r in latest] == [3, 2]
    older = client.get(f"/v1/counties/{COUNTY}/rounds", params={"limit": 2, "before_seq": 2}, headers=ADMIN)
    assert older.status_code == 200, older.text
    assert [r["seq"] for r in older.json()] == [1]


def test_an_acceptance_correcting_the_accepted_area_is_refused(service):
    rt, client = service
    pool = Pool(rt.db, COUNTY)
    pool.run(lambda tx: intake.register_reclamation_project(
        tx, {"project_id": "RC-1", "county_code": COUNTY, "township_code": f"{COUNTY}101", "area": "12.5"}, "test"))
    pool.now = T0 + timedelta(days=100)  # the acceptances below are dated up to June: no date after today is taken
    project, changed = pool.run(lambda tx: intake.accept_reclamation_project(tx, "RC-1", date(2024, 5, 1), "12.0", ""))
    assert changed and project.accepted_area == 120_000

    _, again = pool.run(lambda tx: intake.accept_reclamation_project(tx, "RC-1", date(2024, 5, 2), None, ""))
    assert again is False  # the same acceptance again (no area named): nothing changes, as before
    _, same = pool.run(lambda tx: intake.accept_reclamation_project(tx, "RC-1", date(2024, 5, 1), "12.0000", ""))
    assert same is False
    with pytest.raises(QuotaDomainError) as exc:
        pool.run(lambda tx: intake.accept_reclamation_project(tx, "RC-1", date(2024, 6, 1), "11.5", ""))
    assert [p.reason for p in exc.value.problems] == ["reclamation_already_accepted"]

    r = client.post("/v1/reclamation-projects/RC-1/acceptance", headers={"Authorization": "Bearer dev-natural-resources-token"},
                    json={"accepted_on": "2024-06-01", "accepted_area": "11.5"})
    assert (r.status_code, r.json().get("reason")) == (409, "reclamation_already_accepted"), r.text
    lots = client.get(f"/v1/counties/{COUNTY}/lots", headers=ADMIN).json()["lots"]
    assert [(lot["lot_id"], lot["amount"]) for lot in lots] == [("reclamation:RC-1", "12.0000")]
