"""Quota coming in over HTTP and the intake topic: who may publish, duplicates, held releases,
reclamation land, paid buy-backs, and who may ask for quota."""
from __future__ import annotations

import json
import threading
from datetime import date

from shared.contracts import topics
from shared.contracts.quota import ApprovalGranted, QuotaReleaseSubmitted, ReclamationAccepted
from tests.integration.quota.harness import ECOLOGY, LAND, SOURCES, credit_code, ensure_assigned, key, new_county
from tests.support.services import ADMIN, auth, wait_for


def _release_event(county: str, release_id: str, asset: str = "COD", amount: str = "1.5", serial: int = 1,
                   township_code: str | None = None):
    return QuotaReleaseSubmitted(
        release_id=release_id, enterprise_credit_code=credit_code(county, serial),
        township_code=township_code or f"{county}100", county_code=county, asset=asset, amount=amount,
        reason="closure", basis="free", document_ref="doc-1", released_on=date(2024, 2, 1))


def test_a_release_without_the_scope_is_403_over_http_and_dead_lettered_on_kafka(plat):
    county = new_county()
    plat.policy(county, verification="accept")
    r = plat.release(county, f"R{county}-tax", "COD", headers=auth("dev-tax-token"))
    assert (r.status_code, r.json()["reason"]) == (403, "insufficient_scope")
    r = plat.release(county, f"R{county}-land", "LAND", headers=ECOLOGY)  # ecology may not release land
    assert r.status_code == 403
    assert plat.release(county, f"R{county}-none", "COD", headers={}).status_code == 401
    assert plat.quota.get(f"/v1/releases/R{county}-tax", headers=ADMIN).status_code == 404

    plat.publish(_release_event(county, f"R{county}-k-tax"), source=SOURCES["tax"], subject=key(county, "tax"))
    plat.publish(_release_event(county, f"R{county}-k-land", "LAND"), source=SOURCES["ecology"],
                 subject=key(county, "land"))
    plat.publish(_release_event(county, f"R{county}-k-anon"), source="/somebody", subject=key(county, "anon"))
    plat.publish(_release_event(county, f"R{county}-k-ok"), source=SOURCES["ecology"], subject=key(county, "ok"))
    dead = plat.dead_letters(key(county, ""), expect=3)
    assert dead == {key(county, "tax"): "source_not_allowed", key(county, "land"): "source_not_allowed",
                    key(county, "anon"): "unknown_source"}
    wait_for(lambda: plat.quota.get(f"/v1/releases/R{county}-k-ok", headers=ADMIN).status_code == 200,
             what="the allowed release went in")
    for bad in ("tax", "land", "anon"):
        assert plat.quota.get(f"/v1/releases/R{county}-k-{bad}", headers=ADMIN).status_code == 404


def test_duplicate_events_and_requests_have_one_effect(plat):
    county = new_county()
    plat.policy(county, verification="accept", retire_share_bp={"COD": 0})
    ev = _release_event(county, f"R{county}", amount="2")
    first = plat.publish(ev, source=SOURCES["ecology"], subject=key(county, "1"))
    # taken before the others are sent: in one poll, messages of different keys (partitions) need not keep
    # the order they were sent in, and the first body taken is the one that stands
    wait_for(lambda: plat.quota.get(f"/v1/releases/R{county}", headers=ADMIN).status_code == 200,
             what="the first release taken")
    plat.publish(ev, source=SOURCES["ecology"], subject=key(county, "1"), event_id=first)  # redelivery
    plat.publish(ev, source=SOURCES["ecology"], subject=key(county, "2"))  # resent by the department: new event id
    changed = _release_event(county, f"R{county}", amount="3")
    plat.publish(changed, source=SOURCES["ecology"], subject=key(county, "changed"))
    assert plat.dead_letters(key(county, "changed"), expect=1) == {key(county, "changed"): "release_id_reused"}
    plat.wait_booked(county, "COD", "2.0000")
    # over HTTP too: the same body is 200 with nothing new, another body under the same id is 409
    body = json.loads(ev.model_dump_json())
    assert plat.quota.post("/v1/releases", headers=ECOLOGY, json=body).status_code == 200
    assert plat.quota.post("/v1/releases", headers=ECOLOGY, json={**body, "amount": "9"}).status_code == 409
    lots = plat.quota.get(f"/v1/counties/{county}/lots", headers=ADMIN).json()["lots"]
    assert [(l["lot_id"], l["amount"]) for l in lots] == [(f"release:R{county}", "2.0000")]

    project = f"P{county}"
    plat.admit(county, project)
    plat.wait_project(project)
    assert plat.request(county, f"Q{county}", project, COD="1").status_code == 201
    assert plat.request(county, f"Q{county}", project, COD="1").status_code == 200
    r = plat.request(county, f"Q{county}", project, COD="1.5")
    assert (r.status_code, r.json()["reason"]) == (409, "request_id_reused")
    plat.round(county)
    plat.wait_state(f"Q{county}", "reserved")
    approval = ApprovalGranted(project_id=project, kind="environmental_impact", granted_on=date(2024, 3, 1))
    eid = plat.publish(approval, source=SOURCES["ecology"], subject=project)
    plat.publish(approval, source=SOURCES["ecology"], subject=project, event_id=eid)
    plat.publish(approval, source=SOURCES["ecology"], subject=project)
    plat.wait_state(f"Q{county}", "allocated")
    wait_for(lambda: plat.quota_rt.consumer.stats.duplicates >= 2, what="redeliveries seen")
    plat.wait_reconciled(county)
    allocated = [e for e in plat.quota_events(f"Q{county}") if e["type"] == "countypool.QuotaAllocated.v1"]
    assert len(allocated) == 1 and plat.ledger_balance(f"project:{project}/COD")["balance"] == "1.0000"


def test_a_held_release_enters_the_pool_once_the_exit_is_known(plat):
    county = new_county()  # default policy: hold releases until the enterprise's exit is known
    code = credit_code(county, 7)
    r = plat.release(county, f"R{county}", "NOX", "4", serial=7)
    assert (r.status_code, r.json()["status"], r.json()["lot_id"]) == (201, "pending_verification", None)
    assert plat.pool(county)["NOX"]["incoming"] == "0.0000"
    up = plat.release(county, f"R{county}-up", "NOX", "1", serial=7, reason="upgrade_savings")
    assert up.json()["status"] == "accepted", "upgrade savings need no exit"
    plat.exited(county, code)
    wait_for(lambda: plat.quota.get(f"/v1/releases/R{county}", headers=ADMIN).json()["status"] == "accepted",
             what="released after EnterpriseExited")
    plat.wait_booked(county, "NOX", "4.0000")  # 5 t in, 20 % retired
    statuses = [e["data"]["status"] for e in plat.quota_events(f"R{county}") if e["subject"] == f"R{county}"]
    assert statuses == ["pending_verification", "accepted"]


def test_reclamation_land_enters_on_acceptance_only(plat):
    county = new_county()
    pid = f"RC{county}"
    body = {"project_id": pid, "county_code": county, "township_code": f"{county}101", "area": "12.5"}
    r = plat.quota.post("/v1/reclamation-projects", headers=LAND, json=body)
    assert r.status_code == 201 and r.json()["state"] == "registered", r.text
    assert plat.quota.post("/v1/reclamation-projects", headers=LAND, json=body).status_code == 200
    assert plat.pool(county)["LAND"]["released"] == "0.0000"
    plat.publish(ReclamationAccepted(project_id=pid, accepted_area="12.0", accepted_on=date(2024, 5, 1)),
                 source=SOURCES["land"], subject=pid)
    plat.publish(ReclamationAccepted(project_id=f"{pid}-unknown", accepted_on=date(2024, 5, 1)),
                 source=SOURCES["land"], subject=key(county, "unknown"))
    plat.wait_booked(county, "LAND", "12.0000")
    assert plat.dead_letters(key(county, "unknown"), 1) == {key(county, "unknown"): "reclamation_project_unknown"}
    again = plat.quota.post(f"/v1/reclamation-projects/{pid}/acceptance", headers=LAND,
                            json={"accepted_on": "2024-05-02"})
    assert again.status_code == 200 and again.json()["accepted_area"] == "12.0000", "accepted once"
    assert plat.pool(county)["LAND"]["available"] == "12.0000"
    project = f"P{county}"
    plat.admit(county, project)
    plat.wait_project(project)
    plat.request(county, f"Q{county}", project, LAND="2.5")
    plat.round(county)
    plat.wait_state(f"Q{county}", "reserved")
    plat.publish(ApprovalGranted(project_id=project, kind="land_use", granted_on=date(2024, 6, 1)),
                 source=SOURCES["land"], subject=project)
    plat.wait_state(f"Q{county}", "allocated")
    prov = plat.quota.get(f"/v1/projects/{project}/provenance", headers=ADMIN).json()
    assert prov["allocations"][0]["lots"][0]["source_kind"] == "reclamation"
    plat.wait_reconciled(county)


def test_a_paid_release_owes_its_buyback(plat):
    county = new_county()
    plat.policy(county, verification="accept")
    r = plat.release(county, f"R{county}", "ENERGY", "12.345", basis="paid", buyback_price_per_unit="800.00")
    assert r.status_code == 201 and r.json()["buyback_price_per_unit"] == "800.00", r.text
    owed = [e["data"] for e in plat.quota_events(f"release:R{county}") if e["type"] == "countypool.BuybackOwed.v1"]
    assert owed == [{"lot_id": f"release:R{county}", "county_code": county, "enterprise_credit_code": credit_code(county, 1),
                     "township_code": f"{county}100", "asset": "ENERGY", "amount": "12.345", "amount_due": "9876.00"}]
    bad = plat.release(county, f"R{county}-bad", "ENERGY", "1.0001")
    assert (bad.status_code, bad.json()["reason"]) == (422, "amount_exceeds_scale")


def test_only_admitted_projects_may_request(plat):
    county = new_county()
    plat.admit(county, f"P{county}-no", admitted=False)
    plat.wait_project(f"P{county}-no", admitted=False)
    r = plat.request(county, f"Q{county}-1", f"P{county}-no", COD="1")
    assert (r.status_code, r.json()["reason"]) == (409, "project_not_admitted")
    r = plat.request(county, f"Q{county}-2", f"P{county}-ghost", COD="1")
    assert (r.status_code, r.json()["reason"]) == (409, "project_unknown")
    plat.admit(county, f"P{county}-ok")
    plat.wait_project(f"P{county}-ok")
    r = plat.request(county, f"Q{county}-3", f"P{county}-ok", COD="1.00001", GOLD="1")
    assert r.status_code == 422 and {d["reason"] for d in r.json()["details"]} == {"amount_exceeds_scale", "unknown_asset"}
    r = plat.quota.post("/v1/requests", headers=ADMIN, json={"request_id": "a/b", "project_id": "p", "county_code": county,
                                                             "lines": [{"asset": "COD", "amount": "1"}]})
    assert r.status_code == 422
    assert plat.quota.post("/v1/requests", headers=auth("dev-finance-token"), json={}).status_code == 403


def test_intake_events_on_the_raw_topic_are_checked_before_anything_else(plat):
    county = new_county()
    plat.publish_raw(topics.INTAKE_QUOTA, key(county, "junk"), b"{not json")
    assert plat.dead_letters(key(county, "junk"), 1) == {key(county, "junk"): "malformed_json"}


def test_a_backlog_taken_in_batches_two_counties_with_duplicates_and_bad_messages_among_them(plat):
    """The quota consumer stopped while departments publish, so the backlog comes in few, large polls (the
    batch path): every release has one effect, the bad ones are dead-lettered alone, both pools agree with the
    ledger, and the lots' chains went to the ledger in fewer commands than lots."""
    a, b = new_county(), new_county()
    plat.policy(a, verification="accept")  # COD: 20 % retired
    plat.policy(b, verification="accept")  # ENERGY: none retired
    consumer = plat.quota_rt.consumer
    consumer.stop()
    try:
        for i in range(20):
            plat.publish(_release_event(a, f"R{a}-{i}", amount=str(i + 1)), source=SOURCES["ecology"],
                         subject=key(a, f"r{i}"))
            if i == 10:  # in the middle: a duplicate, a redelivery, a contradiction, junk and a refusal
                eid = plat.publish(_release_event(a, f"R{a}-3", amount="4"), source=SOURCES["ecology"],
                                   subject=key(a, "r3-again"))
                plat.publish(_release_event(a, f"R{a}-3", amount="4"), source=SOURCES["ecology"],
                             subject=key(a, "r3-again"), event_id=eid)
                # under the same key (one partition), as a release's messages travel: so it comes second
                plat.publish(_release_event(a, f"R{a}-5", amount="99"), source=SOURCES["ecology"],
                             subject=key(a, "r5"))
                plat.publish_raw(topics.INTAKE_QUOTA, key(a, "junk"), b"{not json")
                plat.publish(_release_event(b, f"R{b}-bad", "ENERGY", township_code=f"{a}100"),
                             source=SOURCES["energy"], subject=key(b, "bad-township"))
            if i % 2:
                plat.publish(_release_event(b, f"R{b}-{i}", "ENERGY", "1.5"), source=SOURCES["energy"],
                             subject=key(b, f"r{i}"))
    finally:
        consumer._stop = threading.Event()
        consumer.start()
    ensure_assigned(plat.quota_rt)
    assert plat.dead_letters(key(a, ""), expect=2) == {key(a, "r5"): "release_id_reused",
                                                      key(a, "junk"): "malformed_json"}
    assert plat.dead_letters(key(b, ""), expect=1) == {key(b, "bad-township"): "township_not_in_county"}
    plat.wait_booked(a, "COD", "168.0000")  # 1 + ... + 20 = 210 t in, 42 t retired
    plat.wait_booked(b, "ENERGY", "15.000")
    for county in (a, b):
        plat.wait_reconciled(county)
    assert plat.ledger_balance(f"county:{a}/pool/COD")["balance"] == "168.0000"
    assert plat.ledger_balance(f"county:{b}/pool/ENERGY")["balance"] == "15.000"
    released = [e["subject"] for e in plat.quota_events(f"R{a}-") if e["type"] == "countypool.QuotaReleased.v1"]
    assert sorted(released) == sorted(f"R{a}-{i}" for i in range(20)), "one QuotaReleased per release"
    from services.quota.storage.tables import messaging

    out = messaging["outbox"]
    with plat.quota_rt.db.sessions() as s:
        commands = [json.loads(r.envelope)["data"]["transfers"] for r in s.execute(
            out.select().where(out.c.topic == topics.LEDGER_COMMANDS))]
    ours = [c for c in commands if any(t["metadata"]["county_code"] in (a, b) for t in c)]
    lots = [t["transfer_id"] for c in ours for t in c if t["code"] == "quota_release_intake"]
    assert sorted(lots) == sorted([f"quota/intake/release:R{a}-{i}" for i in range(20)]
                                  + [f"quota/intake/release:R{b}-{i}" for i in range(1, 20, 2)])
    assert len(ours) < len(lots), f"{len(ours)} commands for {len(lots)} lots"
