"""Review of the quota service's read and planning API as a county planner uses it (SQLite and PostgreSQL),
2026-12-01. The pool's use cases run through test_review_pool_rules_db.Book (real outbox, the ledger's answers
given by hand); everything is read back over HTTP.

Defect: GET /v1/enterprises/{credit_code}/freed ("its releases, lots, and the projects its quota went to") picks
lots by ``source_ref`` alone (storage/intake_store.lots_of_source), and a 增减挂钩 reclamation lot's source_ref is
the reclamation project's id. So the trail of an "enterprise" named like a reclamation project is answered 200 with
that project's reclaimed land as if an enterprise had freed it (and where it went), instead of 404
enterprise_unknown; and an enterprise whose credit code a county also used as a reclamation project's id (a village
collective's code, 统一社会信用代码 N2…) is shown the project's land as its own freed quota.

Guards (passing): every figure of the pool agrees with lots, provenance, enterprise trails, requests, the next
round's available_before and the countypool_quota_pool_units gauge, with multi-asset requests and a reclamation lot;
odd but valid ids, cursors and bounds on every read are never a 5xx."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.integration.quota.harness import credit_code
from tests.integration.quota.test_review_pool_rules_db import C, Book
from tests.support.services import ADMIN, running_service


@pytest.fixture
def service(db_url, kafka_bootstrap):
    with running_service("quota", db_url, kafka_bootstrap, background=False) as (rt, client):
        yield rt, client


def _d(s: str) -> Decimal:
    return Decimal(s)


def _book(rt, **policy) -> Book:
    book = Book(rt.db, **policy)
    book.now = datetime.now(timezone.utc)  # rounds over HTTP run at the wall clock's time
    return book


# -- defect ----------------------------------------------------------------------------------------------------
def test_an_enterprise_trail_never_shows_a_reclamation_projects_land(service):
    rt, client = service
    book = _book(rt, retire_share_bp={})
    collective = credit_code(C, 77)  # the code a county also used as its reclamation project's id
    book.reclaim("GX-7", "3", "2024-01-02")
    book.reclaim(collective, "2", "2024-01-03")
    book.release("REL-1", "COD", "1", "2024-01-04", serial=77)  # the enterprise's own release
    book.book()

    r = client.get("/v1/enterprises/GX-7/freed", headers=ADMIN)  # no enterprise: a reclamation project's id
    assert (r.status_code, r.json().get("reason")) == (404, "enterprise_unknown"), r.text

    trail = client.get(f"/v1/enterprises/{collective}/freed", headers=ADMIN)
    assert trail.status_code == 200, trail.text
    assert [l["lot_id"] for l in trail.json()["lots"]] == ["release:REL-1"], trail.json()["lots"]


# -- guards ----------------------------------------------------------------------------------------------------
def test_every_read_of_the_pool_agrees_with_the_others_with_multi_asset_requests(service):
    """pool == lots (booked) == provenance == enterprise trails' went_to == requests holding quota == the next round's
    available_before == the pool gauge, for every asset; every allocated unit and fen traced to a lot."""
    from prometheus_client import REGISTRY

    from services.quota.metrics import POOL

    rt, client = service
    book = _book(rt, retire_share_bp={"COD": 1500, "SO2": 2000, "LAND": 500},
                 price_fen_per_unit={"COD": 1_000_001, "LAND": 777})
    book.release("REL-A1", "COD", "1.3333", "2024-01-05", serial=1)
    book.release("REL-A2", "COD", "2.7777", "2024-01-03", serial=2)
    book.release("REL-A3", "COD", "0.9", "2024-01-03", serial=1)
    book.release("REL-S1", "SO2", "3.1", "2024-01-04", serial=3)
    book.release("REL-E1", "ENERGY", "12.345", "2024-01-04", serial=3)
    book.reclaim("GX-1", "2.5", "2024-01-02")
    book.book()
    book.release("REL-W", "COD", "5", "2024-01-01", serial=4)  # awaiting the ledger: incoming only
    for p, cls, tax in (("P1", "A", "200000"), ("P2", "B", "300000"), ("P3", "A", "150000"), ("P4", "C", "1")):
        book.evaluate(p, project_class=cls, tax=tax)
    book.request("Q1", "P1", COD="2.1", LAND="1")
    book.request("Q2", "P2", COD="1", SO2="1")
    book.request("Q3", "P3", COD="0.5", ENERGY="12.345")
    book.request("Q4", "P4", COD="100")
    run = client.post(f"/v1/counties/{C}/rounds", headers=ADMIN).json()
    assert [(d["request_id"], d["outcome"]) for d in run["decisions"]] == [
        ("Q1", "granted"), ("Q3", "granted"), ("Q2", "granted"), ("Q4", "insufficient")]
    for q in ("Q1", "Q2", "Q3"):
        book.pending(q)
    book.approve("P1", "COD")
    book.approve("P1", "LAND")
    book.approve("P2", "COD")

    pool = {a["asset"]: a for a in client.get(f"/v1/counties/{C}/pool", headers=ADMIN).json()["assets"]}
    lots = client.get(f"/v1/counties/{C}/lots", headers=ADMIN).json()["lots"]
    reqs = client.get("/v1/requests", params={"county_code": C}, headers=ADMIN).json()["requests"]
    prov = [client.get(f"/v1/projects/{p}/provenance", headers=ADMIN).json() for p in ("P1", "P2", "P3", "P4")]
    trails = [client.get(f"/v1/enterprises/{credit_code(C, s)}/freed", headers=ADMIN).json() for s in (1, 2, 3, 4)]
    POOL.runtime = rt  # the gauge reads this service's database
    gauge = {(s.labels["asset"], s.labels["figure"]): int(s.value) for m in REGISTRY.collect()
             if m.name == "countypool_quota_pool_units" for s in m.samples if s.labels["county"] == C}

    by_lot = {l["lot_id"]: l for l in lots}
    consumed = defaultdict(Decimal)
    for p in prov:
        for a in p["allocations"]:
            assert sum((_d(x["amount"]) for x in a["lots"]), Decimal(0)) == _d(a["amount"]), a
            assert sum((_d(x["amount_due"]) for x in a["lots"]), Decimal(0)) == _d(a["amount_due"]), a
            for x in a["lots"]:
                consumed[x["lot_id"]] += _d(x["amount"])
                assert (x["source_ref"], x["township_code"]) == (by_lot[x["lot_id"]]["source_ref"],
                                                                 by_lot[x["lot_id"]]["township_code"])
    for lot in lots:
        assert _d(lot["allocated"]) == consumed[lot["lot_id"]], lot
    for t in trails:
        for lot in t["lots"]:
            went = sum((_d(x["amount"]) for x in lot["went_to"]), Decimal(0))
            assert went == _d(by_lot[lot["lot_id"]]["allocated"]), lot
            assert (lot["amount"], lot["retired"], lot["remaining"]) == tuple(
                by_lot[lot["lot_id"]][k] for k in ("amount", "retired", "remaining"))

    nxt = client.post(f"/v1/counties/{C}/rounds", headers=ADMIN).json()  # nothing waiting: only figures
    for asset, f in pool.items():
        booked = [l for l in lots if l["asset"] == asset and l["ledger_state"] == "booked"]
        assert _d(f["released"]) == sum((_d(l["amount"]) for l in booked), Decimal(0)), asset
        assert _d(f["allocated"]) == sum((_d(l["allocated"]) for l in booked), Decimal(0)) == sum(
            (_d(v) for p in prov for a, v in p["totals"].items() if a == asset), Decimal(0)), asset
        assert _d(f["reserved"]) == sum((_d(x["amount"]) for r in reqs if r["state"] in ("reserving", "reserved")
                                         for x in r["lines"] if x["asset"] == asset), Decimal(0)), asset
        assert _d(f["available"]) + _d(f["reserved"]) == sum((_d(l["remaining"]) for l in booked), Decimal(0))
        assert nxt["available_before"][asset] == f["available"], asset
        scale = len(f["available"].split(".")[1])
        for figure in ("released", "retired", "allocated", "reserved", "available"):
            assert gauge.get((asset, figure)) == int(_d(f[figure]).scaleb(scale)), (asset, figure, gauge)
    assert (pool["COD"]["allocated"], pool["COD"]["reserved"], pool["COD"]["incoming"]) == (
        "3.1000", "0.5000", "5.0000")


ODD = ["x" * 5000, "中文ид😀", "a%00b", "..", " ", "\u200b", "-1", "9" * 40]


def test_odd_but_valid_ids_cursors_and_bounds_are_never_a_5xx(service):
    rt, client = service
    book = _book(rt)
    book.release("REL-1", "COD", "1", "2024-02-01")
    book.book()
    bad = []
    for o in ODD:
        for path, params in [
            (f"/v1/requests/{o}", {}), (f"/v1/releases/{o}", {}), (f"/v1/rounds/{o}", {}),
            (f"/v1/projects/{o}/provenance", {}), (f"/v1/enterprises/{o}/freed", {}),
            (f"/v1/reclamation-projects/{o}", {}), (f"/v1/counties/{o}/pool", {}),
            (f"/v1/counties/{C}/lots", {"after": o}), (f"/v1/counties/{C}/lots", {"asset": o}),
            ("/v1/requests", {"after": o}), ("/v1/requests", {"project_id": o}), ("/v1/requests", {"state": o}),
            ("/v1/requests", {"county_code": o}), (f"/v1/counties/{C}/rounds", {"before_seq": o}),
            (f"/v1/counties/{C}/rounds", {"limit": o}), (f"/v1/counties/{C}/lots", {"limit": o}),
        ]:
            r = client.get(path, params=params, headers=ADMIN)
            if r.status_code >= 500:
                bad.append((path[:60], {k: v[:30] for k, v in params.items()}, r.status_code, r.text[:200]))
    for limit in (1, 1000):
        assert client.get(f"/v1/counties/{C}/lots", params={"limit": limit}, headers=ADMIN).status_code == 200
        assert client.get("/v1/requests", params={"limit": limit}, headers=ADMIN).status_code == 200
    assert not bad, bad
