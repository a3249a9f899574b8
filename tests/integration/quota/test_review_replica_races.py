"""Review: read-modify-write races between two quota replicas on one PostgreSQL database, over HTTP.

deploy/k8s runs two replicas of the quota service on one database, so two processes serve racing HTTP calls. Here
replica A runs the relay, the consumer (assessment facts, the ledger's answers) and the expiry job beside a real
ledger service on Kafka; replica B only serves HTTP on the same database (its outbox rows are A's relay's to send).
Every race splits its calls between A and B (tests/support/concurrency.together releases them at one moment) and is
repeated in several counties, prepared together so the ledger's bookings are waited for once.

No race reproduced: each test guards a promise that held when this review ran. Every change of a county's pool
takes the county's row lock (storage/counties.lock_county, SELECT ... FOR UPDATE) before it reads anything, and
the writers run in READ COMMITTED, so whichever commits second re-reads what the first wrote; behind the lock, the
round number (rounds' seq) and the idempotency ids (release, request) are unique keys whose violation is retried
(shared/db.run_with_retry), and an acceptance also locks its reclamation row. After the races the books are
checked: the pool's figures add up and match its lots, each request is granted and allocated at most once, and
quota and the ledger reconcile with no reservation of a closed request left pending, none of an open one missing."""
from __future__ import annotations

import time
from contextlib import ExitStack
from decimal import Decimal

import pytest
from sqlalchemy import text

from tests.integration.quota.harness import ECOLOGY, LAND, Platform, credit_code, new_county, platform
from tests.support.concurrency import together
from tests.support.pg import fresh_database
from tests.support.services import ADMIN, running_service, wait_for

REPEATS = 6  # counties (independent races) per test
HOLDING = ("reserving", "reserved")


# -- the two replicas ---------------------------------------------------------------------------------------------
class Replicas:
    """``plat`` is replica A with the ledger (tests/integration/quota/harness.Platform); ``b`` replica B's client."""

    def __init__(self, plat: Platform, b):
        self.plat, self.a, self.b = plat, plat.quota, b

    def sql(self, query: str, **params) -> list:
        with self.plat.quota_rt.db.engine.connect() as c:
            return c.execute(text(query), params).all()


@pytest.fixture(scope="module")
def rep(pg_server_url, kafka_bootstrap):
    with ExitStack() as stack:
        quota_db = stack.enter_context(fresh_database(pg_server_url))
        ledger_db = stack.enter_context(fresh_database(pg_server_url))
        plat = stack.enter_context(platform(quota_db, ledger_db, kafka_bootstrap))  # A: quota beside the ledger
        # B: HTTP only, on the same database (never started: no relay, consumer or expiry of its own)
        _, b = stack.enter_context(running_service("quota", quota_db, kafka_bootstrap, background=False))
        yield Replicas(plat, b)


# -- helpers ------------------------------------------------------------------------------------------------------
POLICY = dict(verification="accept", retire_share_bp={"COD": 0, "ENERGY": 0, "LAND": 0})


def prepare(rep: Replicas, releases: dict[str, str], projects: dict[str, str], n: int = REPEATS) -> list[str]:
    """``n`` fresh counties, each with ``releases`` (asset -> amount) booked by the ledger and ``projects``
    (id suffix -> project class) admitted. Project ids are f"{county}-{suffix}"."""
    plat = rep.plat
    counties = [new_county() for _ in range(n)]
    for c in counties:
        plat.policy(c, **POLICY)
        for serial, (asset, amount) in enumerate(sorted(releases.items()), start=1):
            r = plat.release(c, f"REL{c}-{asset}", asset, amount, serial=serial)
            assert r.status_code == 201, r.text
        for suffix, cls in projects.items():
            plat.admit(c, f"{c}-{suffix}", project_class=cls)
    for c in counties:
        booked(rep, c)
        for suffix in projects:
            plat.wait_project(f"{c}-{suffix}")
    return counties


def booked(rep: Replicas, county: str) -> dict[str, dict]:
    """The pool once nothing is on its way to the ledger."""
    return wait_for(lambda: (p := rep.plat.pool(county)) and all(Decimal(v["incoming"]) == 0 for v in p.values()) and p,
                    what=f"county {county}'s lots booked")


def ask(client, county: str, request_id: str, project_id: str, **lines: str):
    return client.post("/v1/requests", headers=ADMIN, json=dict(
        request_id=request_id, project_id=project_id, county_code=county,
        lines=[{"asset": a, "amount": n} for a, n in lines.items()]))


def run_round(client, county: str):
    return client.post(f"/v1/counties/{county}/rounds", headers=ADMIN)


def approve(client, project_id: str, kind: str):
    return client.post("/v1/approvals", headers=ADMIN, json=dict(
        project_id=project_id, kind=kind, document_ref="通环审〔2024〕9号", granted_on="2024-03-01"))


def status(results: list) -> list:
    """Each call's HTTP status (an exception as itself, so the assertion shows it)."""
    return [r.status_code if hasattr(r, "status_code") else r for r in results]


def granted(rounds: list[dict]) -> dict[str, int]:
    """request id -> how many rounds granted it."""
    out: dict[str, int] = {}
    for rnd in rounds:
        for d in rnd["decisions"]:
            if d["outcome"] == "granted":
                out[d["request_id"]] = out.get(d["request_id"], 0) + 1
    return out


def check_pool(rep: Replicas, county: str) -> dict[str, dict]:
    """The pool's figures add up and none is negative; the lots' remaining is what the pool shows."""
    pool = rep.plat.pool(county)
    for asset, f in pool.items():
        fig = {k: Decimal(f[k]) for k in ("released", "retired", "allocated", "reserved", "available")}
        assert min(fig.values()) >= 0, (county, asset, f)
        assert fig["retired"] + fig["allocated"] + fig["reserved"] + fig["available"] == fig["released"], (county, f)
    lots = rep.sql("SELECT asset, sum(amount), sum(retired), sum(remaining) FROM lots WHERE county_code = :c "
                   "AND ledger_state = 'booked' GROUP BY asset", c=county)
    consumed = dict(rep.sql("SELECT asset, sum(amount) FROM consumptions WHERE county_code = :c GROUP BY asset",
                            c=county))
    for asset, amount, retired, remaining in lots:
        # every unit of a lot is retired, remaining, or consumed by exactly one allocation
        assert amount == retired + remaining + (consumed.get(asset) or 0), (county, asset, amount, retired, remaining,
                                                                           consumed)
    return pool


def allocations_of(rep: Replicas, request_id: str) -> tuple[int, int, int]:
    """(allocation rows, consumption rows, QuotaAllocated events) of the request."""
    return (rep.sql("SELECT count(*) FROM allocations WHERE request_id = :r", r=request_id)[0][0],
            rep.sql("SELECT count(*) FROM consumptions WHERE request_id = :r", r=request_id)[0][0],
            rep.sql("SELECT count(*) FROM outbox WHERE key = :r AND split_part(event_type, '.', 2) = 'QuotaAllocated'",
                    r=request_id)[0][0])


def settled(rep: Replicas, county: str, assets=("COD",)) -> None:
    """Quota and the ledger agree, and the ledger holds pending exactly the reservations of open requests."""
    plat = rep.plat
    rec = plat.wait_reconciled(county)
    assert rec["settled"] and rec["differences"] == [], rec
    reqs = plat.quota.get(f"/v1/requests?county_code={county}", headers=ADMIN).json()["requests"]
    for asset in assets:
        pending = plat.ledger.get(f"/v1/accounts/county:{county}/pool/{asset}/pending", headers=ADMIN).json()
        held = {f"quota/reserve/{r['request_id']}/{asset}" for r in reqs if r["state"] in HOLDING
                and any(line["asset"] == asset for line in r["lines"])}
        assert {t["transfer_id"] for t in pending} == held, (county, asset, reqs, pending)


# -- 1. two rounds of one county at once ---------------------------------------------------------------------------
def test_two_rounds_of_one_county_at_once_never_grant_beyond_the_pool_nor_a_request_twice(rep):
    """Rounds on both replicas at once: each request granted at most once, the grants within what the pool held."""
    counties = prepare(rep, {"COD": "10"}, {f"P{i}": "A" for i in range(1, 5)})
    for c in counties:
        for i in range(1, 5):  # 4 x 3 t against 10 t: three fit
            assert ask(rep.a if i % 2 else rep.b, c, f"{c}-R{i}", f"{c}-P{i}", COD="3").status_code == 201
        results = together([lambda: run_round(rep.a, c), lambda: run_round(rep.b, c)])
        assert status(results) == [201, 201], [getattr(r, "text", r) for r in results]
        rounds = [r.json() for r in results]
        assert sorted(r["seq"] for r in rounds) == [1, 2], rounds
        twice = {r: n for r, n in granted(rounds).items() if n > 1}
        assert not twice, f"county {c}: requests granted by both rounds: {twice}"
        assert len(granted(rounds)) == 3, rounds
        states = {f"{c}-R{i}": rep.plat.get_request(f"{c}-R{i}")["state"] for i in range(1, 5)}
        assert sorted(states.values()).count("rejected") == 1, states
        pool = check_pool(rep, c)["COD"]
        assert Decimal(pool["reserved"]) == 9 and Decimal(pool["available"]) == 1, pool
    for c in counties:
        settled(rep, c)


# -- 2. a cancellation while a round allocates to the request ------------------------------------------------------
def test_a_request_cancelled_while_a_round_grants_it_ends_cancelled_holding_nothing(rep):
    """Cancel on one replica, round on the other: the request ends cancelled, its quota back in the pool (voided if
    the round got it first), and the quota it freed goes to the other request only if the cancel came first."""
    counties = prepare(rep, {"COD": "4"}, {"P1": "A", "P2": "B"})
    for n, c in enumerate(counties):
        assert ask(rep.a, c, f"{c}-R1", f"{c}-P1", COD="3").status_code == 201  # first in the order
        assert ask(rep.b, c, f"{c}-R2", f"{c}-P2", COD="3").status_code == 201
        cancel = lambda: rep.b.post(f"/v1/requests/{c}-R1/cancel", headers=ADMIN, json={"reason": "withdrawn"})
        rnd = lambda: run_round(rep.a, c)
        results = together([cancel, rnd] if n % 2 else [rnd, cancel])  # both orders of starting
        by = dict(zip(("cancel", "round") if n % 2 else ("round", "cancel"), results))
        assert status([by["cancel"], by["round"]]) == [200, 201], [getattr(r, "text", r) for r in results]
        r1, r2 = rep.plat.get_request(f"{c}-R1"), rep.plat.get_request(f"{c}-R2")
        assert r1["state"] == "cancelled", r1
        got = granted([by["round"].json()])
        if f"{c}-R1" in got:  # the round came first: R1 reserved, then cancelled and voided; R2 was refused
            assert r2["state"] == "rejected" and f"quota/void/{c}-R1/COD" in {
                t["transfer_id"] for t in r1["ledger_transfers"]}, (r1, r2)
        else:  # the cancel came first: the round saw R2 alone
            assert got == {f"{c}-R2": 1} and r2["state"] in HOLDING, (got, r2)
        pool = check_pool(rep, c)["COD"]
        assert Decimal(pool["reserved"]) == (3 if r2["state"] in HOLDING else 0), (pool, r2)
    for c in counties:
        settled(rep, c)


# -- 3. policy changes racing a round ------------------------------------------------------------------------------
ORDERS = {"A": ["A", "B", "C", "D"], "B": ["B", "A", "C", "D"], "C": ["C", "B", "A", "D"]}


def test_policy_changes_racing_a_round_are_neither_lost_nor_mixed_into_the_round(rep):
    """Two policy PUTs and a round at once: both PUTs get their own version, and the round decides wholly by the
    policy version it records (the class its one grant went to is first in that version's order)."""
    counties = prepare(rep, {"COD": "10"}, {"PA": "A", "PB": "B", "PC": "C"})
    for c in counties:
        v0 = rep.plat.quota.get(f"/v1/counties/{c}/policy", headers=ADMIN).json()["version"]
        for cls in "ABC":  # 3 x 6 t against 10 t: only the first in the class order is granted
            assert ask(rep.a, c, f"{c}-R{cls}", f"{c}-P{cls}", COD="6").status_code == 201
        put = lambda client, first: client.put(f"/v1/counties/{c}/policy", headers=ADMIN,
                                               json={**POLICY, "priority": {"class_order": ORDERS[first]}})
        results = together([lambda: put(rep.b, "B"), lambda: run_round(rep.a, c), lambda: put(rep.a, "C")])
        assert status(results) == [200, 201, 200], [getattr(r, "text", r) for r in results]
        puts, rnd = [results[0].json(), results[2].json()], results[1].json()
        assert sorted(p["version"] for p in puts) == [v0 + 1, v0 + 2], puts  # no update lost
        final = rep.plat.quota.get(f"/v1/counties/{c}/policy", headers=ADMIN).json()
        last = max(puts, key=lambda p: p["version"])
        assert final["version"] == v0 + 2 and final["priority"]["class_order"] == last["priority"]["class_order"]
        order_of = {v0: ORDERS["A"], **{p["version"]: p["priority"]["class_order"] for p in puts}}
        assert granted([rnd]) == {f"{c}-R{order_of[rnd['policy_version']][0]}": 1}, (rnd, order_of)
        assert rep.plat.quota.get(f"/v1/rounds/{rnd['round_id']}", headers=ADMIN).json()["reproducible"] is True
        check_pool(rep, c)


# -- 4. reclamation acceptance twice at once; approvals at once -----------------------------------------------------
def test_a_reclamation_acceptance_sent_twice_at_once_enters_the_pool_once(rep):
    """The same 验收 on both replicas at once: one lot, one intake chain, the area booked once."""
    counties = [new_county() for _ in range(REPEATS)]
    for c in counties:
        rep.plat.policy(c, **POLICY)
        body = dict(project_id=f"RC{c}", county_code=c, township_code=f"{c}100", area="5.5")
        assert rep.a.post("/v1/reclamation-projects", headers=LAND, json=body).status_code == 201
        accepted = dict(accepted_on="2024-05-01", accepted_area="5.5", document_ref="验收〔2024〕1号")
        url = f"/v1/reclamation-projects/RC{c}/acceptance"
        results = together([lambda: rep.a.post(url, headers=LAND, json=accepted),
                            lambda: rep.b.post(url, headers=LAND, json=accepted)])
        assert status(results) == [200, 200], [getattr(r, "text", r) for r in results]
        assert {r.json()["lot_id"] for r in results} == {f"reclamation:RC{c}"}
    for c in counties:
        assert Decimal(booked(rep, c)["LAND"]["released"]) == Decimal("5.5")
        assert rep.sql("SELECT count(*) FROM lots WHERE county_code = :c", c=c)[0][0] == 1
        assert rep.sql("SELECT count(*) FROM ledger_transfers WHERE county_code = :c AND purpose = 'intake'",
                       c=c)[0][0] == 1
        assert rep.sql("SELECT count(*) FROM outbox WHERE key = :k AND split_part(event_type, '.', 2) = 'LotCreated'",
                       k=f"reclamation:RC{c}")[0][0] == 1
        check_pool(rep, c)
        settled(rep, c, assets=("LAND",))


def test_approvals_at_once_allocate_a_reservation_exactly_once(rep):
    """The two confirming approvals of a two-line request on both replicas at once, and one approval sent to both
    at once: each request allocated once (one allocation per line, lots consumed once, one QuotaAllocated a line)."""
    counties = prepare(rep, {"COD": "10", "ENERGY": "10"}, {"P1": "A", "P2": "B"})
    for c in counties:
        assert ask(rep.a, c, f"{c}-R1", f"{c}-P1", COD="3", ENERGY="2").status_code == 201
        assert ask(rep.b, c, f"{c}-R2", f"{c}-P2", COD="4").status_code == 201
        assert granted([run_round(rep.a, c).json()]) == {f"{c}-R1": 1, f"{c}-R2": 1}
    for c in counties:
        rep.plat.wait_state(f"{c}-R1", "reserved")
        rep.plat.wait_state(f"{c}-R2", "reserved")
        results = together([
            lambda: approve(rep.a, f"{c}-P1", "environmental_impact"),
            lambda: approve(rep.b, f"{c}-P1", "energy_review"),
            lambda: approve(rep.a, f"{c}-P2", "environmental_impact"),
            lambda: approve(rep.b, f"{c}-P2", "environmental_impact")])
        assert status(results) == [200] * 4, [getattr(r, "text", r) for r in results]
        for rid, lines in ((f"{c}-R1", 2), (f"{c}-R2", 1)):
            assert rep.plat.get_request(rid)["state"] == "allocated", rep.plat.get_request(rid)
            allocs, consumptions, events = allocations_of(rep, rid)
            assert (allocs, events) == (lines, lines) and consumptions == lines, (rid, allocs, consumptions, events)
        pool = check_pool(rep, c)
        assert (Decimal(pool["COD"]["allocated"]), Decimal(pool["ENERGY"]["allocated"])) == (7, 2), pool
    for c in counties:
        settled(rep, c, assets=("COD", "ENERGY"))


CANCEL_DELAYS = (0, 0.01, 0, 0.02, 0.005, 0.04)


def test_a_cancel_racing_the_confirming_approval_leaves_the_request_and_its_allocations_in_agreement(rep):
    """Cancel sent to both replicas and the confirming approval at once: either allocated (with one allocation, both
    cancels 409) or cancelled once (no allocation, nothing consumed); never both."""
    counties = prepare(rep, {"COD": "10"}, {"P1": "A"})
    for c in counties:
        assert ask(rep.a, c, f"{c}-R1", f"{c}-P1", COD="4").status_code == 201
        assert granted([run_round(rep.b, c).json()]) == {f"{c}-R1": 1}
    for n, c in enumerate(counties):
        rep.plat.wait_state(f"{c}-R1", "reserved")
        # the approval does more before it takes the county's lock: cancels held back a little in some counties
        # let it win some races too, so both outcomes are exercised
        def cancel(client, delay=CANCEL_DELAYS[n % len(CANCEL_DELAYS)], url=f"/v1/requests/{c}-R1/cancel"):
            time.sleep(delay)
            return client.post(url, headers=ADMIN, json={"reason": "withdrawn"})

        calls = [lambda: approve(rep.a if n % 2 else rep.b, f"{c}-P1", "environmental_impact"),
                 lambda: cancel(rep.b), lambda: cancel(rep.a)]
        results = together(calls)
        codes = status(results)
        assert codes[0] == 200 and sorted(codes[1:]) in ([200, 409], [409, 409]), [getattr(r, "text", r)
                                                                                  for r in results]
        req = rep.plat.get_request(f"{c}-R1")
        allocs, consumptions, events = allocations_of(rep, f"{c}-R1")
        if req["state"] == "allocated":
            assert codes[1:] == [409, 409] and (allocs, consumptions, events) == (1, 1, 1), (codes, req)
        else:
            assert req["state"] == "cancelled" and sorted(codes[1:]) == [200, 409], (codes, req)
            assert (allocs, consumptions, events) == (0, 0, 0), (req, allocs, consumptions, events)
        pool = check_pool(rep, c)["COD"]
        assert Decimal(pool["allocated"]) == (4 if req["state"] == "allocated" else 0), pool
        assert Decimal(pool["reserved"]) == 0, pool
    for c in counties:
        settled(rep, c)


def test_an_approval_racing_the_opening_of_its_request_is_never_lost(rep):
    """The confirming approval on one replica while the request opens on the other: the request counts it either
    way (remembered before it opened, or stepped after), so once reserved it is allocated without another."""
    counties = prepare(rep, {"COD": "10"}, {"P1": "A"})
    for n, c in enumerate(counties):
        calls = [lambda: ask(rep.a, c, f"{c}-R1", f"{c}-P1", COD="2"),
                 lambda: approve(rep.b, f"{c}-P1", "environmental_impact")]
        results = together(calls if n % 2 else calls[::-1])
        assert sorted(status(results)) == [200, 201], [getattr(r, "text", r) for r in results]
        assert granted([run_round(rep.a, c).json()]) == {f"{c}-R1": 1}
    for c in counties:
        rep.plat.wait_state(f"{c}-R1", "allocated")
        assert allocations_of(rep, f"{c}-R1") == (1, 1, 1)
        check_pool(rep, c)
        settled(rep, c)


# -- 5. a release and a round at once; a release or request sent twice at once --------------------------------------
def test_a_release_racing_a_round_is_never_lost_and_sent_twice_at_once_enters_once(rep):
    """A new release (sent to both replicas at once) racing a round and a request sent twice: one lot, booked into
    the pool beside what the round granted; one request."""
    counties = prepare(rep, {"COD": "10"}, {"P1": "A", "P2": "B"})
    for c in counties:
        assert ask(rep.a, c, f"{c}-R1", f"{c}-P1", COD="6").status_code == 201
        late = dict(release_id=f"REL{c}-late", enterprise_credit_code=credit_code(c, 7), township_code=f"{c}100",
                    county_code=c, asset="COD", amount="5", reason="closure", basis="free",
                    document_ref="通环收〔2024〕1号", released_on="2024-02-01")
        new = lambda client: client.post("/v1/releases", headers=ECOLOGY, json=late)
        results = together([lambda: new(rep.a), lambda: run_round(rep.b, c), lambda: new(rep.b),
                            lambda: ask(rep.a, c, f"{c}-R2", f"{c}-P2", COD="6"),
                            lambda: ask(rep.b, c, f"{c}-R2", f"{c}-P2", COD="6")])
        codes = status(results)
        assert sorted([codes[0], codes[2]]) == [200, 201] and codes[1] == 201, [getattr(r, "text", r) for r in results]
        assert sorted(codes[3:]) == [200, 201], [getattr(r, "text", r) for r in results]
        assert rep.sql("SELECT count(*) FROM quota_requests WHERE request_id = :r", r=f"{c}-R2")[0][0] == 1
    for c in counties:
        p = booked(rep, c)["COD"]
        assert Decimal(p["released"]) == 15, p  # the release is neither lost nor doubled
        assert rep.sql("SELECT count(*) FROM lots WHERE county_code = :c", c=c)[0][0] == 2
        assert rep.sql("SELECT count(*) FROM outbox WHERE key = :k AND split_part(event_type, '.', 2) = 'LotCreated'",
                       k=f"release:REL{c}-late")[0][0] == 1
        check_pool(rep, c)
        settled(rep, c)
