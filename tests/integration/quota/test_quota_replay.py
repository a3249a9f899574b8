"""Replay of the quota service (services/quota/replay.py) against the real service and the real ledger over
Kafka, on SQLite and PostgreSQL: a scenario that emits every event the projection folds, then the rebuilt
read models must equal the live ones; tampered rows are named and repaired from the events."""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import text

from services.quota.replay import QuotaProjection, rebuild
from shared.contracts.quota import ApprovalGranted
from shared.replay import replay
from tests.integration.quota.harness import LAND, SOURCES, credit_code, new_county
from tests.support.services import ADMIN, wait_for


def _approve(plat, project: str, kind: str, source: str) -> None:
    plat.publish(ApprovalGranted(project_id=project, kind=kind, granted_on=date(2024, 3, 1)),
                 source=SOURCES[source], subject=project)


def _admit(plat, *projects: str, county: str) -> None:
    for p in projects:
        plat.admit(county, p)
    for p in projects:
        plat.wait_project(p)


def _mine(models: dict, counties: tuple[str, ...]) -> dict[str, dict]:
    """Rows of this test's counties only (other sessions' intake may reach the same service); every id
    the scenario makes contains its county code."""
    return {m: {k: v for k, v in rows.items() if any(c in repr(k) for c in counties)} for m, rows in models.items()}


@pytest.fixture(scope="module")
def scenario(plat):
    """County A: held release let in by the exit, paid release, reclamation land, one request allocated over
    three lots, one refused, one cancelled, one left reserving (then reserved), one waiting. County B:
    a release rejected by verification, a reservation that expires, a request that waits too long."""
    a, b = new_county(), new_county()
    plat.policy(a, prices={"COD": "12000.00", "ENERGY": "500.00", "LAND": "30000.00"},
                retire_share_bp={"COD": 2000})
    r = plat.release(a, f"R{a}-1", "COD", "10.0001", serial=1)
    assert r.json()["status"] == "pending_verification", r.text
    plat.exited(a, credit_code(a, 1))
    wait_for(lambda: plat.release(a, f"R{a}-1", "COD", "10.0001", serial=1).json()["status"] == "accepted",
             what="held release let in")
    assert plat.release(a, f"R{a}-2", "ENERGY", "12.345", serial=2, reason="upgrade_savings", basis="paid",
                        buyback_price_per_unit="800.00").status_code == 201
    assert plat.release(a, f"R{a}-3", "COD", "1", serial=3).json()["status"] == "pending_verification"
    rc = f"RC{a}"
    assert plat.quota.post("/v1/reclamation-projects", headers=LAND, json={
        "project_id": rc, "county_code": a, "township_code": f"{a}101", "area": "12.5"}).status_code == 201
    accepted = {"accepted_on": "2024-05-01", "accepted_area": "12.0", "document_ref": "通自然资验〔2024〕3号"}
    assert plat.quota.post(f"/v1/reclamation-projects/{rc}/acceptance", headers=LAND, json=accepted).status_code == 200
    for asset, available in (("COD", "8.0000"), ("ENERGY", "12.345"), ("LAND", "12.0000")):
        plat.wait_booked(a, asset, available)

    p1, p2, p3, p4, p5 = (f"P{a}-{i}" for i in range(1, 6))
    _admit(plat, p1, p2, p3, p4, p5, county=a)
    q = {i: f"Q{a}-{i}" for i in range(1, 6)}
    assert plat.request(a, q[1], p1, COD="3.5", ENERGY="1", LAND="2.5").status_code == 201
    assert plat.request(a, q[2], p2, COD="100").status_code == 201
    assert plat.request(a, q[3], p3, COD="1").status_code == 201
    plat.round(a)
    plat.wait_state(q[1], "reserved")
    plat.wait_state(q[3], "reserved")
    for kind, source in (("environmental_impact", "ecology"), ("energy_review", "energy"), ("land_use", "land")):
        _approve(plat, p1, kind, source)
    plat.wait_state(q[1], "allocated")
    r = plat.quota.post(f"/v1/requests/{q[3]}/cancel", headers=ADMIN, json={"reason": "withdrawn"})
    assert r.status_code == 200, r.text
    assert plat.request(a, q[5], p5, COD="1").status_code == 201
    with plat.relay_paused():  # the reserve command stays in the outbox: Q5 stays reserving meanwhile
        plat.round(a)
        assert plat.get_request(q[5])["state"] == "reserving"
        during = QuotaProjection()
        report = replay(plat.quota_rt.db, during)
        assert report.equal, report.differences
        assert during.requests[q[5]][2] == "reserving"
    plat.wait_state(q[5], "reserved")
    assert plat.request(a, q[4], p4, COD="1").status_code == 201  # after the last round: stays requested

    plat.policy(b, verification="reject", reservation_timeout_seconds=2, request_wait_seconds=3)
    assert plat.release(b, f"R{b}-1", "COD", "2", serial=1).json()["status"] == "rejected"
    assert plat.release(b, f"R{b}-2", "COD", "5", serial=2, reason="upgrade_savings").status_code == 201
    plat.wait_booked(b, "COD", "4.0000")
    pb1, pb2 = f"P{b}-1", f"P{b}-2"
    _admit(plat, pb1, pb2, county=b)
    assert plat.request(b, f"Q{b}-1", pb1, COD="1").status_code == 201
    plat.round(b)
    assert plat.wait_state(f"Q{b}-1", "expired", timeout=15)["reason"] in ("deadline_passed", "ledger_expired")
    assert plat.request(b, f"Q{b}-2", pb2, COD="1").status_code == 201
    assert plat.wait_state(f"Q{b}-2", "expired", timeout=15)["reason"] == "deadline_passed"
    plat.wait_reconciled(a)
    plat.wait_reconciled(b)
    return a, b


def test_the_rebuilt_read_models_equal_the_live_ones(plat, scenario):
    a, b = scenario
    report = rebuild(plat.quota_rt.db)
    assert report.equal, "\n".join(map(str, report.differences))
    assert report.events_read == report.events_applied > 0

    proj = QuotaProjection()
    assert replay(plat.quota_rt.db, proj).equal
    m = _mine(proj.rebuilt(), (a, b))
    assert {k: len(v) for k, v in m.items()} == {
        "releases": 5, "lots": 4, "reclamation_accepted": 1, "pool": 4, "requests": 7,
        "reservation_deadlines": len(m["reservation_deadlines"]), "request_lines": 9, "allocations": 3,
        "consumptions": 3, "ledger_transfers": len(m["ledger_transfers"])}
    # Q{b}-1 may have expired before or after the ledger's answer reserved it: county A's are certain
    assert {r for r in m["reservation_deadlines"] if a in r} == {f"Q{a}-1", f"Q{a}-3", f"Q{a}-5"}
    # (released, retired, allocated, reserved, available) over every lot; Q5 holds 1 COD, Q4 waits
    assert m["pool"] == {
        (a, "COD"): (100001, 20001, 35000, 10000, 100001 - 20001 - 35000 - 10000),
        (a, "ENERGY"): (12345, 0, 1000, 0, 11345), (a, "LAND"): (120000, 0, 25000, 0, 95000),
        (b, "COD"): (50000, 10000, 0, 0, 40000)}
    assert {r: m["requests"][r][2:] for r in m["requests"]} == {
        f"Q{a}-1": ("allocated", ""), f"Q{a}-2": ("rejected", "insufficient_quota"),
        f"Q{a}-3": ("cancelled", "withdrawn"), f"Q{a}-4": ("requested", ""), f"Q{a}-5": ("reserved", ""),
        f"Q{b}-1": ("expired", m["requests"][f"Q{b}-1"][3]), f"Q{b}-2": ("expired", "deadline_passed")}
    assert m["requests"][f"Q{b}-1"][3] in ("deadline_passed", "ledger_expired")
    assert {r: m["releases"][r][11] for r in m["releases"]} == {
        f"R{a}-1": "accepted", f"R{a}-2": "accepted", f"R{a}-3": "pending_verification",
        f"R{b}-1": "rejected", f"R{b}-2": "accepted"}
    # price, document, date and department: the facts QuotaReleased carries since they were added to it
    assert m["releases"][f"R{a}-2"][7:11] == (80000, "通环收〔2024〕1号", "2024-02-01", "development_reform")
    lots = m["lots"]
    assert (lots[f"release:R{a}-1"][2:5], lots[f"release:R{a}-2"][2:5], lots[f"reclamation:RC{a}"][2:5]) == \
        ((100001, 20001, 100001 - 20001 - 35000), (12345, 0, 12345 - 1000), (120000, 0, 120000 - 25000))
    assert lots[f"release:R{a}-2"][10:12] == (80000, 987600)  # 12.345 tce at 800.00 CNY
    assert m["reclamation_accepted"] == {f"RC{a}": (a, f"{a}101", "2024-05-01", 120000)}
    purposes = Counter((t[1], t[0]) for t in m["ledger_transfers"].values())
    assert {k: n for k, n in purposes.items() if k[0] == a} == {
        (a, "intake"): 3, (a, "retire"): 1, (a, "reserve"): 5, (a, "post"): 3, (a, "void"): 1}
    assert purposes[(b, "intake")] == purposes[(b, "retire")] == purposes[(b, "reserve")] == 1
    assert purposes[(b, "void")] >= 1


def test_a_tampered_row_is_named_and_repaired_from_the_events(plat, scenario):
    a, _ = scenario
    db = plat.quota_rt.db
    lot, req, rel, held = f"release:R{a}-1", f"Q{a}-3", f"R{a}-2", f"Q{a}-5"
    with db.sessions() as s, s.begin():
        s.execute(text("UPDATE lots SET remaining = remaining + 1 WHERE lot_id = :k"), {"k": lot})
        s.execute(text("UPDATE quota_requests SET deadline = :d WHERE request_id = :k"),
                  {"d": datetime(2099, 1, 1, tzinfo=timezone.utc), "k": held})
        s.execute(text("UPDATE quota_requests SET state = 'reserved', reason = NULL WHERE request_id = :k"), {"k": req})
        s.execute(text("UPDATE releases SET document_ref = 'forged' WHERE release_id = :k"), {"k": rel})
        gone = s.execute(text("SELECT * FROM allocations WHERE request_id = :r AND asset = 'LAND'"),
                         {"r": f"Q{a}-1"}).mappings().one()
        s.execute(text("DELETE FROM allocations WHERE request_id = :r AND asset = 'LAND'"), {"r": f"Q{a}-1"})

    report = rebuild(db)
    found = {(d.model, d.key): d for d in report.differences}
    assert set(found) == {("lots", lot), ("requests", req), ("releases", rel), ("allocations", (f"Q{a}-1", "LAND")),
                          ("reservation_deadlines", held), ("pool", (a, "COD"))}
    assert found[("lots", lot)].live[4] == found[("lots", lot)].rebuilt[4] + 1
    # the pool, summed from the live rows: one unit less allocated (the lot), Q3's unit held again (the request)
    pool = found[("pool", (a, "COD"))]
    assert (pool.live[2], pool.live[3]) == (pool.rebuilt[2] - 1, pool.rebuilt[3] + 10000)
    assert found[("reservation_deadlines", held)].live == ("2099-01-01T00:00:00+00:00",)
    assert found[("requests", req)].rebuilt[2:] == ("cancelled", "withdrawn")
    assert found[("allocations", (f"Q{a}-1", "LAND"))].live is None

    fixed = rebuild(db, repair=True)
    # four rows rewritten, and the pool summed from them agrees again; the missing allocation has columns no
    # event holds: reported, not invented
    assert (fixed.repaired, len(fixed.differences)) == (5, 6)
    assert [(d.model, d.key) for d in fixed.remaining] == [("allocations", (f"Q{a}-1", "LAND"))]
    after = rebuild(db)
    assert [(d.model, d.key) for d in after.differences] == [("allocations", (f"Q{a}-1", "LAND"))]
    with db.sessions() as s:
        assert s.execute(text("SELECT state, reason FROM quota_requests WHERE request_id = :k"), {"k": req}).one() == \
            ("cancelled", "withdrawn")
        assert s.execute(text("SELECT document_ref FROM releases WHERE release_id = :k"), {"k": rel}).scalar() == \
            "通环收〔2024〕1号"
    with db.sessions() as s, s.begin():  # put the row back: the database is the module's
        s.execute(text(f"INSERT INTO allocations ({', '.join(gone)}) VALUES ({', '.join(':' + c for c in gone)})"),
                  dict(gone))
    assert rebuild(db).equal


def test_the_benchmark_writes_events_the_contracts_decode_and_rows_the_replay_agrees_with(db_url):
    from bench.replay_quota import write_events
    from services.quota.main import MIGRATIONS
    from services.quota.storage.tables import messaging
    from shared import migrations
    from shared.db import Database
    from shared.envelope import Envelope

    db = Database(db_url, "quota")
    try:
        migrations.upgrade(db, MIGRATIONS)
        assert write_events(db, 2_503) == 2_503  # not a whole number of blocks: the tail is waiting requests
        with db.sessions() as s:
            stored = s.execute(messaging["outbox"].select()).all()
        assert len(stored) == 2_503
        names = Counter(type(Envelope.model_validate_json(r.envelope).payload()).__name__ for r in stored)
        assert set(names) == {"QuotaReleased", "LotCreated", "QuotaRetired", "BuybackOwed", "QuotaRequested",
                              "QuotaReserved", "QuotaAllocated", "QuotaRequestRejected", "QuotaReservationCancelled",
                              "QuotaReservationExpired", "QuotaRequestExpired", "TransfersRequested"}
        report = rebuild(db)
        assert report.equal, report.differences[:5]
        assert report.events_read == 2_503 and all(n > 0 for n in report.rows.values())
    finally:
        db.dispose()


def test_repair_writes_only_what_the_events_determine(db_url):
    """Rows the events cannot rebuild whole are left alone; facts an old event lacks are not overwritten."""
    from bench.replay_quota import write_events
    from services.quota.main import MIGRATIONS
    from services.quota.replay import UNRECORDED, live_models, repair_rows
    from shared import migrations
    from shared.db import Database
    from shared.replay import Difference

    db = Database(db_url, "quota")
    try:
        migrations.upgrade(db, MIGRATIONS)
        write_events(db, 200)  # a few blocks: releases, lots (some paid), requests
        with db.sessions() as s:
            live = live_models(s)
        paid = next(k for k, v in live["lots"].items() if v[10] is not None)
        free = next(k for k, v in live["lots"].items() if v[10] is None)
        rel, row = next(iter(live["releases"].items()))
        due_only = live["lots"][paid][:11] + (live["lots"][paid][11] + 1,) + live["lots"][paid][12:]
        no_lot_created = (None, None, None, 5, None, None, None, None, None, None, None, None, free.partition(":")[2])
        old_event = row[:8] + (UNRECORDED,) + row[9:11] + ("rejected", "exit_not_known")
        diffs = [Difference("lots", paid, live["lots"][paid], due_only),
                 Difference("lots", free, live["lots"][free], no_lot_created),
                 Difference("lots", "release:ghost", None, live["lots"][free]),
                 Difference("releases", rel, row, old_event)]
        with db.sessions() as s, s.begin():
            s.execute(text("UPDATE releases SET document_ref = 'kept' WHERE release_id = :k"), {"k": rel})
            assert repair_rows(s, diffs) == 1
        with db.sessions() as s:
            after = live_models(s)
            kept = s.execute(text("SELECT document_ref FROM releases WHERE release_id = :k"), {"k": rel}).scalar()
            assert kept == "kept"
        assert after["releases"][rel][11:] == ("rejected", "exit_not_known")
        assert after["lots"] == live["lots"]
    finally:
        db.dispose()


def test_a_repair_holds_the_services_writers_off_until_it_commits(plat, scenario, monkeypatch):
    """A repair rewrites rows from the events it folded. On PostgreSQL it read a snapshot and let the service write
    on: a writer that read a row before the repair committed wrote its own figures, computed from the unrepaired row,
    back over the repair. Now the repair locks the counties table first (every writer of lots, requests and
    releases locks its county's row), so a release submitted while it runs waits for it and then goes through."""
    import threading

    county = new_county()
    plat.policy(county, prices={"COD": "12000.00"})
    folded, go_on = threading.Event(), threading.Event()
    rebuilt = QuotaProjection.rebuilt

    def paused(self):
        folded.set()
        assert go_on.wait(60)
        return rebuilt(self)

    monkeypatch.setattr(QuotaProjection, "rebuilt", paused)
    repair = threading.Thread(target=lambda: rebuild(plat.quota_rt.db, repair=True))
    repair.start()
    try:
        assert folded.wait(60), "the repair did not fold"
        answer: list = []
        writer = threading.Thread(target=lambda: answer.append(plat.release(county, f"R{county}-1", "COD", "2")))
        writer.start()
        writer.join(2)
        assert writer.is_alive() and not answer, "the release was written while the repair was between read and write"
    finally:
        go_on.set()
        repair.join(60)
    writer.join(60)
    assert answer and answer[0].status_code == 201, answer[0].text if answer else "no answer"
    monkeypatch.setattr(QuotaProjection, "rebuilt", rebuilt)
    assert [d for d in rebuild(plat.quota_rt.db).differences if county in repr(d.key)] == []
