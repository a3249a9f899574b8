"""Review (dec02): a seeded random walk over ONE running quota service (PostgreSQL, beside the real ledger service on
real Kafka), every answer compared with a plain reference model kept here.

The model knows the county policy (retire shares, prices), lots (ceil(amount * bp / 10000) retired at intake, the
rest remaining), requests and their saga (requested -> reserved -> allocated; rejected, cancelled), rounds (priority:
class, tax per 亩, arrival, request id; each request whole or insufficient), approvals remembered per project, and
allocations consuming booked lots FIFO (lot date, lot id) with the money due round_half_up(amount * price) in fen
split over the lots by amount, the remainder to the first lot. After each step: pool per asset and county, every lot
(retired + allocated + remaining = amount), every request's state, provenance per project (allocation = sum of its
lots, due per lot), and reconciliation with the ledger (no difference once nothing is in flight). Every refused call
(4xx) is checked to change nothing (a full snapshot of the read API before and after); every call repeated with the
same id is checked idempotent. Boundary tests follow the walk: the exact pool and one unit more, two requests (and two
rounds) competing for the last unit, deadlines at their exact instant (the service's clock pinned), malformed
amounts and assets, projects not admitted or admitted without land."""
from __future__ import annotations

import random
from contextlib import ExitStack, contextmanager
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.integration.quota.harness import ECOLOGY, ENERGY, LAND, credit_code, new_county, platform
from tests.support.concurrency import together
from tests.support.pg import fresh_database
from tests.support.services import ADMIN, wait_for

SEED = 20241202
SCALE = {"COD": 4, "ENERGY": 3, "LAND": 4, "SO2": 4}
KIND = {"COD": "environmental_impact", "SO2": "environmental_impact", "ENERGY": "energy_review", "LAND": "land_use"}
DEPT = {"COD": ECOLOGY, "SO2": ECOLOGY, "ENERGY": ENERGY, "LAND": LAND}
KIND_AUTH = {"environmental_impact": ECOLOGY, "energy_review": ENERGY, "land_use": LAND}
ALL_ASSETS = ("LAND", "ENERGY", "COD", "NH3N", "SO2", "NOX", "VOCS")
ALL_SCALE = {"LAND": 4, "ENERGY": 3, "COD": 4, "NH3N": 4, "SO2": 4, "NOX": 4, "VOCS": 4}


@pytest.fixture(scope="module")
def plat(pg_server_url, kafka_bootstrap):
    """PostgreSQL only: the quota service and the ledger service, each on a fresh database of its own."""
    with ExitStack() as stack:
        quota_db = stack.enter_context(fresh_database(pg_server_url))
        ledger_db = stack.enter_context(fresh_database(pg_server_url))
        yield stack.enter_context(platform(quota_db, ledger_db, kafka_bootstrap))


# -- formatting as the API does (never floats) --------------------------------------------------------------------
def fmt(units: int, scale: int) -> str:
    sign = "-" if units < 0 else ""
    u = abs(units)
    return f"{sign}{u // 10 ** scale}.{u % 10 ** scale:0{scale}d}" if scale else f"{sign}{u}"


def q(asset: str, units: int) -> str:
    return fmt(units, ALL_SCALE[asset])


def cny(fen: int) -> str:
    return fmt(fen, 2)


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def due_fen(asset: str, units: int, price_fen: int) -> int:
    return int((Decimal(units) * price_fen / Decimal(10) ** ALL_SCALE[asset]).quantize(Decimal(1), ROUND_HALF_UP))


# -- the reference model ------------------------------------------------------------------------------------------
class Model:
    def __init__(self):
        self.policy: dict[str, dict] = {}  # county -> {"bp": {asset: bp}, "price": {asset: fen}, "towns": [...]}
        self.lots: dict[str, dict] = {}  # lot_id -> lot
        self.requests: dict[str, dict] = {}
        self.projects: dict[str, dict] = {}  # project -> {county, class, tax, land, admitted, approvals}
        self.allocations: dict[tuple[str, str], dict] = {}  # (request, asset) -> {amount, price, due, lots: [...]}
        self.releases: dict[str, dict] = {}  # release_id -> body
        self.reclamations: dict[str, dict] = {}

    def add_lot(self, county, lot_id, asset, amount, dated, township, source_kind, source_ref, earns, price=None):
        bp = self.policy[county]["bp"].get(asset, 0)
        retired = ceil_div(amount * bp, 10_000)
        self.lots[lot_id] = dict(county=county, asset=asset, amount=amount, retired=retired, remaining=amount - retired,
                                 dated=dated, township=township, source_kind=source_kind, source_ref=source_ref,
                                 earns=earns, buyback=price)

    def pool(self, county: str) -> dict[str, dict]:
        out = {a: dict(released=0, retired=0, allocated=0, reserved=0, remaining=0) for a in ALL_ASSETS}
        for lot in self.lots.values():
            if lot["county"] != county:
                continue
            f = out[lot["asset"]]
            f["released"] += lot["amount"]
            f["retired"] += lot["retired"]
            f["allocated"] += lot["amount"] - lot["retired"] - lot["remaining"]
            f["remaining"] += lot["remaining"]
        for r in self.requests.values():
            if r["county"] == county and r["state"] in ("reserving", "reserved"):
                for a, n in r["lines"]:
                    out[a]["reserved"] += n
        for f in out.values():
            f["available"] = f.pop("remaining") - f["reserved"]
        return out

    def available(self, county: str) -> dict[str, int]:
        return {a: f["available"] for a, f in self.pool(county).items()}

    def round(self, county: str) -> list[tuple]:
        """Decisions (request, outcome, reason, shortfalls) in rank order; states moved (granted -> reserved)."""
        waiting = [r for r in self.requests.values() if r["county"] == county and r["state"] == "requested"]
        klass = {"A": 0, "B": 1, "C": 2, "D": 3}

        def key(r):
            p = self.projects[r["project"]]
            return (klass.get(p["class"], 4), -p["tax_fen"], r["requested_at"], r["id"])

        left = self.available(county)
        out = []
        for r in sorted(waiting, key=key):
            short = [(a, q(a, n), q(a, left[a])) for a, n in r["lines"] if n > left[a]]
            if short:
                r["state"], r["reason"] = "rejected", "insufficient_quota"
                out.append((r["id"], "insufficient", "insufficient_quota", short))
                continue
            for a, n in r["lines"]:
                left[a] -= n
            r["state"] = "reserved"
            out.append((r["id"], "granted", "granted", []))
        return out

    def ready(self, r) -> bool:
        return r["state"] == "reserved" and {KIND[a] for a, _ in r["lines"]} <= self.projects[r["project"]]["approvals"]

    def allocate(self, rid: str) -> None:
        r = self.requests[rid]
        price = self.policy[r["county"]]["price"]
        towns = self.policy[r["county"]].get("towns") or []
        for a, n in r["lines"]:
            lots = sorted((lid for lid, lot in self.lots.items()
                           if lot["county"] == r["county"] and lot["asset"] == a and lot["remaining"] > 0),
                          key=lambda lid: (towns.index(self.lots[lid]["township"]) if self.lots[lid]["township"] in
                                           towns else len(towns), self.lots[lid]["dated"], lid))
            need, taken = n, []
            for lid in lots:
                if not need:
                    break
                part = min(need, self.lots[lid]["remaining"])
                self.lots[lid]["remaining"] -= part
                taken.append((lid, part))
                need -= part
            assert need == 0, f"model: lots short for {rid}"
            due = due_fen(a, n, price.get(a, 0))
            shares = [due * part // n for _, part in taken]
            shares[0] += due - sum(shares)
            self.allocations[(rid, a)] = dict(amount=n, price=price.get(a, 0), due=due,
                                              lots=[(lid, part, s) for (lid, part), s in zip(taken, shares)])
        r["state"] = "allocated"


# -- reading the service ------------------------------------------------------------------------------------------
class World:
    def __init__(self, plat, model: Model, counties: list[str]):
        self.plat, self.m, self.counties = plat, model, counties
        self.c = plat.quota

    def get(self, path: str) -> dict:
        r = self.c.get(path, headers=ADMIN)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        return r.json()

    def snapshot(self) -> dict:
        """Everything the read API says of our counties, projects, requests, releases and reclamation projects."""
        snap = {}
        for c in self.counties:
            snap[f"policy/{c}"] = self.get(f"/v1/counties/{c}/policy")
            snap[f"pool/{c}"] = self.get(f"/v1/counties/{c}/pool")
            snap[f"lots/{c}"] = self.get(f"/v1/counties/{c}/lots?limit=1000")
            snap[f"requests/{c}"] = self.get(f"/v1/requests?county_code={c}&limit=1000")
            snap[f"rounds/{c}"] = self.get(f"/v1/counties/{c}/rounds?limit=200")
        for p in sorted(self.m.projects):
            r = self.c.get(f"/v1/projects/{p}/provenance", headers=ADMIN)
            snap[f"prov/{p}"] = (r.status_code, r.json())
        for rid in sorted(self.m.releases):
            snap[f"release/{rid}"] = self.get(f"/v1/releases/{rid}")
        for pid in sorted(self.m.reclamations):
            snap[f"reclamation/{pid}"] = self.get(f"/v1/reclamation-projects/{pid}")
        return snap

    def refused(self, call, status: int, reason: str | None = None, what: str = ""):
        """A call that must be refused with ``status`` (and error ``reason``) and change nothing."""
        before = self.snapshot()
        r = call()
        assert r.status_code == status, f"{what}: expected {status}, got {r.status_code} {r.text}"
        if reason is not None:
            body = r.json()
            got = body.get("error", {}).get("code") if isinstance(body.get("error"), dict) else body.get("code")
            got = got or body.get("reason") or str(body)
            assert reason in str(body), f"{what}: expected reason {reason}, got {body}"
        after = self.snapshot()
        changed = [k for k in before if before[k] != after.get(k)]
        assert not changed, f"DEFECT: refused call ({what}, {r.status_code}) changed {changed}"
        return r

    def quiesce(self) -> None:
        """Nothing of ours on its way to or from the ledger (no transfer of our counties unanswered, the outbox sent):
        no lot awaiting its booking, no request reserving, no post or void unanswered."""
        from sqlalchemy import text

        def calm():
            if self.plat.quota_rt.relay.backlog():
                return False
            with self.plat.quota_rt.db.engine.connect() as conn:
                n = conn.execute(text("select count(*) from ledger_transfers where state = 'asked' and county_code in "
                                      "(" + ",".join(f"'{c}'" for c in self.counties) + ")")).scalar()
            return n == 0
        wait_for(calm, timeout=30, interval=0.03, what="quiet: nothing in flight")

    def compare_extras(self) -> None:
        """Lots paged and filtered as the full list says; each enterprise's trail as the lots and allocations."""
        m = self.m
        for c in self.counties:
            full = self.get(f"/v1/counties/{c}/lots?limit=1000")["lots"]
            paged, after = [], None
            while True:
                page = self.get(f"/v1/counties/{c}/lots?limit=3" + (f"&after={after}" if after else ""))
                paged += page["lots"]
                after = page["next_after"]
                if not after:
                    break
            assert paged == full, f"lots paged differ from the full list in {c}"
            left = self.get(f"/v1/counties/{c}/lots?limit=1000&with_remaining=true")["lots"]
            assert [x["lot_id"] for x in left] == [x["lot_id"] for x in full if Decimal(x["remaining"]) > 0], \
                "with_remaining does not list the lots with something remaining"
            for asset in ("COD", "LAND"):
                only = self.get(f"/v1/counties/{c}/lots?limit=1000&asset={asset}")["lots"]
                assert [x["lot_id"] for x in only] == [x["lot_id"] for x in full if x["asset"] == asset]
        went: dict[str, list] = {}
        for (rid, a), e in m.allocations.items():
            for lid, part, _ in e["lots"]:
                went.setdefault(lid, []).append((m.requests[rid]["project"], rid, q(a, part)))
        for rid, body in sorted(m.releases.items()):
            trail = self.get(f"/v1/enterprises/{body['enterprise_credit_code']}/freed")
            (lot,) = trail["lots"]
            ml = m.lots[lot["lot_id"]]
            assert (lot["amount"], lot["retired"], lot["remaining"]) == \
                (q(ml["asset"], ml["amount"]), q(ml["asset"], ml["retired"]), q(ml["asset"], ml["remaining"])), lot
            got = sorted((x["project_id"], x["request_id"], x["amount"]) for x in lot["went_to"])
            assert got == sorted(went.get(lot["lot_id"], [])), f"trail of {rid}: {got}"

    def newly_allocated_order(self, expected: list[str]) -> list[str]:
        """The order the service allocated ``expected`` in (async answers): by allocated_at, then request id."""
        at = {}
        for rid in expected:
            p = self.m.requests[rid]["project"]
            prov = self.get(f"/v1/projects/{p}/provenance")
            times = [c["allocated_at"] for a in prov["allocations"] if a["request_id"] == rid for c in a["lots"]]
            assert times, f"DEFECT: {rid} allocated but its provenance lists no lot: {prov}"
            at[rid] = min(times)
        return sorted(expected, key=lambda rid: (at[rid], rid))

    def compare(self, step: str) -> None:
        m = self.m
        for c in self.counties:
            pool = {a["asset"]: a for a in self.get(f"/v1/counties/{c}/pool")["assets"]}
            for asset, f in m.pool(c).items():
                got = pool[asset]
                exp = {k: q(asset, v) for k, v in f.items()}
                have = {k: got[k] for k in exp}
                assert have == exp, f"[{step}] county {c} pool {asset}: service {have} != model {exp}"
                assert Decimal(got["released"]) == Decimal(got["retired"]) + Decimal(got["allocated"]) + \
                    Decimal(got["reserved"]) + Decimal(got["available"]), f"[{step}] pool identity broken: {got}"
            lots = {lot["lot_id"]: lot for lot in self.get(f"/v1/counties/{c}/lots?limit=1000")["lots"]}
            mine = {lid: lot for lid, lot in m.lots.items() if lot["county"] == c}
            assert set(lots) == set(mine), f"[{step}] county {c} lots: service {sorted(lots)} != model {sorted(mine)}"
            for lid, lot in mine.items():
                got, a = lots[lid], lot["asset"]
                exp = dict(amount=q(a, lot["amount"]), retired=q(a, lot["retired"]), remaining=q(a, lot["remaining"]),
                           allocated=q(a, lot["amount"] - lot["retired"] - lot["remaining"]), asset=a,
                           dated=lot["dated"].isoformat(), township_code=lot["township"],
                           source_kind=lot["source_kind"], source_ref=lot["source_ref"],
                           earns_compensation=lot["earns"], ledger_state="booked",
                           buyback_price_per_unit=lot["buyback"])
                have = {k: got[k] for k in exp}
                assert have == exp, f"[{step}] lot {lid}: service {have} != model {exp}"
                assert Decimal(got["retired"]) + Decimal(got["allocated"]) + Decimal(got["remaining"]) == \
                    Decimal(got["amount"]), f"[{step}] lot {lid} does not add up: {got}"
            reqs = {r["request_id"]: r for r in self.get(f"/v1/requests?county_code={c}&limit=1000")["requests"]}
            mine_r = {rid: r for rid, r in m.requests.items() if r["county"] == c}
            assert {k: v["state"] for k, v in reqs.items()} == {k: v["state"] for k, v in mine_r.items()}, \
                f"[{step}] county {c} request states differ"
        for p in sorted(m.projects):
            r = self.c.get(f"/v1/projects/{p}/provenance", headers=ADMIN)
            assert r.status_code == 200, f"[{step}] provenance of {p}: {r.status_code} {r.text}"
            prov = r.json()
            exp_allocs = sorted((rid, a) for (rid, a) in m.allocations if m.requests[rid]["project"] == p)
            got_allocs = [(x["request_id"], x["asset"]) for x in prov["allocations"]]
            assert got_allocs == exp_allocs, f"[{step}] {p} allocations: {got_allocs} != {exp_allocs}"
            totals: dict[str, int] = {}
            for x in prov["allocations"]:
                e = m.allocations[(x["request_id"], x["asset"])]
                a = x["asset"]
                totals[a] = totals.get(a, 0) + e["amount"]
                exp = dict(amount=q(a, e["amount"]), price_per_unit=cny(e["price"]), amount_due=cny(e["due"]),
                           lots=[(lid, q(a, part), cny(s)) for lid, part, s in e["lots"]])
                have = dict(amount=x["amount"], price_per_unit=x["price_per_unit"], amount_due=x["amount_due"],
                            lots=[(c["lot_id"], c["amount"], c["amount_due"]) for c in x["lots"]])
                assert have == exp, f"[{step}] provenance {x['request_id']}/{a}: service {have} != model {exp}"
                assert sum(Decimal(c["amount"]) for c in x["lots"]) == Decimal(x["amount"]), \
                    f"[{step}] allocation {x['request_id']}/{a} is not the sum of its lots"
                assert sum(Decimal(c["amount_due"]) for c in x["lots"]) == Decimal(x["amount_due"]), \
                    f"[{step}] dues of {x['request_id']}/{a} do not sum to the line's due"
                for c in x["lots"]:
                    lot = m.lots[c["lot_id"]]
                    assert (c["source_ref"], c["township_code"], c["earns_compensation"]) == \
                        (lot["source_ref"], lot["township"], lot["earns"]), f"[{step}] provenance of {c['lot_id']}"
            assert prov["totals"] == {a: q(a, n) for a, n in sorted(totals.items())}, f"[{step}] {p} totals"
        for c in self.counties:
            rec = self.plat.reconciliation(c)
            assert rec["settled"] and rec["in_flight"] == 0, f"[{step}] reconciliation not settled: {rec}"
            assert rec["agrees"] and rec["differences"] == [], f"[{step}] county {c} differs from the ledger: {rec}"


# -- the walk ----------------------------------------------------------------------------------------------------
def _rand_date(rng) -> date:
    return date(2020, 1, 1) + timedelta(days=rng.randrange(0, 5 * 365))


def test_seeded_random_walk_against_the_model(plat):
    rng = random.Random(SEED)
    counties = [new_county(), new_county()]
    m = Model()
    w = World(plat, m, counties)
    c = w.c
    policy_doc = {}
    for county in counties:
        bp = {"COD": rng.choice([0, 2000, 3333]), "ENERGY": rng.choice([0, 1000]), "LAND": rng.choice([0, 500])}
        price = {"COD": rng.choice([12000_00, 3333_33]), "ENERGY": rng.choice([0, 1234_57]), "LAND": 88888_89}
        m.policy[county] = {"bp": dict(bp), "price": dict(price)}
        policy_doc[county] = dict(retire_share_bp=bp, prices={a: cny(p) for a, p in price.items()}, verification="accept")
        plat.policy(county, **policy_doc[county])
    # projects: class, tax per 亩 and land vary (the round's order); one not admitted, one admitted without land
    plist = []
    for i, county in enumerate(counties):
        for j in range(4):
            pid = f"P{county}-{j}"
            klass, tax = rng.choice(["A", "B"]), rng.choice(["150000.00", "200000.00", "150000.01"])
            admitted, land = j != 3, j != 2
            m.projects[pid] = dict(county=county, **{"class": klass}, tax_fen=int(Decimal(tax) * 100), land=land,
                                   admitted=admitted, approvals=set())
            plat.admit(county, pid, admitted=admitted, project_class=klass, tax_per_mu=tax, land_quota_allowed=land)
            plist.append(pid)
    for pid in plist:
        plat.wait_project(pid, admitted=m.projects[pid]["admitted"])
    w.quiesce()
    w.compare("start")

    serial = 0
    nreq = 0
    stats = {"rounds": 0, "insufficient": 0, "approvals": 0}
    steps = 56
    for step in range(steps):
        county = rng.choice(counties)
        kind = rng.choices(["release", "release_again", "reclaim", "request", "request_bad", "request_again", "round",
                            "approval", "cancel", "policy"], weights=[16, 4, 4, 24, 7, 4, 16, 16, 6, 3])[0]
        label = f"step {step} {kind} {county}"
        if kind == "release":
            serial += 1
            asset = rng.choice(["COD", "ENERGY", "LAND"])
            amount = rng.randint(1, 300_000 if asset != "ENERGY" else 30_000)
            reason = rng.choice(["closure", "relocation", "bankruptcy", "upgrade_savings"])
            paid = rng.random() < 0.4
            rid = f"R{county}-{serial}"
            township = f"{county}1{rng.randrange(0, 3):02d}"
            body = dict(release_id=rid, enterprise_credit_code=credit_code(county, serial), township_code=township,
                        county_code=county, asset=asset, amount=q(asset, amount), reason=reason,
                        basis="paid" if paid else "free", document_ref=f"doc-{serial}",
                        released_on=_rand_date(rng).isoformat())
            if paid:
                body["buyback_price_per_unit"] = cny(rng.randint(1, 5_000_000))
            r = c.post("/v1/releases", headers=DEPT[asset], json=body)
            assert r.status_code == 201 and r.json()["status"] == "accepted", f"{label}: {r.text}"
            m.releases[rid] = body
            m.add_lot(county, f"release:{rid}", asset, amount, date.fromisoformat(body["released_on"]), township,
                      "enterprise", body["enterprise_credit_code"], reason != "upgrade_savings",
                      body.get("buyback_price_per_unit"))
        elif kind == "release_again":
            if not m.releases:
                continue
            rid = rng.choice(sorted(m.releases))
            body = dict(m.releases[rid])
            asset = body["asset"]
            before = w.snapshot()
            # the same body, its amount written as the service answers it or with trailing zeros: 200, nothing new
            body2 = dict(body, amount=body["amount"] + "00") if rng.random() < 0.5 else body
            r = c.post("/v1/releases", headers=DEPT[asset], json=body2)
            assert r.status_code == 200, f"{label}: a release sent again answered {r.status_code} {r.text}"
            assert w.snapshot() == before, f"DEFECT [{label}]: a release sent again changed something"
            other = dict(body, amount=q(asset, int(Decimal(body["amount"]) * 10 ** ALL_SCALE[asset]) + 1))
            w.refused(lambda: c.post("/v1/releases", headers=DEPT[asset], json=other), 409, "release_id_reused",
                      f"{label} reused id")
        elif kind == "reclaim":
            serial += 1
            pid = f"RC{county}-{serial}"
            area = rng.randint(10, 200_000)
            township = f"{county}1{rng.randrange(0, 3):02d}"
            r = c.post("/v1/reclamation-projects", headers=ADMIN, json=dict(
                project_id=pid, county_code=county, township_code=township, area=q("LAND", area)))
            assert r.status_code == 201, f"{label}: {r.text}"
            m.reclamations[pid] = {}
            accepted = rng.randint(1, area)
            on = _rand_date(rng)
            # more than registered: refused, nothing changed
            w.refused(lambda: c.post(f"/v1/reclamation-projects/{pid}/acceptance", headers=LAND, json=dict(
                accepted_on=on.isoformat(), accepted_area=q("LAND", area + 1))), 422, "accepted_area_out_of_range",
                f"{label} acceptance above the area")
            r = c.post(f"/v1/reclamation-projects/{pid}/acceptance", headers=LAND,
                       json=dict(accepted_on=on.isoformat(), accepted_area=q("LAND", accepted)))
            assert r.status_code == 200 and r.json()["state"] == "accepted", f"{label}: {r.text}"
            m.add_lot(county, f"reclamation:{pid}", "LAND", accepted, on, township, "reclamation", pid, False)
            w.quiesce()
            before = w.snapshot()
            r = c.post(f"/v1/reclamation-projects/{pid}/acceptance", headers=LAND,
                       json=dict(accepted_on=on.isoformat(), accepted_area=q("LAND", accepted)))
            assert r.status_code == 200, f"{label}: the same acceptance again: {r.text}"
            assert w.snapshot() == before, f"DEFECT [{label}]: the same acceptance again changed something"
            if accepted > 1:
                w.refused(lambda: c.post(f"/v1/reclamation-projects/{pid}/acceptance", headers=LAND, json=dict(
                    accepted_on=on.isoformat(), accepted_area=q("LAND", accepted - 1))), 409,
                    "reclamation_already_accepted", f"{label} acceptance corrected")
        elif kind in ("request", "request_bad"):
            projects = [p for p in plist if m.projects[p]["county"] == county]
            pid = rng.choice([p for p in projects if m.projects[p]["admitted"]])
            nreq += 1
            rid = f"Q{county}-{nreq}"
            avail = m.available(county)
            assets = rng.sample(["COD", "ENERGY", "LAND"], rng.randint(1, 2))
            if not m.projects[pid]["land"] and "LAND" in assets and kind == "request":
                assets.remove("LAND")
                assets = assets or ["COD"]
            lines = []
            for a in assets:
                top = max(avail[a], 1)
                n = rng.choice([rng.randint(1, top), top, avail[a] + 1, max(1, top // 3), max(1, top // 5),
                                max(1, top // 4)])
                lines.append((a, max(n, 1)))
            body = dict(request_id=rid, project_id=pid, county_code=county,
                        lines=[{"asset": a, "amount": q(a, n)} for a, n in lines])
            if kind == "request_bad":
                bad = rng.choice(["zero", "negative", "scale", "unknown_asset", "unknown_project", "not_admitted",
                                  "no_land", "other_county", "dup_asset", "text"])
                b = dict(body, lines=[dict(x) for x in body["lines"]])
                status, reason = 422, None
                if bad == "zero":
                    b["lines"][0]["amount"] = "0"
                elif bad == "negative":
                    b["lines"][0]["amount"] = "-1.5"
                elif bad == "scale":
                    b["lines"][0]["amount"] = "1." + "0" * ALL_SCALE[b["lines"][0]["asset"]] + "1"
                    reason = "amount_exceeds_scale"
                elif bad == "unknown_asset":
                    b["lines"][0]["asset"] = "CO2"
                    reason = "unknown_asset"
                elif bad == "unknown_project":
                    b["project_id"] = f"P{county}-nobody"
                    status, reason = 409, "project_unknown"
                elif bad == "not_admitted":
                    b["project_id"] = f"P{county}-3"
                    status, reason = 409, "project_not_admitted"
                elif bad == "no_land":
                    b["project_id"] = f"P{county}-2"
                    b["lines"] = [{"asset": "LAND", "amount": "1"}]
                    status, reason = 409, "land_not_allowed_for_class"
                elif bad == "other_county":
                    b["county_code"] = [x for x in counties if x != county][0]
                    status, reason = 409, "project_in_other_county"
                elif bad == "dup_asset":
                    b["lines"] = [{"asset": "COD", "amount": "1"}, {"asset": "COD", "amount": "2"}]
                    reason = "duplicate_asset_line"
                else:
                    b["lines"][0]["amount"] = "1e3"
                w.refused(lambda: c.post("/v1/requests", headers=ADMIN, json=b), status, reason, f"{label} {bad}")
                nreq -= 1
                continue
            r = c.post("/v1/requests", headers=ADMIN, json=body)
            assert r.status_code == 201 and r.json()["state"] == "requested", f"{label}: {r.text}"
            m.requests[rid] = dict(id=rid, project=pid, county=county, lines=lines, state="requested",
                                   requested_at=r.json()["requested_at"], body=body)
        elif kind == "request_again":
            if not m.requests:
                continue
            rid = rng.choice(sorted(m.requests))
            req = m.requests[rid]
            before = w.snapshot()
            r = c.post("/v1/requests", headers=ADMIN, json=req["body"])
            assert r.status_code == 200 and r.json()["state"] == req["state"], f"{label}: {r.status_code} {r.text}"
            assert w.snapshot() == before, f"DEFECT [{label}]: a request sent again changed something"
            other = dict(req["body"], lines=[dict(x) for x in req["body"]["lines"]])
            other["lines"][0]["amount"] = q(other["lines"][0]["asset"], req["lines"][0][1] + 1)
            w.refused(lambda: c.post("/v1/requests", headers=ADMIN, json=other), 409, "request_id_reused",
                      f"{label} reused id")
        elif kind == "round":
            expected = m.round(county)
            r = c.post(f"/v1/counties/{county}/rounds", headers=ADMIN)
            assert r.status_code == 201, f"{label}: {r.text}"
            got = [(d["request_id"], d["outcome"], d["reason"],
                    [(s["asset"], s["requested"], s["available"]) for s in d["shortfalls"]])
                   for d in r.json()["decisions"]]
            assert got == expected, f"[{label}] round decisions: service {got} != model {expected}"
            again = w.get(f"/v1/rounds/{r.json()['round_id']}")
            assert again["reproducible"] is True and again["decisions"] == r.json()["decisions"], \
                f"DEFECT [{label}]: round not reproducible: {again}"
            stats["rounds"] += 1
            stats["insufficient"] += sum(1 for x in expected if x[1] == "insufficient")
            w.quiesce()
            ready = [x[0] for x in expected if x[1] == "granted" and m.ready(m.requests[x[0]])]
            for rid in w.newly_allocated_order(ready) if ready else []:
                m.allocate(rid)
        elif kind == "approval":
            projects = [p for p in plist if m.projects[p]["county"] == county and m.projects[p]["admitted"]]
            pid = rng.choice(projects)
            kind_ = rng.choice(sorted(KIND_AUTH))
            held = sorted(rid for rid, x in m.requests.items() if x["county"] == county and x["state"] == "reserved")
            if held and rng.random() < 0.8:  # mostly an approval a reservation waits for
                x = m.requests[rng.choice(held)]
                pid = x["project"]
                missing = sorted({KIND[a] for a, _ in x["lines"]} - m.projects[pid]["approvals"])
                kind_ = rng.choice(missing or sorted(KIND_AUTH))
            w.refused(lambda: c.post("/v1/approvals", headers=KIND_AUTH[kind_], json=dict(
                project_id=pid, kind=kind_, granted_on=(date.today() + timedelta(days=2)).isoformat())), 422,
                "date_implausible", f"{label} approval granted in the future")
            r = c.post("/v1/approvals", headers=KIND_AUTH[kind_], json=dict(
                project_id=pid, kind=kind_, granted_on="2024-03-01", document_ref="appr"))
            assert r.status_code == 200, f"{label}: {r.text}"
            m.projects[pid]["approvals"].add(kind_)
            stats["approvals"] += 1
            for rid in sorted(rid for rid, x in m.requests.items() if x["project"] == pid and m.ready(x)):
                m.allocate(rid)
            # again: nothing changes
            w.quiesce()
            before = w.snapshot()
            r = c.post("/v1/approvals", headers=KIND_AUTH[kind_], json=dict(
                project_id=pid, kind=kind_, granted_on="2024-03-01", document_ref="appr"))
            assert r.status_code == 200, f"{label} again: {r.text}"
            w.quiesce()
            assert w.snapshot() == before, f"DEFECT [{label}]: the same approval again changed something"
        elif kind == "cancel":
            mine = sorted(rid for rid, x in m.requests.items() if x["county"] == county)
            if not mine:
                continue
            rid = rng.choice(mine)
            req = m.requests[rid]
            if req["state"] in ("requested", "reserved"):
                r = c.post(f"/v1/requests/{rid}/cancel", headers=ADMIN, json={"reason": "walk"})
                assert r.status_code == 200 and r.json()["state"] == "cancelled", f"{label}: {r.text}"
                req["state"] = "cancelled"
            else:
                w.refused(lambda: c.post(f"/v1/requests/{rid}/cancel", headers=ADMIN), 409, "request_closed",
                          f"{label} closed {req['state']}")
        elif kind == "policy":
            doc = dict(policy_doc[county])
            doc["retire_share_bp"] = {"COD": rng.choice([0, 1500, 2500]), "ENERGY": rng.choice([0, 777]),
                                      "LAND": rng.choice([0, 1])}
            doc["prices"] = {"COD": cny(rng.randint(1, 2_000_000)), "ENERGY": cny(rng.randint(0, 500_000)),
                             "LAND": cny(rng.randint(1, 9_000_000))}
            # an invalid one first: refused, nothing changed
            bad = dict(doc, retire_share_bp={"COD": 10_001})
            w.refused(lambda: c.put(f"/v1/counties/{county}/policy", headers=ADMIN, json=bad), 422, None,
                      f"{label} retire share above 100 %")
            towns = []
            if rng.random() < 0.5:
                towns = rng.sample([f"{county}1{i:02d}" for i in range(3)], rng.randint(1, 3))
                doc.update(consumption_order="township_order", township_order=towns)
            else:
                doc.update(consumption_order="fifo", township_order=[])
            plat.policy(county, **doc)
            policy_doc[county] = doc
            m.policy[county] = {"bp": dict(doc["retire_share_bp"]), "towns": towns,
                                "price": {a: int(Decimal(p) * 100) for a, p in doc["prices"].items()}}
        w.quiesce()
        w.compare(label)
    allocated = sum(1 for x in m.requests.values() if x["state"] == "allocated")
    print("walk:", stats, {st: sum(1 for x in m.requests.values() if x["state"] == st) for st in
                           ("requested", "reserved", "allocated", "rejected", "cancelled")})
    assert allocated >= 3 and stats["insufficient"] >= 2 and stats["rounds"] >= 5, (allocated, stats)
    w.compare_extras()


# -- boundaries ----------------------------------------------------------------------------------------------------
def _ready_county(plat, county: str, amount: str, projects: list[str], **policy) -> None:
    plat.policy(county, verification="accept", retire_share_bp={}, **policy)
    assert plat.release(county, f"R{county}-1", "COD", amount).status_code == 201
    for p in projects:
        plat.admit(county, p)
    for p in projects:
        plat.wait_project(p)
    plat.wait_booked(county, "COD", fmt(int(Decimal(amount) * 10_000), 4))


def test_request_for_exactly_the_pool_then_one_unit_more(plat):
    county = new_county()
    p = f"P{county}-1"
    _ready_county(plat, county, "7.0001", [p])
    plat.request(county, f"Q{county}-more", p, COD="7.0002")
    d = plat.round(county)["decisions"]
    assert [(x["outcome"], x["shortfalls"]) for x in d] == \
        [("insufficient", [{"asset": "COD", "requested": "7.0002", "available": "7.0001"}])], d
    plat.request(county, f"Q{county}-all", p, COD="7.0001")
    d = plat.round(county)["decisions"]
    assert [(x["request_id"], x["outcome"]) for x in d] == [(f"Q{county}-all", "granted")], d
    plat.wait_state(f"Q{county}-all", "reserved")
    pool = plat.pool(county)["COD"]
    assert (pool["available"], pool["reserved"]) == ("0.0000", "7.0001"), pool
    plat.request(county, f"Q{county}-one", p, COD="0.0001")
    d = plat.round(county)["decisions"]
    assert [(x["outcome"], x["shortfalls"]) for x in d] == \
        [("insufficient", [{"asset": "COD", "requested": "0.0001", "available": "0.0000"}])], d
    r = plat.quota.post("/v1/approvals", headers=ECOLOGY, json=dict(project_id=p, kind="environmental_impact",
                                                                  granted_on="2024-03-01"))
    assert r.status_code == 200, r.text
    plat.wait_state(f"Q{county}-all", "allocated")
    pool = plat.pool(county)["COD"]
    assert (pool["available"], pool["reserved"], pool["allocated"]) == ("0.0000", "0.0000", "7.0001"), pool
    rec = plat.wait_reconciled(county)
    assert rec["differences"] == [], rec


def test_two_requests_and_two_rounds_compete_for_the_last_unit(plat):
    county = new_county()
    ps = [f"P{county}-{i}" for i in range(4)]
    _ready_county(plat, county, "0.0002", ps)
    # one round: both ask the last unit after one was taken; the earlier arrival wins (same class, same tax)
    plat.request(county, f"Q{county}-a", ps[0], COD="0.0001")
    plat.round(county)
    plat.request(county, f"Q{county}-z", ps[1], COD="0.0001")
    plat.request(county, f"Q{county}-b", ps[2], COD="0.0001")
    d = plat.round(county)["decisions"]
    assert [(x["request_id"], x["outcome"]) for x in d] == \
        [(f"Q{county}-z", "granted"), (f"Q{county}-b", "insufficient")], d
    plat.wait_state(f"Q{county}-z", "reserved")
    # cancel one: the last unit is free again; two requests, two rounds at once: exactly one is granted
    r = plat.quota.post(f"/v1/requests/Q{county}-z/cancel", headers=ADMIN)
    assert r.status_code == 200, r.text
    wait_for(lambda: plat.pool(county)["COD"]["available"] == "0.0001", what="the unit back")
    plat.request(county, f"Q{county}-c", ps[3], COD="0.0001")
    plat.request(county, f"Q{county}-d", ps[0], COD="0.0001")
    out = together([lambda: plat.quota.post(f"/v1/counties/{county}/rounds", headers=ADMIN) for _ in range(2)])
    assert all(getattr(x, "status_code", None) == 201 for x in out), out
    granted = [x["request_id"] for r in out for x in r.json()["decisions"] if x["outcome"] == "granted"]
    assert granted == [f"Q{county}-c"], f"DEFECT: the last unit was granted to {granted}"
    plat.wait_state(f"Q{county}-c", "reserved")
    pool = plat.pool(county)["COD"]
    assert (pool["available"], pool["reserved"]) == ("0.0000", "0.0002"), pool  # Q-a and Q-c hold one unit each
    assert plat.wait_reconciled(county)["differences"] == []


@contextmanager
def pinned_clock(at: dict):
    """The quota service's clock (every use case's ``now``, the expiry job's) reads at["now"]."""
    import services.quota.application.tx as tx_mod
    import services.quota.background as bg_mod
    import services.quota.batch as batch_mod

    saved = (tx_mod.utcnow, bg_mod.utcnow, batch_mod.utcnow)
    clock = lambda: at["now"]  # noqa: E731
    tx_mod.utcnow = bg_mod.utcnow = batch_mod.utcnow = clock
    try:
        yield
    finally:
        tx_mod.utcnow, bg_mod.utcnow, batch_mod.utcnow = saved


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_reservation_and_request_deadlines_at_their_exact_instant(plat):
    county = new_county()
    ps = [f"P{county}-{i}" for i in range(3)]
    _ready_county(plat, county, "10", ps, reservation_timeout_seconds=100, request_wait_seconds=300)
    for i in range(2):
        plat.request(county, f"Q{county}-{i}", ps[i], COD="1")
    rnd = plat.round(county)
    for i in range(2):
        plat.wait_state(f"Q{county}-{i}", "reserved")
    reqs = [plat.get_request(f"Q{county}-{i}") for i in range(2)]
    for r in reqs:
        assert _dt(r["deadline"]) == _dt(rnd["ran_at"]) + timedelta(seconds=100), (r["deadline"], rnd["ran_at"])
    deadline = _dt(reqs[0]["deadline"])
    r2 = plat.request(county, f"Q{county}-w", ps[2], COD="1").json()
    assert _dt(r2["deadline"]) == _dt(r2["requested_at"]) + timedelta(seconds=300), r2
    at = {"now": deadline - timedelta(microseconds=1)}
    with pinned_clock(at):
        # a microsecond before the deadline: the approval allocates
        r = plat.quota.post("/v1/approvals", headers=ECOLOGY, json=dict(
            project_id=ps[0], kind="environmental_impact", granted_on="2024-03-01"))
        assert r.status_code == 200 and r.json()["requests"][0]["state"] == "allocated", r.text
        # at the deadline exactly: the reservation holds nothing any more (now >= deadline), the approval cannot
        # allocate it
        at["now"] = deadline
        r = plat.quota.post("/v1/approvals", headers=ECOLOGY, json=dict(
            project_id=ps[1], kind="environmental_impact", granted_on="2024-03-01"))
        assert r.status_code == 200, r.text
        assert plat.get_request(f"Q{county}-1")["state"] == "expired", \
            f"DEFECT: a reservation was allocated at its exact deadline: {r.text}"
        # the waiting request, a microsecond before its deadline, is still decided; at it, expired by the round
        at["now"] = _dt(r2["deadline"])
        rnd2 = plat.round(county)
        assert rnd2["expired_before"] == [f"Q{county}-w"] and rnd2["decisions"] == [], rnd2
    pool = plat.pool(county)["COD"]
    assert (pool["allocated"], pool["reserved"], pool["available"]) == ("1.0000", "0.0000", "9.0000"), pool
    rec = plat.wait_reconciled(county)
    assert rec["differences"] == [], rec
    assert plat.ledger_balance(f"county:{county}/pool/COD")["debits_pending"] == "0.0000"


@pytest.mark.parametrize("amount, reason", [
    ("0", None), ("0.0000", None), ("-1", "amount_must_not_be_negative"), ("-0.0001", None),
    ("1.00001", "amount_exceeds_scale"), ("1e2", None), ("NaN", None), ("Infinity", None), (" ", None),
    ("99999999999999999999999999999999", None), ("999999999999999999999999999999", "amount_too_large"),
])
def test_malformed_amounts_are_refused_and_change_nothing(plat, amount, reason):
    county = new_county()
    p = f"P{county}-1"
    _ready_county(plat, county, "5", [p])
    m = Model()
    m.projects[p] = {}
    w = World(plat, m, [county])
    c = w.c
    w.refused(lambda: plat.request(county, f"Q{county}-x", p, COD=amount), 422, reason, f"request amount {amount!r}")
    body = dict(release_id=f"R{county}-x", enterprise_credit_code=credit_code(county, 2), township_code=f"{county}100",
                county_code=county, asset="COD", amount=amount, reason="closure", basis="free", document_ref="d",
                released_on="2024-02-01")
    w.refused(lambda: c.post("/v1/releases", headers=ECOLOGY, json=body), 422, reason, f"release amount {amount!r}")
    assert c.get(f"/v1/releases/R{county}-x", headers=ADMIN).status_code == 404
    w.refused(lambda: c.post("/v1/releases", headers=ADMIN, json=dict(body, amount="1", asset="CO2")), 422, None,
              "release of an unknown asset")
    w.refused(lambda: c.get(f"/v1/counties/{county}/lots?asset=CO2", headers=ADMIN), 422, "unknown_asset",
              "lots of an unknown asset")
    w.refused(lambda: c.post("/v1/reclamation-projects", headers=ADMIN, json=dict(
        project_id=f"RC{county}", county_code=county, township_code=f"{county}100", area=amount)), 422, None,
        f"reclamation area {amount!r}")
    w.refused(lambda: c.put(f"/v1/counties/{county}/policy", headers=ADMIN, json=dict(prices={"COD": amount})),
              422, None, f"price {amount!r}") if amount not in ("0", "0.0000") else None


def test_projects_not_admitted_or_without_land(plat):
    county = new_county()
    ok, no_land, refused_p = f"P{county}-ok", f"P{county}-noland", f"P{county}-no"
    plat.policy(county, verification="accept", retire_share_bp={})
    assert plat.release(county, f"R{county}-1", "LAND", "5").status_code == 201
    assert plat.release(county, f"R{county}-2", "COD", "5").status_code == 201
    plat.admit(county, ok)
    plat.admit(county, no_land, project_class="C", land_quota_allowed=False)
    plat.admit(county, refused_p, admitted=False)
    plat.wait_project(ok)
    plat.wait_project(no_land)
    plat.wait_project(refused_p, admitted=False)
    plat.wait_booked(county, "LAND", "5.0000")
    plat.wait_booked(county, "COD", "5.0000")
    m = Model()
    for p in (ok, no_land, refused_p):
        m.projects[p] = {}
    w = World(plat, m, [county])
    w.refused(lambda: plat.request(county, f"Q{county}-1", refused_p, COD="1"), 409, "project_not_admitted",
              "project not admitted")
    w.refused(lambda: plat.request(county, f"Q{county}-2", f"P{county}-ghost", COD="1"), 409, "project_unknown",
              "project never evaluated")
    w.refused(lambda: plat.request(county, f"Q{county}-3", no_land, LAND="1", COD="1"), 409,
              "land_not_allowed_for_class", "land for a project admitted without land")
    assert plat.request(county, f"Q{county}-4", no_land, COD="1").status_code == 201
    assert plat.request(county, f"Q{county}-5", ok, LAND="5").status_code == 201
    d = plat.round(county)["decisions"]
    assert sorted((x["request_id"], x["outcome"]) for x in d) == \
        [(f"Q{county}-4", "granted"), (f"Q{county}-5", "granted")], d
    plat.wait_state(f"Q{county}-5", "reserved")
    # the project is no longer admitted: its reservation is cancelled and voided, the pool whole again
    plat.admit(county, ok, admitted=False)
    plat.wait_state(f"Q{county}-5", "cancelled")
    assert plat.pool(county)["LAND"]["available"] == "5.0000"
    r = plat.quota.post("/v1/approvals", headers=LAND, json=dict(project_id=ok, kind="land_use", granted_on="2024-03-01"))
    assert r.status_code == 200, r.text
    assert plat.get_request(f"Q{county}-5")["state"] == "cancelled"
    assert plat.wait_reconciled(county)["differences"] == []


def test_amount_due_rounds_half_up_to_the_fen_and_splits_over_lots(plat):
    county = new_county()
    ps = [f"P{county}-{i}" for i in range(3)]
    plat.policy(county, verification="accept", retire_share_bp={}, prices={"COD": "50.00", "ENERGY": "12345.67"})
    assert plat.release(county, f"R{county}-1", "COD", "0.0001", released_on="2023-01-01").status_code == 201
    assert plat.release(county, f"R{county}-2", "ENERGY", "0.001", serial=2, released_on="2021-05-05").status_code == 201
    assert plat.release(county, f"R{county}-3", "ENERGY", "0.002", serial=3, released_on="2022-05-05").status_code == 201
    for p in ps:
        plat.admit(county, p)
    for p in ps:
        plat.wait_project(p)
    plat.wait_booked(county, "ENERGY", "0.003")
    plat.wait_booked(county, "COD", "0.0001")
    plat.request(county, f"Q{county}-1", ps[0], COD="0.0001", ENERGY="0.003")
    plat.round(county)
    plat.wait_state(f"Q{county}-1", "reserved")
    for kind, hdr in (("environmental_impact", ECOLOGY), ("energy_review", ENERGY)):
        assert plat.quota.post("/v1/approvals", headers=hdr, json=dict(project_id=ps[0], kind=kind,
                                                                     granted_on="2024-03-01")).status_code == 200
    plat.wait_state(f"Q{county}-1", "allocated")
    prov = plat.quota.get(f"/v1/projects/{ps[0]}/provenance", headers=ADMIN).json()
    got = {a["asset"]: (a["amount_due"], [(c["lot_id"], c["amount"], c["amount_due"]) for c in a["lots"]])
           for a in prov["allocations"]}
    # COD: 0.0001 t x 50.00 = 0.005 CNY = 0.5 fen -> 1 fen (half up); ENERGY: 0.003 x 12345.67 = 37.03701 -> 37.04,
    # 3704 fen split 1:2 = 1234 + 2469 (floor), the remaining fen to the first lot consumed (the oldest)
    assert got == {"COD": ("0.01", [(f"release:R{county}-1", "0.0001", "0.01")]),
                   "ENERGY": ("37.04", [(f"release:R{county}-2", "0.001", "12.35"),
                                        (f"release:R{county}-3", "0.002", "24.69")])}, got
    assert plat.wait_reconciled(county)["differences"] == []


def test_request_sent_again_as_answered_is_the_same_request(plat):
    """README: same id + same body = 200, bodies compared by value. The answer names each line's approval_kind (the
    asset's confirming approval, chosen when left out); a caller resending the request as it was answered sends the
    same values and must get the standing answer, not a 409 that names no differing field."""
    county = new_county()
    p = f"P{county}-1"
    _ready_county(plat, county, "5", [p])
    m = Model()
    m.projects[p] = {}
    w = World(plat, m, [county])
    first = plat.request(county, f"Q{county}-1", p, COD="1.5")
    assert first.status_code == 201, first.text
    answered = first.json()
    again = dict(request_id=answered["request_id"], project_id=answered["project_id"],
                 county_code=answered["county_code"],
                 lines=[{"asset": x["asset"], "amount": x["amount"], "approval_kind": x["approval_kind"]}
                        for x in answered["lines"]])
    before = w.snapshot()
    r = plat.quota.post("/v1/requests", headers=ADMIN, json=again)
    assert w.snapshot() == before
    assert r.status_code == 200, (f"DEFECT: the request resent as answered (approval_kind named, the same value it "
                                  f"was given) is refused {r.status_code} {r.text}")


def test_reclamation_project_sent_again_as_answered_is_the_same_project(plat):
    """Same as above for the 增减挂钩 library: registered_on left out is the day of registration, and the answer names
    it; the registration resent as answered is the same body by value."""
    county = new_county()
    plat.policy(county, verification="accept")
    first = plat.quota.post("/v1/reclamation-projects", headers=ADMIN, json=dict(
        project_id=f"RC{county}", county_code=county, township_code=f"{county}100", area="3"))
    assert first.status_code == 201, first.text
    a = first.json()
    m = Model()
    m.reclamations[f"RC{county}"] = {}
    w = World(plat, m, [county])
    before = w.snapshot()
    r = plat.quota.post("/v1/reclamation-projects", headers=ADMIN, json=dict(
        project_id=a["project_id"], county_code=a["county_code"], township_code=a["township_code"], area=a["area"],
        registered_on=a["registered_on"]))
    assert w.snapshot() == before
    assert r.status_code == 200, (f"DEFECT: the reclamation project resent as answered (registered_on named, the "
                                  f"day it was given) is refused {r.status_code} {r.text}")
