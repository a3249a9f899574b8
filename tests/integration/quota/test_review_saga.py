"""Review of the quota <-> ledger saga over Kafka with the real ledger service (SQLite and PostgreSQL), tests first.

Every scenario ends with the same check (``_settled``): reconciliation agrees with nothing in flight, the ledger's
pending transfers on the county's pool accounts are exactly the reservations of quota's open (holding) requests, and
the request's events are those of what happened. Tests that move the ledger's clock come last in the module (its
clock only ever moves forward)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

from tests.integration.quota.harness import new_county
from tests.support.services import ADMIN, wait_for

HOLDING = ("reserving", "reserved")


# -- helpers ----------------------------------------------------------------------------------------------------
def _ready(plat, county: str, projects: list[str], releases: dict[str, str], **policy) -> None:
    policy.setdefault("retire_share_bp", {a: 0 for a in releases})
    plat.policy(county, verification="accept", **policy)
    for serial, (asset, amount) in enumerate(sorted(releases.items()), start=1):
        r = plat.release(county, f"R{county}-{asset}", asset, amount, serial=serial)
        assert r.status_code == 201, r.text
    for p in projects:
        plat.admit(county, p)
    wait_for(lambda: all(v["incoming"].strip("0.") == "" for v in plat.pool(county).values()), what="lots booked")
    for p in projects:
        plat.wait_project(p)


def _approve(plat, project: str, kind: str = "environmental_impact") -> dict:
    r = plat.quota.post("/v1/approvals", headers=ADMIN, json=dict(
        project_id=project, kind=kind, document_ref="通环审〔2024〕9号", granted_on="2024-03-01"))
    assert r.status_code == 200, r.text
    return r.json()


def _types(plat, request_id: str) -> list[str]:
    return [e["type"].split(".")[1] for e in plat.quota_events(request_id)]


def _transfer(plat, transfer_id: str) -> dict:
    return plat.ledger.get(f"/v1/transfers/{transfer_id}", headers=ADMIN).json()


def _ours(plat, request_id: str) -> dict[str, dict]:
    return {t["transfer_id"]: t for t in plat.get_request(request_id)["ledger_transfers"]}


def _answered(plat, request_id: str, timeout: float = 30) -> dict[str, dict]:
    """Every transfer quota asked for the request has the ledger's answer."""
    return wait_for(lambda: (ts := _ours(plat, request_id)) and all(t["state"] != "asked" for t in ts.values()) and ts,
                    timeout=timeout, what=f"every transfer of {request_id} answered")


def _settled(plat, county: str, requests: list[str], assets=("COD",)) -> dict:
    """After everything settled: the books agree, and every pending transfer of the county's pool on the ledger is
    the reservation of a request quota holds open (none stuck for a closed request, none missing for an open one)."""
    rec = plat.wait_reconciled(county)
    assert rec["settled"] and rec["differences"] == [], rec
    states = {r: plat.get_request(r)["state"] for r in requests}
    for asset in assets:
        pending = plat.ledger.get(f"/v1/accounts/county:{county}/pool/{asset}/pending", headers=ADMIN).json()
        held = {f"quota/reserve/{r}/{asset}" for r, s in states.items() if s in HOLDING}
        assert {t["transfer_id"] for t in pending} == held, (asset, states, pending)
    return rec


def _ledger_clock_forward(plat, seconds: float) -> None:
    """Moves the ledger's clock (its expiry job and every transfer it takes) forward; never back."""
    app = plat.ledger.app.state.ledger
    base = app.clock
    app.clock = lambda: base() + timedelta(seconds=seconds)


# -- cancellation at each state -----------------------------------------------------------------------------------
def test_cancelled_before_the_ledger_answered_holds_nothing_on_either_side(plat):
    """Reserve and void reach the ledger together; the reservation's late confirmation is voided (void-late) and
    nothing is left pending; no QuotaReserved was published for a request cancelled while reserving."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10"})
    plat.request(county, req, project, COD="6")
    with plat.relay_paused():
        plat.round(county)
        assert plat.get_request(req)["state"] == "reserving"
        r = plat.quota.post(f"/v1/requests/{req}/cancel", headers=ADMIN, json={"reason": "withdrawn"})
        assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    ts = _answered(plat, req)
    assert ts[f"quota/reserve/{req}/COD"]["state"] == "voided", ts
    assert ts[f"quota/void/{req}/COD"]["state"] == "voided", ts
    assert _transfer(plat, f"quota/reserve/{req}/COD")["status"] == "voided"
    assert plat.pool(county)["COD"]["available"] == "10.0000"
    assert _approve(plat, project)["requests"] == []  # nothing open to confirm
    _settled(plat, county, [req])
    assert _types(plat, req) == ["QuotaRequested", "QuotaReservationCancelled"]


def test_a_cancel_after_allocation_is_refused_and_moves_neither_book(plat):
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10"})
    plat.request(county, req, project, COD="3")
    plat.round(county)
    plat.wait_state(req, "reserved")
    assert _approve(plat, project)["requests"][0]["state"] == "allocated"
    r = plat.quota.post(f"/v1/requests/{req}/cancel", headers=ADMIN)
    assert (r.status_code, r.json()["reason"]) == (409, "request_closed"), r.text
    _approve(plat, project)  # the same approval again: nothing allocated twice
    _answered(plat, req)
    assert [t for t in _ours(plat, req) if "void" in t] == [], "no void for an allocated request"
    assert plat.ledger_balance(f"project:{project}/COD")["balance"] == "3.0000"
    assert _transfer(plat, f"quota/reserve/{req}/COD")["status"] == "posted_pending"
    _settled(plat, county, [req])
    assert _types(plat, req) == ["QuotaRequested", "QuotaReserved", "QuotaAllocated"]


# -- our deadline before the ledger answered (void-late) -------------------------------------------------------------
def test_our_deadline_passing_before_the_ledger_answered_releases_the_late_reservation(plat):
    """The reserve command waits in our outbox past our deadline: we expire the request and void; the ledger then
    makes the reservation and voids it. Its hold was given a day more than our deadline."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10"}, reservation_timeout_seconds=2)
    plat.request(county, req, project, COD="4")
    with plat.relay_paused():
        plat.round(county)
        got = plat.wait_state(req, "expired", timeout=15)
        assert got["reason"] == "deadline_passed"
    _answered(plat, req)
    led = _transfer(plat, f"quota/reserve/{req}/COD")
    assert led["status"] == "voided", led
    hold = datetime.fromisoformat(led["expires_at"]) - datetime.fromisoformat(led["timestamp"])
    assert hold == timedelta(seconds=2 + 86_400), hold
    assert plat.pool(county)["COD"]["available"] == "10.0000"
    _settled(plat, county, [req])
    assert _types(plat, req) == ["QuotaRequested", "QuotaReservationExpired"]


# -- the ledger refusing a reservation ------------------------------------------------------------------------------
def test_a_reservation_the_ledger_pool_cannot_cover_is_rejected_whole_with_the_culprits_reason(plat):
    """Someone moved ENERGY out of the county's pool on the ledger: quota still counts it, grants a two-line request,
    and the ledger refuses the linked chain (ENERGY exceeds_credits, COD linked_event_failed). The request is
    rejected with the real reason, no line stays pending, and reconciliation shows only the operator's move."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10", "ENERGY": "10"}, retire_share_bp={"COD": 0, "ENERGY": 1000})
    r = plat.ledger.post("/v1/transfers", headers=ADMIN, json={"transfers": [{
        "transfer_id": f"ops/move/{county}", "debit_account": f"county:{county}/pool/ENERGY",
        "credit_account": f"county:{county}/retired/ENERGY", "asset": "ENERGY", "amount": "5", "code": "ops_fix"}]})
    assert r.status_code == 200 and r.json()["ok"], r.text
    plat.request(county, req, project, COD="3", ENERGY="6")
    (d,) = plat.round(county)["decisions"]
    assert d["outcome"] == "granted"
    got = plat.wait_state(req, "rejected")
    assert got["reason"] == "ledger_refused:exceeds_credits", got
    ts = _answered(plat, req)
    assert {t["transfer_id"]: t["ledger_reason"] for t in ts.values() if t["purpose"] == "reserve"} == {
        f"quota/reserve/{req}/COD": "linked_event_failed", f"quota/reserve/{req}/ENERGY": "exceeds_credits"}
    pool = plat.pool(county)
    assert (pool["COD"]["available"], pool["ENERGY"]["available"], pool["ENERGY"]["reserved"]) == \
        ("10.0000", "9.000", "0.000")
    rec = wait_for(lambda: (x := plat.reconciliation(county))["in_flight"] == 0 and x["settled"] and x, what="settled")
    assert {(x["asset"], x["figure"]) for x in rec["differences"]} == {("ENERGY", "in_pool"), ("ENERGY", "retired")}
    for asset in ("COD", "ENERGY"):
        assert plat.ledger.get(f"/v1/accounts/county:{county}/pool/{asset}/pending", headers=ADMIN).json() == []
    assert _types(plat, req) == ["QuotaRequested", "QuotaRequestRejected"]


# -- races -------------------------------------------------------------------------------------------------------
def test_two_rounds_of_one_county_at_once_grant_each_unit_once(plat):
    county = new_county()
    projects = [f"P{county}-{i}" for i in range(3)]
    reqs = [f"Q{county}-{i}" for i in range(3)]
    _ready(plat, county, projects, {"COD": "10"})
    for p, q in zip(projects, reqs):
        assert plat.request(county, q, p, COD="4").status_code == 201
    out: list = []
    start = threading.Barrier(2)

    def one_round():
        start.wait()
        out.append(plat.quota.post(f"/v1/counties/{county}/rounds", headers=ADMIN))

    threads = [threading.Thread(target=one_round) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in out] == [201, 201], [r.text for r in out]
    decided = [(d["request_id"], d["outcome"]) for r in out for d in r.json()["decisions"]]
    assert sorted(q for q, _ in decided) == sorted(reqs), decided  # each request decided once, by one round
    assert sorted(o for _, o in decided) == ["granted", "granted", "insufficient"], decided
    granted = [q for q, o in decided if o == "granted"]
    for q in granted:
        plat.wait_state(q, "reserved")
        _answered(plat, q)
    assert plat.ledger_balance(f"county:{county}/pool/COD")["debits_pending"] == "8.0000"
    for q, p in zip(reqs, projects):
        if q in granted:
            _approve(plat, p)
            plat.wait_state(q, "allocated")
            _answered(plat, q)
    assert plat.pool(county)["COD"]["allocated"] == "8.0000"
    assert plat.ledger_balance(f"county:{county}/pool/COD")["balance"] == "2.0000"
    _settled(plat, county, reqs)


def test_a_release_taken_in_while_a_round_runs_is_granted_only_once_the_ledger_booked_it(plat):
    """A department's release commits while the round holds the county (it waits for it); the round decides on what
    the ledger had booked; the new lot is granted by the next round once booked, and both books agree."""
    from services.quota.application.rounds import run_round
    from services.quota.application.tx import Tx

    county = new_county()
    projects = [f"P{county}-1", f"P{county}-2"]
    _ready(plat, county, projects, {"COD": "5"})
    plat.request(county, f"Q{county}-1", projects[0], COD="4")
    plat.request(county, f"Q{county}-2", projects[1], COD="4")
    released: list = []

    def release():
        released.append(plat.release(county, f"R{county}-late", "COD", "6", serial=7))

    def round_holding_the_county(uow):
        run = run_round(Tx.of_uow(uow), county, "review")
        t = threading.Thread(target=release)
        t.start()
        time.sleep(1.0)  # the release waits for the county
        assert not released, "the release did not wait for the round's lock"
        return run, t

    run, t = plat.quota_rt.transaction(round_holding_the_county)
    t.join(60)
    assert released and released[0].status_code == 201, released
    assert [(d.request_id, d.outcome.value) for d in run.result.decisions] == [
        (f"Q{county}-1", "granted"), (f"Q{county}-2", "insufficient")]
    plat.request(county, f"Q{county}-3", projects[1], COD="6")
    plat.wait_booked(county, "COD", "7.0000")
    (d,) = plat.round(county)["decisions"]
    assert (d["request_id"], d["outcome"]) == (f"Q{county}-3", "granted")
    plat.wait_state(f"Q{county}-1", "reserved")
    plat.wait_state(f"Q{county}-3", "reserved")
    _settled(plat, county, [f"Q{county}-{i}" for i in (1, 2, 3)])


def test_an_operators_void_racing_an_approval_leaves_the_books_converging(plat):
    """The approval allocates (post on its way) while an operator voids the reservation on the ledger: the post is
    refused (pending_transfer_already_voided). Quota keeps the allocation (lots consumed, QuotaAllocated published);
    as for a post refused because the hold expired, the ledger must be made to agree, else nothing ever converges."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10"})
    plat.request(county, req, project, COD="4")
    plat.round(county)
    plat.wait_state(req, "reserved")
    with plat.relay_paused():
        assert _approve(plat, project)["requests"][0]["state"] == "allocated"
        r = plat.ledger.post("/v1/transfers", headers=ADMIN, json={"transfers": [{
            "transfer_id": f"ops/void/{county}", "asset": "COD", "amount": "0", "code": "ops_cleanup",
            "void_pending_id": f"quota/reserve/{req}/COD"}]})
        assert r.status_code == 200 and r.json()["ok"], r.text
    wait_for(lambda: _ours(plat, req)[f"quota/post/{req}/COD"]["state"] != "asked", what="post answered")
    assert plat.get_request(req)["state"] == "allocated"
    assert "QuotaAllocated" in _types(plat, req)
    wait_for(lambda: plat.ledger_balance(f"project:{project}/COD")["balance"] == "4.0000", timeout=15,
             what=f"the allocation on the ledger: {_ours(plat, req)}")
    _settled(plat, county, [req])


# -- the ledger's own expiry (moves the ledger's clock: keep these last) -----------------------------------------
def test_the_ledger_expiring_a_reservation_first_closes_the_request_and_frees_the_pool(plat):
    """Our deadline an hour away, the ledger's expiry reached first (its clock moved 2 days: our expiry loop away
    that long): the request expires (ledger_expired), our void fails harmlessly, nothing is pending, and a later
    approval allocates nothing."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10"}, reservation_timeout_seconds=3600)
    plat.request(county, req, project, COD="4")
    plat.round(county)
    plat.wait_state(req, "reserved")
    _ledger_clock_forward(plat, 2 * 86_400)
    got = plat.wait_state(req, "expired", timeout=30)
    assert got["reason"] == "ledger_expired"
    ts = _answered(plat, req)
    led = (_transfer(plat, f"quota/reserve/{req}/COD"),
           plat.ledger.get(f"/v1/transfers/quota/void/{req}/COD", headers=ADMIN).json())
    assert ts[f"quota/reserve/{req}/COD"]["state"] == "expired", (ts, led)
    assert (ts[f"quota/void/{req}/COD"]["state"], ts[f"quota/void/{req}/COD"]["ledger_reason"]) == \
        ("rejected", "pending_transfer_expired")
    assert plat.pool(county)["COD"]["available"] == "10.0000"
    assert _approve(plat, project)["requests"] == []
    _settled(plat, county, [req])
    assert _types(plat, req) == ["QuotaRequested", "QuotaReserved", "QuotaReservationExpired"]


def test_after_our_deadline_voided_it_the_ledgers_expiry_finds_nothing_to_expire(plat):
    """Our deadline first (the usual order): we expire and void; when the ledger's own hold ends a day later,
    nothing is pending any more, no TransferExpired comes, and the request stays as it closed."""
    county = new_county()
    project, req = f"P{county}", f"Q{county}"
    _ready(plat, county, [project], {"COD": "10"}, reservation_timeout_seconds=2)
    plat.request(county, req, project, COD="4")
    plat.round(county)
    got = plat.wait_state(req, "expired", timeout=15)
    assert got["reason"] == "deadline_passed"
    _answered(plat, req)
    assert _transfer(plat, f"quota/reserve/{req}/COD")["status"] == "voided"
    _ledger_clock_forward(plat, 2 * 86_400)
    time.sleep(1.0)  # the ledger's expiry runs every 0.2 s
    got = plat.get_request(req)
    assert (got["state"], got["reason"]) == ("expired", "deadline_passed")
    assert _ours(plat, req)[f"quota/reserve/{req}/COD"]["state"] == "voided"
    _settled(plat, county, [req])
    assert _types(plat, req)[-1] == "QuotaReservationExpired"
    assert _types(plat, req).count("QuotaReservationExpired") == 1
