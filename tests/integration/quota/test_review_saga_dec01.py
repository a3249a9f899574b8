"""Review (dec01) of the quota <-> ledger reservation saga over real Kafka, with the real ledger service.

What the earlier saga reviews (test_quota_saga.py, test_review_saga.py) do not cover: the ledger's consumer away
while quota keeps granting and expiring, then back; copies of the ledger's answers arriving again (a restored ledger
re-answers with new event ids: README "Backups and recovery" says a second copy changes nothing) and answers
arriving out of the order the ledger said them in; and a post the ledger refused because its hold expired first,
end to end. Tests that move the ledger's clock come last (its clock only ever moves forward)."""
from __future__ import annotations

import json
import threading
import uuid

from sqlalchemy import select

from shared.contracts import topics
from tests.integration.quota.harness import new_county
from tests.integration.quota.test_review_saga import (
    _answered, _approve, _ledger_clock_forward, _ours, _ready, _settled, _transfer, _types,
)
from tests.support.services import ADMIN, wait_for


# -- helpers (test_review_saga.py's, and these) -------------------------------------------------------------------
def _ledger_said(plat, event_name: str, transfer_id: str) -> tuple[str, dict]:
    """(Kafka key, envelope) of the ledger's outcome event ``event_name`` about ``transfer_id`` (its outbox)."""
    out = plat.ledger_rt.tables["outbox"]

    def find():
        with plat.ledger_rt.db.sessions() as s:
            rows = s.execute(select(out).where(out.c.topic == topics.LEDGER_EVENTS).order_by(out.c.position)).all()
        for r in rows:
            env = json.loads(r.envelope)
            if env["type"].split(".")[1] == event_name and env["data"]["transfer_id"] == transfer_id:
                return r.key, env
        return None

    return wait_for(find, timeout=15, what=f"the ledger's {event_name} of {transfer_id}")


def _said_again(plat, event_name: str, transfer_id: str) -> str:
    """The ledger's answer published once more under a new event id, as a ledger restored from a backup re-answers
    (README, Backups and recovery: 'what it emits in answer to a re-read event carries new event ids')."""
    key, env = _ledger_said(plat, event_name, transfer_id)
    env["id"] = str(uuid.uuid4())
    plat.publish_raw(topics.LEDGER_EVENTS, key, json.dumps(env).encode())
    return env["id"]


def _taken_in(plat, event_id: str) -> None:
    inbox = plat.quota_rt.tables["inbox"]

    def seen():
        with plat.quota_rt.db.sessions() as s:
            return s.execute(select(inbox).where(inbox.c.event_id == event_id)).first() is not None
    wait_for(seen, timeout=20, what=f"quota took event {event_id} in")


def _restart_ledger_consumer(plat) -> None:
    from tests.integration.quota.harness import ensure_assigned

    c = plat.ledger_rt.consumer
    c._stop = threading.Event()
    c.start()
    ensure_assigned(plat.ledger_rt)


# -- the ledger away while quota keeps going ----------------------------------------------------------------------
def test_ledger_consumer_down_while_quota_grants_expires_and_regrants_then_back(plat):
    county = new_county()
    projects = [f"P{county}-{i}" for i in range(3)]
    reqs = [f"Q{county}-{i}" for i in range(3)]
    _ready(plat, county, projects, {"COD": "10"}, reservation_timeout_seconds=3)
    plat.ledger_rt.consumer.stop()
    try:
        plat.request(county, reqs[0], projects[0], COD="6")
        plat.round(county)
        assert plat.get_request(reqs[0])["state"] == "reserving"
        plat.wait_state(reqs[0], "expired", timeout=15)
        # its units are ours again: granted to the next two while the ledger has not even made the first hold
        plat.policy(county, verification="accept", retire_share_bp={"COD": 0}, reservation_timeout_seconds=3600)
        plat.request(county, reqs[1], projects[1], COD="6")
        plat.request(county, reqs[2], projects[2], COD="4")
        ds = plat.round(county)["decisions"]
        assert sorted(d["outcome"] for d in ds) == ["granted", "granted"], ds
        _approve(plat, projects[1])  # before the ledger answered anything
        assert plat.get_request(reqs[1])["state"] == "reserving"
    finally:
        _restart_ledger_consumer(plat)
    plat.wait_state(reqs[1], "allocated")
    plat.wait_state(reqs[2], "reserved")
    for q in reqs:
        _answered(plat, q)
    assert _transfer(plat, f"quota/reserve/{reqs[0]}/COD")["status"] == "voided"
    pool = plat.pool(county)["COD"]
    assert (pool["allocated"], pool["reserved"], pool["available"]) == ("6.0000", "4.0000", "0.0000"), pool
    _settled(plat, county, reqs)


def test_both_approvals_of_a_two_line_request_before_any_pending_answer_allocate_it_once(plat):
    """Lines COD (环评) and ENERGY (能评) reserved as one linked chain whose TransferPending answers travel on different
    partitions; both approvals arrive while the ledger's consumer is away. Once back: one allocation, one post chain,
    both lines posted, nothing pending, books agree."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10", "ENERGY": "10"})
    plat.ledger_rt.consumer.stop()
    try:
        plat.request(county, req, project, COD="3", ENERGY="2")
        plat.round(county)
        _approve(plat, project, "environmental_impact")
        _approve(plat, project, "energy_review")
        got = plat.get_request(req)
        assert (got["state"], sorted(got["approvals"])) == ("reserving", ["energy_review", "environmental_impact"])
    finally:
        _restart_ledger_consumer(plat)
    plat.wait_state(req, "allocated")
    ts = _answered(plat, req)
    assert {t: v["state"] for t, v in ts.items()} == {
        f"quota/reserve/{req}/COD": "posted", f"quota/reserve/{req}/ENERGY": "posted",
        f"quota/post/{req}/COD": "posted", f"quota/post/{req}/ENERGY": "posted"}, ts
    assert plat.ledger_balance(f"project:{project}/COD")["balance"] == "3.0000"
    assert plat.ledger_balance(f"project:{project}/ENERGY")["balance"] == "2.000"
    _settled(plat, county, [req], assets=("COD", "ENERGY"))
    assert _types(plat, req) == ["QuotaRequested", "QuotaReserved", "QuotaAllocated", "QuotaAllocated"]


# -- copies and reorderings of the ledger's answers ---------------------------------------------------------------
def test_a_copy_of_the_pending_answer_after_the_void_leaves_the_reservation_voided(plat):
    """DEFECT: the ledger voided the hold (quota's cancel) and quota recorded it so; a second copy of the ledger's
    TransferPending (new event id, as a restored ledger re-answers) sets quota's record of the hold back to 'pending'
    (ledger_answers.py: set_answer before any check) and asks the ledger for a void-late it refuses."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10"})
    plat.request(county, req, project, COD="6")
    plat.round(county)
    plat.wait_state(req, "reserved")
    r = plat.quota.post(f"/v1/requests/{req}/cancel", headers=ADMIN, json={"reason": "withdrawn"})
    assert r.status_code == 200, r.text
    ts = _answered(plat, req)
    assert ts[f"quota/reserve/{req}/COD"]["state"] == "voided", ts
    _settled(plat, county, [req])
    eid = _said_again(plat, "TransferPending", f"quota/reserve/{req}/COD")
    _taken_in(plat, eid)
    ts = _answered(plat, req)
    assert ts[f"quota/reserve/{req}/COD"]["state"] == "voided", ts  # the ledger voided it; a copy changes nothing
    assert plat.get_request(req)["state"] == "cancelled"
    _settled(plat, county, [req])


def test_a_copy_of_the_pending_answer_after_the_post_leaves_the_reservation_posted(plat):
    """DEFECT: as above for a posted hold: quota's record says the allocated request's hold is pending again while
    the ledger has it posted_pending."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10"})
    plat.request(county, req, project, COD="6")
    plat.round(county)
    plat.wait_state(req, "reserved")
    _approve(plat, project)
    plat.wait_state(req, "allocated")
    ts = _answered(plat, req)
    assert ts[f"quota/reserve/{req}/COD"]["state"] == "posted", ts
    eid = _said_again(plat, "TransferPending", f"quota/reserve/{req}/COD")
    _taken_in(plat, eid)
    ts = _answered(plat, req)
    assert ts[f"quota/reserve/{req}/COD"]["state"] == "posted", ts
    assert _types(plat, req) == ["QuotaRequested", "QuotaReserved", "QuotaAllocated"]
    _settled(plat, county, [req])


# -- a confirmation racing the ledger's expiry (moves the ledger's clock: keep last) -------------------------------
def test_an_allocation_whose_post_reaches_the_ledger_after_its_hold_expired_is_reposted_end_to_end(plat):
    """The approval allocates while the post waits in our outbox; meanwhile the ledger (its clock 2 days on) expires
    the hold and says so. The post is then refused pending_transfer_expired; quota keeps the allocation and makes the
    ledger agree (repost-void fails harmlessly, repost posts pool -> project once). A copy of the TransferExpired
    afterwards changes nothing. Both books agree, nothing pending."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10"}, reservation_timeout_seconds=3600)
    plat.request(county, req, project, COD="4")
    plat.round(county)
    plat.wait_state(req, "reserved")
    with plat.relay_paused():
        assert _approve(plat, project)["requests"][0]["state"] == "allocated"
        _ledger_clock_forward(plat, 2 * 86_400)
        wait_for(lambda: _ours(plat, req)[f"quota/reserve/{req}/COD"]["state"] == "expired", timeout=20,
                 what="the ledger's expiry taken in")
        assert plat.get_request(req)["state"] == "allocated"
    ts = wait_for(lambda: (t := _answered(plat, req)) and f"quota/repost/{req}/COD" in t and
                  t[f"quota/repost/{req}/COD"]["state"] != "asked" and t, timeout=30, what="repost answered")
    assert (ts[f"quota/post/{req}/COD"]["state"], ts[f"quota/post/{req}/COD"]["ledger_reason"]) == \
        ("rejected", "pending_transfer_expired"), ts
    assert ts[f"quota/repost/{req}/COD"]["state"] == "posted", ts
    assert plat.ledger_balance(f"project:{project}/COD")["balance"] == "4.0000"
    _settled(plat, county, [req])
    eid = _said_again(plat, "TransferExpired", f"quota/reserve/{req}/COD")
    _taken_in(plat, eid)
    assert plat.get_request(req)["state"] == "allocated"
    assert set(_answered(plat, req)) == set(ts), "a copy of the expiry asked the ledger for something"
    assert plat.ledger_balance(f"project:{project}/COD")["balance"] == "4.0000"
    _settled(plat, county, [req])
    assert _types(plat, req) == ["QuotaRequested", "QuotaReserved", "QuotaAllocated"]
