"""Review of the quota HTTP API as a county department and a dashboard use it (SQLite and PostgreSQL).

Each test states what a county would expect from the answer it reads; the ledger's answers are given by hand
(tests/integration/quota/test_quota_application.py's Pool), the API is called over HTTP."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from services.quota.application import intake
from tests.integration.quota.harness import credit_code
from tests.integration.quota.test_quota_application import Pool
from tests.support.services import ADMIN, auth, running_service

COUNTY = "320612"
ECOLOGY = auth("dev-ecology-token")


@pytest.fixture
def service(db_url, kafka_bootstrap):
    with running_service("quota", db_url, kafka_bootstrap, background=False) as (rt, client):
        yield rt, client


def _pool(rt, **policy) -> Pool:
    """Pool's use cases at the wall clock's time, as the HTTP calls mixed with them run."""
    pool = Pool(rt.db, COUNTY, **policy)
    pool.now = datetime.now(timezone.utc)
    return pool


def _release_body(release_id: str, amount: str, asset: str = "COD", serial: int = 2) -> dict:
    return dict(release_id=release_id, enterprise_credit_code=credit_code(COUNTY, serial),
                township_code=f"{COUNTY}100", county_code=COUNTY, asset=asset, amount=amount, reason="closure",
                basis="free", document_ref="通环收〔2024〕7号", released_on="2024-02-01")


def _request_body(request_id: str, project_id: str, **lines: str) -> dict:
    return dict(request_id=request_id, project_id=project_id, county_code=COUNTY,
                lines=[{"asset": a, "amount": n} for a, n in lines.items()])


# -- money and quantities shown in their unit --------------------------------------------------------

def test_a_round_shows_the_tax_per_mu_it_ordered_by_in_cny(service):
    """The project promised 150,000.00 CNY tax per 亩 (ProjectEvaluated.tax_per_mu); the round's record of why a
    request ranked where it did must say so in CNY, as every money figure of the API, not in fen."""
    rt, client = service
    pool = _pool(rt)
    pool.evaluate("P1")  # tax_per_mu="150000.00"
    pool.release("10")
    pool.request("R1", "P1", "1")
    run = client.post(f"/v1/counties/{COUNTY}/rounds", headers=ADMIN)
    assert run.status_code == 201, run.text
    for body in (run.json(), client.get(f"/v1/rounds/{run.json()['round_id']}", headers=ADMIN).json()):
        ordered_by = dict(map(tuple, body["decisions"][0]["ordered_by"]))
        assert ordered_by["tax_per_mu"] == "150000.00", ordered_by


# -- unknown or malformed counties ---------------------------------------------------------------------

def test_the_policy_of_a_malformed_county_code_is_a_422(service):
    """PUT refuses a malformed code (422 county_code_malformed); GET answered 200 with a made-up default policy
    for county "abc" (20 % retired, version 0), which a dashboard shows as that county's rules."""
    rt, client = service
    _pool(rt)
    assert client.put("/v1/counties/abc/policy", headers=ADMIN, json={}).json()["reason"] == "county_code_malformed"
    r = client.get("/v1/counties/abc/policy", headers=ADMIN)
    assert (r.status_code, r.json().get("reason")) == (422, "county_code_malformed"), r.text


def test_the_policy_of_a_county_nothing_is_known_of_is_a_404(service):
    """As the pool, lots, rounds and reconciliation of such a county: a mistyped code (two digits swapped) must not
    read as a county with a policy in force (version 0, set by "default" on 1970-01-01)."""
    rt, client = service
    _pool(rt)
    assert client.get(f"/v1/counties/{COUNTY}/policy", headers=ADMIN).status_code == 200
    r = client.get("/v1/counties/320621/policy", headers=ADMIN)
    assert (r.status_code, r.json().get("reason")) == (404, "county_unknown"), r.text


def test_requests_listed_for_an_unknown_or_malformed_county_are_not_an_empty_list(service):
    """GET /v1/requests?county_code=<typo> answered 200 {"requests": []}: "nothing waiting in this county". The
    county reads answer 404 county_unknown / 422 county_code_malformed; a county filter should too."""
    rt, client = service
    pool = _pool(rt)
    pool.evaluate("P1")
    pool.request("R1", "P1", "1")
    assert [x["request_id"] for x in client.get("/v1/requests", params={"county_code": COUNTY},
                                                headers=ADMIN).json()["requests"]] == ["R1"]
    r = client.get("/v1/requests", params={"county_code": "320621"}, headers=ADMIN)
    assert (r.status_code, r.json().get("reason")) == (404, "county_unknown"), r.text
    r = client.get("/v1/requests", params={"county_code": "abc"}, headers=ADMIN)
    assert (r.status_code, r.json().get("reason")) == (422, "county_code_malformed"), r.text


# -- what a request shows -------------------------------------------------------------------------------

def test_listed_requests_show_the_ledger_transfers_the_single_view_shows(service):
    """The list answers every request with "ledger_transfers": [] even when the request has asked the ledger for
    its reservation: a dashboard reading the list is told nothing was sent. Same request, same fields, same
    content in both views (or the list should leave the field out)."""
    rt, client = service
    pool = _pool(rt)
    pool.evaluate("P1")
    pool.release("10")
    pool.request("R1", "P1", "6")
    pool.round()
    one = client.get("/v1/requests/R1", headers=ADMIN).json()
    assert [t["transfer_id"] for t in one["ledger_transfers"]] == ["quota/reserve/R1/COD"]
    (listed,) = client.get("/v1/requests", params={"county_code": COUNTY}, headers=ADMIN).json()["requests"]
    assert listed["ledger_transfers"] == one["ledger_transfers"]


def test_a_cancelled_reservation_shows_no_line_reserved(service):
    """After a reserved request is cancelled (its pending transfer voided, the pool's reserved back to 0) its line
    still answered "reserved": true."""
    rt, client = service
    pool = _pool(rt, retire_share_bp={"COD": 0})
    pool.evaluate("P1")
    pool.release("10")
    pool.request("R1", "P1", "6")
    pool.round()
    pool.pending("R1", "P1", "6")
    held = client.get("/v1/requests/R1", headers=ADMIN).json()
    assert (held["state"], [l["reserved"] for l in held["lines"]]) == ("reserved", [True])

    r = client.post("/v1/requests/R1/cancel", headers=ADMIN, json={"reason": "project_withdrawn"})
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    cod = {a["asset"]: a for a in client.get(f"/v1/counties/{COUNTY}/pool", headers=ADMIN).json()["assets"]}["COD"]
    assert (cod["reserved"], cod["available"]) == ("0.0000", "10.0000")
    for body in (r.json(), client.get("/v1/requests/R1", headers=ADMIN).json()):
        assert [l["reserved"] for l in body["lines"]] == [False], body["lines"]


# -- idempotency of department writes ----------------------------------------------------------------

def test_a_resubmission_with_the_amount_as_the_api_answered_it_is_the_same_write(service):
    """A department that sent "2.5" is answered "2.5000"; resending the release (or request) with the amount it was
    answered is the same release: the standing answer (200), not 409 release_id_reused (design: identical fields
    -> "exists"; amounts are exact values, not texts)."""
    rt, client = service
    pool = _pool(rt, verification="accept")
    pool.evaluate("P1")
    first = client.post("/v1/releases", headers=ECOLOGY, json=_release_body("H1", "2.5"))
    assert (first.status_code, first.json()["amount"]) == (201, "2.5000"), first.text
    again = client.post("/v1/releases", headers=ECOLOGY, json=_release_body("H1", first.json()["amount"]))
    assert (again.status_code, again.json().get("amount")) == (200, "2.5000"), again.text

    req = client.post("/v1/requests", headers=ADMIN, json=_request_body("R1", "P1", COD="3"))
    assert (req.status_code, req.json()["lines"][0]["amount"]) == (201, "3.0000"), req.text
    again = client.post("/v1/requests", headers=ADMIN, json=_request_body("R1", "P1", COD="3.0000"))
    assert again.status_code == 200, again.text
    lots = client.get(f"/v1/counties/{COUNTY}/lots", headers=ADMIN).json()["lots"]
    assert [(l["lot_id"], l["amount"]) for l in lots] == [("release:H1", "2.5000")]


def test_a_conflicting_resubmission_names_the_field_that_differs(service):
    """Same id, another amount: 409 release_id_reused, and nothing changes (that part holds). The design asks the
    error to name the field that differs, so the department's system can tell a typo from a reused id; the 409
    had no details at all."""
    rt, client = service
    _pool(rt, verification="accept")
    assert client.post("/v1/releases", headers=ECOLOGY, json=_release_body("H1", "2.5")).status_code == 201
    r = client.post("/v1/releases", headers=ECOLOGY, json=_release_body("H1", "3"))
    assert (r.status_code, r.json()["reason"]) == (409, "release_id_reused"), r.text
    assert client.get("/v1/releases/H1", headers=ADMIN).json()["amount"] == "2.5000"
    fields = {d.get("field") for d in (r.json().get("details") or [])}
    assert "amount" in fields, r.json()


def _fields(r) -> list:
    return sorted(d.get("field") for d in (r.json().get("details") or []))


def test_a_conflicting_request_or_reclamation_names_the_fields_that_differ(service):
    """Requests and 增减挂钩 projects answered a reused id with a bare 409 (only releases named the field): the
    department's system could not tell a typo from a reused id. Each now names what differs; a value sent in
    another spelling ("3" / "3.0000") or a field left out that the first write defaulted is no difference."""
    rt, client = service
    pool = _pool(rt)
    pool.evaluate("P1")
    pool.evaluate("P2")
    assert client.post("/v1/requests", headers=ADMIN, json=_request_body("R1", "P1", COD="3", NOX="1")).status_code == 201
    r = client.post("/v1/requests", headers=ADMIN, json=_request_body("R1", "P1", COD="3.0000", NOX="1.5"))
    assert (r.status_code, r.json()["reason"], _fields(r)) == (409, "request_id_reused", ["lines[1].amount"]), r.text
    r = client.post("/v1/requests", headers=ADMIN, json=_request_body("R1", "P2", COD="3", SO2="1"))
    assert (r.status_code, _fields(r)) == (409, ["lines[1].asset", "project_id"]), r.text
    r = client.post("/v1/requests", headers=ADMIN, json=_request_body("R1", "P1", COD="3"))
    assert (r.status_code, _fields(r)) == (409, ["lines"]), r.text
    body = _request_body("R1", "P1", COD="3", NOX="1")
    body["lines"][0]["approval_kind"] = "land_use"
    r = client.post("/v1/requests", headers=ADMIN, json=body)
    assert (r.status_code, _fields(r)) == (409, ["lines[0].approval_kind"]), r.text
    got = client.get("/v1/requests/R1", headers=ADMIN).json()
    assert (got["project_id"], [(l["asset"], l["amount"]) for l in got["lines"]]) == (
        "P1", [("COD", "3.0000"), ("NOX", "1.0000")])

    land = auth("dev-natural-resources-token")
    first = {"project_id": "RC-1", "county_code": COUNTY, "township_code": f"{COUNTY}101", "area": "3"}
    assert client.post("/v1/reclamation-projects", headers=land, json=first).status_code == 201
    assert client.post("/v1/reclamation-projects", headers=land, json={**first, "area": "3.0"}).status_code == 200
    r = client.post("/v1/reclamation-projects", headers=land,
                    json={**first, "area": "3.5", "township_code": f"{COUNTY}102"})
    assert (r.status_code, r.json()["reason"], _fields(r)) == (
        409, "reclamation_id_reused", ["area", "township_code"]), r.text
    r = client.post("/v1/reclamation-projects", headers=land, json={**first, "registered_on": "2020-01-01"})
    assert (r.status_code, _fields(r)) == (409, ["registered_on"]), r.text
    assert client.get("/v1/reclamation-projects/RC-1", headers=ADMIN).json()["area"] == "3.0000"


# -- what passes, and is held nowhere else -------------------------------------------------------------

def _d(s: str) -> Decimal:
    return Decimal(s)


def test_pool_figures_agree_with_the_lots_requests_and_provenance_the_api_shows(service):
    """pool = released - retired - allocated = available + reserved, per asset, and each figure is what the other
    reads add up to: booked lots (released, retired, allocated), open holding requests (reserved), provenance
    (allocated), lots awaiting the ledger (incoming, never in released)."""
    rt, client = service
    pool = _pool(rt, verification="accept", retire_share_bp={"COD": 3333})
    for p in ("P1", "P2", "P3"):
        pool.evaluate(p)
    pool.release("10.0001", "REL-1")
    pool.release("5.0003", "REL-2")
    pool.request("R1", "P1", "7.5")  # allocated over both lots
    pool.request("R2", "P2", "1.2345")  # reserved
    pool.request("R3", "P3", "0.5")  # cancelled
    pool.round()
    pool.pending("R1", "P1", "7.5")
    pool.pending("R2", "P2", "1.2345")
    pool.approve("P1")
    assert client.post("/v1/requests/R3/cancel", headers=ADMIN).status_code == 200
    awaiting = client.post("/v1/releases", headers=ECOLOGY, json=_release_body("H-NOX", "0.7", asset="NOX"))
    assert awaiting.status_code == 201, awaiting.text  # no ledger answer: incoming

    figures = {a["asset"]: a for a in client.get(f"/v1/counties/{COUNTY}/pool", headers=ADMIN).json()["assets"]}
    lots = client.get(f"/v1/counties/{COUNTY}/lots", headers=ADMIN).json()["lots"]
    requests_ = client.get("/v1/requests", params={"county_code": COUNTY}, headers=ADMIN).json()["requests"]
    provenance = defaultdict(Decimal)
    for p in ("P1", "P2", "P3"):
        for asset, n in client.get(f"/v1/projects/{p}/provenance", headers=ADMIN).json()["totals"].items():
            provenance[asset] += _d(n)

    for asset, f in figures.items():
        released, retired, allocated = _d(f["released"]), _d(f["retired"]), _d(f["allocated"])
        reserved, available, incoming = _d(f["reserved"]), _d(f["available"]), _d(f["incoming"])
        assert released - retired - allocated == available + reserved, (asset, f)
        assert min(released, retired, allocated, reserved, available, incoming) >= 0, (asset, f)
        booked = [l for l in lots if l["asset"] == asset and l["ledger_state"] == "booked"]
        assert released == sum((_d(l["amount"]) for l in booked), Decimal(0)), asset
        assert retired == sum((_d(l["retired"]) for l in booked), Decimal(0)), asset
        assert allocated == sum((_d(l["allocated"]) for l in booked), Decimal(0)) == provenance[asset], asset
        assert available + reserved == sum((_d(l["remaining"]) for l in booked), Decimal(0)), asset
        assert reserved == sum((_d(line["amount"]) for r in requests_ if r["state"] in ("reserving", "reserved")
                                for line in r["lines"] if line["asset"] == asset), Decimal(0)), asset
        assert incoming == sum((_d(l["amount"]) for l in lots
                                if l["asset"] == asset and l["ledger_state"] == "awaiting"), Decimal(0)), asset
    cod = figures["COD"]
    assert (cod["released"], cod["retired"], cod["allocated"], cod["reserved"], cod["available"]) == \
           ("15.0004", "4.9997", "7.5000", "1.2345", "1.2662")  # ceil(33330.33) + ceil(16665.9999)
    assert figures["NOX"]["incoming"] == "0.7000" and figures["NOX"]["released"] == "0.0000"
    assert figures["ENERGY"]["available"] == "0.000" and figures["LAND"]["available"] == "0.0000"


def test_pages_neither_skip_nor_repeat_rows_when_rows_arrive_between_pages(service):
    """Lots and requests are paged by id (next_after): every row present when paging began is listed exactly once,
    whatever arrives (before or after the cursor) between two pages."""
    rt, client = service
    pool = _pool(rt, verification="accept")
    pool.evaluate("P1")
    before = [f"REL-{i:02d}" for i in range(3, 30, 3)]
    for rid in before:
        pool.release("1", rid)
        pool.request(f"R-{rid[4:]}", "P1", "0.1")

    def page_all(path: str, key: str, id_field: str, added: list):
        seen, after, n = [], None, 0
        while True:
            params = {"limit": 2, **({"after": after} if after else {})}
            if path.endswith("/requests"):
                params["county_code"] = COUNTY
            body = client.get(path, params=params, headers=ADMIN).json()
            seen += [x[id_field] for x in body[key]]
            if body["next_after"] is None:
                return seen
            after = body["next_after"]
            n += 1
            if n <= len(added):
                added[n - 1]()

    lot_arrivals = [lambda: pool.release("1", "REL-01"), lambda: pool.release("1", "REL-99"),
                    lambda: pool.release("1", "REL-10")]
    seen = page_all(f"/v1/counties/{COUNTY}/lots", "lots", "lot_id", lot_arrivals)
    assert len(seen) == len(set(seen)), seen
    assert {f"release:{r}" for r in before} <= set(seen), seen

    req_arrivals = [lambda: pool.request("R-01", "P1", "0.1"), lambda: pool.request("R-99", "P1", "0.1"),
                    lambda: pool.request("R-10", "P1", "0.1")]
    seen = page_all("/v1/requests", "requests", "request_id", req_arrivals)
    assert len(seen) == len(set(seen)), seen
    assert {f"R-{r[4:]}" for r in before} <= set(seen), seen


def test_a_reclamation_registered_after_midnight_in_china_is_dated_that_day(service):
    """Registered without a date at 00:30 on 1 April in China (16:30 UTC on 31 March): registered_on is 1 April."""
    rt, client = service
    pool = Pool(rt.db, COUNTY)
    pool.run(lambda tx: intake.register_reclamation_project(
        tx, {"project_id": "RC-1", "county_code": COUNTY, "township_code": f"{COUNTY}101", "area": "3"}, "test"),
        now=datetime(2024, 3, 31, 16, 30, tzinfo=timezone.utc))
    r = client.get("/v1/reclamation-projects/RC-1", headers=ADMIN)
    assert r.status_code == 200 and r.json()["registered_on"] == "2024-04-01", r.text


def test_a_lot_date_with_a_mistyped_year_is_refused(service):
    """The acceptance date is the lot's FIFO date, so a mistyped year (0024 for 2024) put the land ahead of every lot
    of the county and decided whose township and enterprise the next allocations (and compensation) trace to. It was
    accepted (200) and the lot dated 0024-05-01; so was a release dated so. (An acceptance before the project's
    registration in the system is taken: a county enters projects accepted before it used the system.)"""
    rt, client = service
    _pool(rt)
    land = auth("dev-natural-resources-token")
    r = client.post("/v1/reclamation-projects", headers=land, json={
        "project_id": "RC-1", "county_code": COUNTY, "township_code": f"{COUNTY}101", "area": "3",
        "registered_on": "2024-03-01"})
    assert r.status_code == 201, r.text
    r = client.post("/v1/reclamation-projects/RC-1/acceptance", headers=land, json={"accepted_on": "0024-05-01"})
    assert r.status_code == 422 and r.json().get("reason"), r.text
    assert client.get("/v1/reclamation-projects/RC-1", headers=ADMIN).json()["state"] == "registered"
    assert r.json()["reason"] == "date_implausible"
    assert client.get(f"/v1/counties/{COUNTY}/lots", headers=ADMIN).json()["lots"] == []
    r = client.post("/v1/releases", headers=ECOLOGY, json={**_release_body("H0", "1"), "released_on": "0024-02-01"})
    assert (r.status_code, r.json().get("reason")) == (422, "date_implausible"), r.text
    assert client.get(f"/v1/counties/{COUNTY}/lots", headers=ADMIN).json()["lots"] == []
