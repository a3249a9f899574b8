"""Defects a county would suffer from, each held by a test that failed before its fix (SQLite and PostgreSQL):

- a policy whose reservation timeout the ledger cannot take (more than 10 years) was accepted, and every round that
  granted anything afterwards failed with a 500 (the automatic rounds of the county failed forever); a request wait
  too long for a date made every request of the county a 422 ``invalid_value``: both are the policy's fault, refused
  where the policy is set (422 ``policy_invalid``), and a refused policy changes nothing;
- an approval taken just before the reservation's deadline was refused by the ledger when its post arrived after
  the ledger's own expiry of the pending transfer (which counts from the moment the ledger received the
  reservation): the allocation stood on our side (lots consumed, QuotaAllocated published) while the ledger had
  returned the quota to the pool, and reconciliation never agreed again."""
from __future__ import annotations

import time

import pytest

from tests.integration.quota.harness import new_county
from tests.integration.quota.test_quota_application import Pool
from tests.integration.quota.test_quota_saga import _ready_pool
from tests.support.services import ADMIN, running_service, wait_for

COUNTY = "320612"


@pytest.fixture
def service(db_url, kafka_bootstrap):
    with running_service("quota", db_url, kafka_bootstrap, background=False) as (rt, client):
        yield rt, client


def test_a_policy_the_ledger_or_the_calendar_cannot_carry_out_is_refused_where_it_is_set(service):
    rt, client = service
    pool = Pool(rt.db, COUNTY)
    pool.evaluate("P1")
    pool.release("10")
    before = client.get(f"/v1/counties/{COUNTY}/policy", headers=ADMIN).json()
    for doc in ({"reservation_timeout_seconds": 400_000_000}, {"request_wait_seconds": 10**14},
                {"request_wait_seconds": 400_000_000}):
        r = client.put(f"/v1/counties/{COUNTY}/policy", headers=ADMIN, json=doc)
        assert (r.status_code, r.json().get("reason")) == (422, "policy_invalid"), (doc, r.text)
    assert client.get(f"/v1/counties/{COUNTY}/policy", headers=ADMIN).json() == before, "a refused policy changes nothing"

    # the longest the ledger takes is still a policy that works: a request opens and a round grants it
    top = client.put(f"/v1/counties/{COUNTY}/policy", headers=ADMIN,
                     json={"reservation_timeout_seconds": 300_000_000, "request_wait_seconds": 300_000_000})
    assert top.status_code == 200, top.text
    r = client.post("/v1/requests", headers=ADMIN, json=dict(request_id="R1", project_id="P1", county_code=COUNTY,
                                                            lines=[{"asset": "COD", "amount": "1"}]))
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/counties/{COUNTY}/rounds", headers=ADMIN)
    assert r.status_code == 201 and [d["outcome"] for d in r.json()["decisions"]] == ["granted"], r.text
    assert pool.state("R1") == ("reserving", None)


def test_an_approval_just_before_the_deadline_is_posted_though_the_post_reaches_the_ledger_after_it(plat):
    county = new_county()
    _ready_pool(plat, county, "10", retire_share_bp={"COD": 0}, reservation_timeout_seconds=4)
    project, req = f"P{county}", f"Q{county}"
    plat.admit(county, project)
    plat.wait_booked(county, "COD", "10.0000")
    plat.wait_project(project)
    plat.request(county, req, project, COD="3")
    plat.round(county)
    plat.wait_state(req, "reserved")
    with plat.relay_paused():  # the post waits in our outbox (a relay or Kafka lagging) ...
        r = plat.quota.post("/v1/approvals", headers=ADMIN, json=dict(
            project_id=project, kind="environmental_impact", document_ref="通环审〔2024〕1号", granted_on="2024-03-01"))
        assert r.status_code == 200 and r.json()["requests"][0]["state"] == "allocated", r.text
        time.sleep(6)  # ... past our deadline and past the moment the ledger received the reservation + the timeout

    def post_answered():
        (post,) = [t for t in plat.get_request(req)["ledger_transfers"] if t["purpose"] == "post"]
        return post["state"] != "asked" and post

    post = wait_for(post_answered, timeout=30, what="the post answered")
    assert (post["state"], post["ledger_reason"]) == ("posted", None)
    assert plat.ledger_balance(f"project:{project}/COD")["balance"] == "3.0000"
    assert plat.wait_reconciled(county)["differences"] == []


def test_a_reservation_voided_on_the_ledger_by_someone_else_holds_nothing_here_either(plat):
    """An operator voids our pending transfer through the ledger's API (its TransferVoided names their transfer id,
    and ours as the pending one): before, it was "not ours", the request stayed reserved and kept the quota out of
    every round, an approval then allocated it (lots consumed, QuotaAllocated) while the ledger refused the post."""
    county = new_county()
    _ready_pool(plat, county, "10", retire_share_bp={"COD": 0})
    project, req = f"P{county}", f"Q{county}"
    plat.admit(county, project)
    plat.wait_booked(county, "COD", "10.0000")
    plat.wait_project(project)
    plat.request(county, req, project, COD="4")
    plat.round(county)
    plat.wait_state(req, "reserved")
    r = plat.ledger.post("/v1/transfers", headers=ADMIN, json={"transfers": [{
        "transfer_id": f"ops/void/{county}", "asset": "COD", "amount": "0", "code": "ops_cleanup",
        "void_pending_id": f"quota/reserve/{req}/COD"}]})
    assert r.status_code == 200 and r.json()["ok"], r.text

    got = plat.wait_state(req, "cancelled")
    assert got["reason"] == "ledger_voided"
    assert {t["state"] for t in got["ledger_transfers"] if t["purpose"] == "reserve"} == {"voided"}
    assert plat.pool(county)["COD"]["available"] == "10.0000"
    assert plat.wait_reconciled(county)["differences"] == []
    assert [e["type"].split(".")[1] for e in plat.quota_events(req)][-1] == "QuotaReservationCancelled"
