"""Review of every paginated list endpoint of the four services (2026-12-01), on PostgreSQL, services in process.

The endpoints (docs/openapi/*.json): assessment /v1/enterprises, /v1/evaluations/{run}/enterprises, /v1/tasks,
/v1/tasks/overdue (after, limit, next_after); ledger /v1/accounts/{id}/entries (after_seq, next_after_seq),
/v1/accounts/{id}/pending (after, Link rel="next"), /v1/balances (limit); quota /v1/counties/{c}/lots,
/v1/requests (after, next_after), /v1/counties/{c}/rounds (before_seq); settlement /v1/agreements, /v1/tax-receipts
(after, next_after), /v1/counties/{c}/periods/{p}/statement (after_line, next_after_line).

Defects (failing):
- ledger pending: a cursor naming a transfer that never touched the account (another county's hold, another
  account's posting) is taken as a position: 200 with the account's holds before it silently left out, where an
  unknown cursor is 404 transfer_not_found.
- ledger /v1/balances: a listing cut at `limit` says nothing of the accounts left out and offers no way to read
  them (no cursor, no Link), so a county with more accounts than the limit reads a partial list as the whole.
- settlement statement: after_line is documented as any integer >= 0, yet past 2^31-1 PostgreSQL answers 422
  "integer out of range" (SQLite: 200, an empty page): the same request means two things by database.

Guards (passing): pages walked to the end list every item once, in key order, while items arrive before, between
and after the cursor or change state between pages; filters (county, status, state, enterprise, kind) never let
another filter's items into a page; a cursor from another county only positions; next is given exactly when more
remain (also when the last page is exactly full); limit 0, -1, max+1, non-numeric are 422 invalid_request and the
max is served; odd keys (unicode, '/', '%', 20,000 characters, NUL) are never a 5xx."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest

from tests.integration.ledger.harness import ENT, POOL, REG, STANDARD_ACCOUNTS, cod_transfer, served_ledger
from tests.integration.quota.test_quota_application import Pool
from tests.integration.settlement.test_review_reads import _county as settlement_county
from tests.integration.settlement.test_review_reads import _finalize, _receipt
from tests.support.services import ADMIN, running_service
from tests.unit.assessment.factories import code as make_code
from tests.unit.settlement.settlement_factories import at

ODD_KEYS = ["中文ид😀", "a/b", "%", "%2F", "x" * 20000, "a\x00b", "'; --", "\u200b"]
LIMIT_EDGES = [("0", 422), ("-1", 422), ("abc", 422), ("1.5", 422), ("", 422)]


def _never_5xx_and_4xx_says_why(r, what) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert isinstance(r.json().get("reason"), str) and r.json()["reason"], (what, r.text[:300])


def _limit_edges(client, path: str, params: dict, maximum: int) -> None:
    for value, status in LIMIT_EDGES + [(str(maximum + 1), 422)]:
        r = client.get(path, params={**params, "limit": value}, headers=ADMIN)
        assert (r.status_code, r.json().get("reason")) == (status, "invalid_request"), (path, value, r.text[:200])
    r = client.get(path, params={**params, "limit": str(maximum)}, headers=ADMIN)
    assert r.status_code == 200, (path, r.text[:200])


# -- ledger ------------------------------------------------------------------------------------------------------
PRJ = "project:P1/COD"
OTHER = "county:330100/pool/COD"


@pytest.fixture
def ledger(pg_url, kafka_bootstrap):
    with served_ledger(pg_url, kafka_bootstrap, STANDARD_ACCOUNTS + [(PRJ, "project:P1"),
                                                                     (OTHER, "county:330100/pool")]) as served:
        yield served[1]


def _post(client, *transfers) -> None:
    r = client.post("/v1/transfers", headers=ADMIN, json={"transfers": list(transfers)})
    assert r.status_code == 200 and r.json()["ok"], r.text


def _hold(tid: str, dr: str = POOL) -> dict:
    return cod_transfer(tid, dr, PRJ, "1", pending=True, timeout_seconds=3600)


def test_ledger_pending_refuses_a_cursor_naming_a_transfer_of_another_account(ledger):
    """A county's pool has four holds; a client passes as `after` a transfer that never touched the pool (another
    county's hold, or a posting between two other accounts: a cursor from another listing). It is answered 200 with
    only the pool's last hold, as if the earlier three did not exist: the county under-counts what is reserved
    against its pool. An id that is no transfer at all is 404 transfer_not_found; one of another account is just as
    much no position in this listing."""
    client = ledger
    _post(client, cod_transfer("fund", REG, POOL, "100"), cod_transfer("fund-other", REG, OTHER, "100"))
    for i in range(3):
        _post(client, _hold(f"hold{i}"))
    _post(client, _hold("other-county-hold", dr=OTHER), cod_transfer("elsewhere", REG, ENT, "1"))
    _post(client, _hold("hold3"))
    whole = client.get(f"/v1/accounts/{POOL}/pending", headers=ADMIN).json()
    assert [t["transfer_id"] for t in whole] == ["hold0", "hold1", "hold2", "hold3"]
    bad = {}
    for foreign in ("other-county-hold", "elsewhere"):
        r = client.get(f"/v1/accounts/{POOL}/pending", params={"after": foreign, "limit": 2}, headers=ADMIN)
        if (r.status_code, r.json().get("reason") if r.status_code != 200 else None) != (422, "cursor_not_of_account"):
            bad[foreign] = (r.status_code, [t.get("transfer_id") for t in r.json()] if r.status_code == 200 else r.text)
    assert not bad, f"a foreign cursor was taken as a position, holds before it left out: {bad}"
    # the pool's own transfer is a position, also once it is no longer pending (the page's last hold, posted)
    own = client.get(f"/v1/accounts/{POOL}/pending", params={"after": "hold1"}, headers=ADMIN)
    assert [t["transfer_id"] for t in own.json()] == ["hold2", "hold3"], own.text


def test_ledger_pending_pages_list_each_hold_once_while_the_cursor_hold_is_posted(ledger):
    """Paging a pool's holds by the Link header while the hold a page ended on is posted, another is voided and new
    holds arrive: every hold pending at the start and still pending is listed once, oldest first, and the last page
    (exactly full) has no Link. A county would otherwise miss or double-count reserved quota."""
    client = ledger
    _post(client, cod_transfer("fund", REG, POOL, "100"))
    for i in range(5):
        _post(client, _hold(f"hold{i}"))
    seen, url, step = [], f"/v1/accounts/{POOL}/pending?limit=2", 0
    while url:
        r = client.get(url, headers=ADMIN)
        assert r.status_code == 200, r.text
        page = [t["transfer_id"] for t in r.json()]
        seen += page
        url = r.links.get("next", {}).get("url")
        if step == 0:  # the cursor itself leaves the pending set; one not yet listed is voided
            _post(client, {"transfer_id": "post-hold1", "asset": "COD", "amount": "1", "post_pending_id": "hold1"})
            _post(client, {"transfer_id": "void-hold3", "asset": "COD", "amount": "0", "void_pending_id": "hold3"})
            _post(client, _hold("hold5"))
        step += 1
    assert seen == ["hold0", "hold1", "hold2", "hold4", "hold5"], seen
    full = client.get(f"/v1/accounts/{POOL}/pending", params={"limit": 4}, headers=ADMIN)
    assert len(full.json()) == 4 and "next" not in full.links, "no next link when nothing remains"


def test_ledger_balances_listing_says_when_accounts_were_left_out(ledger):
    """GET /v1/balances?address_prefix=county: with limit 2 over three county accounts answers two and nothing
    else: no Link, no cursor, no count. A finance system asking for a county's accounts cannot tell a cut list from
    the whole, nor read past 10,000 accounts, and sums balances over a part. When the list is complete, nothing
    may claim more."""
    client = ledger
    third = "county:320612/retired/COD"
    r = client.post("/v1/accounts", headers=ADMIN, json={"accounts": [
        {"account_id": third, "asset": "COD", "address": "county:320612/retired"}]})
    assert r.json()["ok"], r.text
    complete = client.get("/v1/balances", params={"address_prefix": "county:", "limit": 3}, headers=ADMIN)
    assert len(complete.json()) == 3 and "next" not in complete.links
    cut = client.get("/v1/balances", params={"address_prefix": "county:", "limit": 2}, headers=ADMIN)
    assert cut.status_code == 200 and len(cut.json()) == 2
    assert "next" in cut.links, f"a listing cut at its limit says nothing of the rest: headers {dict(cut.headers)}"
    rest = client.get(cut.links["next"]["url"], headers=ADMIN)
    assert rest.status_code == 200 and "next" not in rest.links, rest.text
    assert [b["account_id"] for b in cut.json() + rest.json()] == [b["account_id"] for b in complete.json()]


def test_ledger_limit_edges_and_odd_cursors_are_4xx_with_a_reason(ledger):
    """Limits 0, -1, max+1, non-numeric are refused with a reason on entries, pending and balances, the max is
    served; odd `after` values on pending are 404 transfer_not_found, never a 5xx (a county's integration would
    retry a 500 forever)."""
    client = ledger
    _post(client, cod_transfer("fund", REG, POOL, "5"))
    _limit_edges(client, f"/v1/accounts/{POOL}/entries", {}, 1000)
    _limit_edges(client, f"/v1/accounts/{POOL}/pending", {}, 10000)
    _limit_edges(client, "/v1/balances", {"address_prefix": "county:"}, 10000)
    for key in ODD_KEYS:
        r = client.get(f"/v1/accounts/{POOL}/pending", params={"after": key}, headers=ADMIN)
        assert (r.status_code, r.json().get("reason")) == (404, "transfer_not_found"), (key[:20], r.text[:200])
    for seq in ("abc", "-1", str(2**63)):
        r = client.get(f"/v1/accounts/{POOL}/entries", params={"after_seq": seq}, headers=ADMIN)
        assert (r.status_code, r.json().get("reason")) == (422, "invalid_request"), (seq, r.text[:200])


# -- assessment --------------------------------------------------------------------------------------------------
@pytest.fixture
def assessment(pg_url, kafka_bootstrap):
    with running_service("assessment", pg_url, kafka_bootstrap, background=False) as (_, client):
        yield client


def _register(client, county: str, n: int) -> str:
    code = make_code(n, county)
    r = client.post("/v1/enterprises", headers=ADMIN, json={"credit_code": code, "name": f"企业{n}",
                                                            "township_code": county + "101", "industry_code": "C3311"})
    assert r.status_code == 201, r.text
    return code


def _walk(client, path: str, params: dict, items_key: str, id_key: str, between=(), limit: int = 2) -> list[str]:
    seen, after, step = [], None, 0
    for _ in range(200):
        r = client.get(path, params={**params, "limit": limit, **({"after": after} if after is not None else {})},
                       headers=ADMIN)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [x[id_key] for x in body[items_key]]
        if body["next_after"] is None:
            return seen
        assert body["next_after"] == body[items_key][-1][id_key]
        after = body["next_after"]
        if step < len(between):
            between[step]()
        step += 1
    raise AssertionError("paging does not end")


def test_register_pages_list_each_enterprise_once_as_enterprises_register_around_the_cursor(assessment):
    """A county's register read two at a time while enterprises register with codes before the cursor, between,
    and after, and another county registers too: every enterprise registered at the start is listed exactly once,
    in credit-code order, and none of the other county's. Otherwise a county's rectification list drops or repeats
    an enterprise."""
    client = assessment
    county, other = f"{random.randint(110000, 329999)}", f"{random.randint(330000, 659999)}"
    start = sorted(_register(client, county, n) for n in (10, 20, 30, 40, 50, 60))
    late = []
    arrivals = [lambda: late.append(_register(client, county, 1)), lambda: late.append(_register(client, county, 45)),
                lambda: late.append(_register(client, county, 99)), lambda: _register(client, other, 15)]
    seen = _walk(client, "/v1/enterprises", {"county_code": county}, "items", "credit_code", arrivals)
    assert len(seen) == len(set(seen)) and seen == sorted(seen), seen
    assert set(start) <= set(seen) <= set(start) | set(late), seen
    whole = client.get("/v1/enterprises", params={"county_code": county, "limit": 1000}, headers=ADMIN).json()
    assert whole["next_after"] is None and len(whole["items"]) == len(start) + len(late)
    exact = client.get("/v1/enterprises", params={"county_code": county, "limit": len(whole["items"])}, headers=ADMIN)
    assert exact.json()["next_after"] is None, "no next when the page holds the last one"


def test_task_pages_by_status_never_show_another_status_or_county_while_tasks_close(assessment):
    """Open tasks of a county, paged while one not yet listed is completed and one already listed is cancelled,
    and another county has open tasks: the pages list open tasks of this county only, each once, in id order. A
    county would otherwise chase a task already done or another county's enterprise."""
    client = assessment
    county, other = f"{random.randint(110000, 329999)}", f"{random.randint(330000, 659999)}"
    mine, theirs = _register(client, county, 1), _register(client, other, 1)
    deadline = (date.today() + timedelta(days=30)).isoformat()
    for i in range(6):
        for code, tag in ((mine, "A"), (theirs, "B")):
            r = client.post("/v1/tasks", headers=ADMIN, json={"task_id": f"T-{i}{tag}", "credit_code": code,
                                                              "disposition": "upgrade", "deadline": deadline})
            assert r.status_code == 201, r.text
    today = date.today().isoformat()

    def close(tid, how):
        r = client.post(f"/v1/tasks/{tid}/{how}", headers=ADMIN, json={"on": today, "note": "done by review"})
        assert r.status_code == 200, r.text

    seen = _walk(client, "/v1/tasks", {"county_code": county, "status": "open"}, "items", "id",
                 [lambda: close("T-4A", "completion"), lambda: close("T-0A", "cancellation")])
    assert seen == ["T-0A", "T-1A", "T-2A", "T-3A", "T-5A"], seen
    done = client.get("/v1/tasks", params={"county_code": county, "status": "done"}, headers=ADMIN).json()
    assert [t["id"] for t in done["items"]] == ["T-4A"] and done["next_after"] is None
    foreign = client.get("/v1/tasks", params={"county_code": county, "after": "T-3B", "limit": 10}, headers=ADMIN)
    assert [t["id"] for t in foreign.json()["items"]] == ["T-4A", "T-5A"], "another county's cursor only positions"


def test_assessment_listings_limit_edges_and_odd_keys_are_never_a_5xx(assessment):
    """limit 0, -1, max+1 and non-numeric are 422 invalid_request, the max is served; `after` with unicode, '/',
    '%', 20,000 characters or a NUL is a page or a 4xx with a reason, never a 5xx."""
    client = assessment
    county = f"{random.randint(110000, 659999)}"
    _register(client, county, 1)
    listings = [("/v1/enterprises", {"county_code": county}), ("/v1/tasks", {"status": "open"}),
                ("/v1/tasks/overdue", {"as_of": "2030-01-01"})]
    for path, params in listings:
        _limit_edges(client, path, params, 1000)
        for key in ODD_KEYS:
            r = client.get(path, params={**params, "after": key}, headers=ADMIN)
            _never_5xx_and_4xx_says_why(r, (path, key[:20]))


# -- quota -------------------------------------------------------------------------------------------------------
@pytest.fixture
def quota(pg_url, kafka_bootstrap):
    with running_service("quota", pg_url, kafka_bootstrap, background=False) as (rt, client):
        now = datetime.now(timezone.utc)
        pools = {}
        for c in ("320612", "330100"):
            pools[c] = Pool(rt.db, c, verification="accept")
            pools[c].now = now
            pools[c].evaluate(f"P{c}")
        yield pools, client


def test_quota_lot_and_request_pages_keep_to_their_county_and_state(quota):
    """Two counties' lots and requests, paged two at a time while lots and requests arrive before, between and after
    the cursor and a request not yet listed is cancelled: a county's pages hold only its own lots, and its open
    requests only open ones, each once, in id order; a cursor taken from the other county's listing only positions.
    A county would otherwise allocate from, or count, another county's quota."""
    pools, client = quota
    a, b = pools["320612"], pools["330100"]
    for i in (2, 4, 6, 8):
        a.release("1", f"A-{i}")
        b.release("1", f"B-{i}")
        a.request(f"RA-{i}", "P320612", "0.1")
        b.request(f"RB-{i}", "P330100", "0.1")
    lots = _walk(client, "/v1/counties/320612/lots", {}, "lots", "lot_id",
                 [lambda: a.release("1", "A-1"), lambda: a.release("1", "A-5"), lambda: b.release("1", "B-3"),
                  lambda: a.release("1", "A-9")])
    assert len(lots) == len(set(lots)) and lots == sorted(lots), lots
    assert {f"release:A-{i}" for i in (2, 4, 6, 8)} <= set(lots) and all(x.startswith("release:A-") for x in lots)

    def cancel(rid):
        r = client.post(f"/v1/requests/{rid}/cancel", headers=ADMIN, json={})
        assert r.status_code == 200, r.text

    reqs = _walk(client, "/v1/requests", {"county_code": "320612", "state": "open"}, "requests", "request_id",
                 [lambda: cancel("RA-6"), lambda: a.request("RA-5", "P320612", "0.1"),
                  lambda: b.request("RB-7", "P330100", "0.1")])
    assert len(reqs) == len(set(reqs)) and reqs == sorted(reqs), reqs
    assert {"RA-2", "RA-4", "RA-8"} <= set(reqs) <= {"RA-2", "RA-4", "RA-5", "RA-8"}, reqs
    foreign = client.get("/v1/counties/320612/lots", params={"after": "release:B-2"}, headers=ADMIN).json()
    assert foreign["lots"] == [] and foreign["next_after"] is None  # 'release:B-*' sorts after every 'release:A-*'


def test_quota_rounds_are_walked_latest_first_each_once_by_before_seq(quota):
    """Rounds of a county read one at a time by before_seq (the last seq listed), while the other county runs
    rounds: each of this county's rounds once, latest first, none of the other's. Limits and odd cursors are 422
    with a reason."""
    pools, client = quota
    a, b = pools["320612"], pools["330100"]
    for _ in range(3):
        a.round()
        b.round()
    seqs, before = [], None
    for _ in range(10):
        r = client.get("/v1/counties/320612/rounds", params={"limit": 1, **({"before_seq": before} if before else {})},
                       headers=ADMIN)
        assert r.status_code == 200, r.text
        if not r.json():
            break
        assert all(x["county_code"] == "320612" for x in r.json())
        seqs += [x["seq"] for x in r.json()]
        before = seqs[-1]
        b.round()
    assert seqs == [3, 2, 1], seqs
    _limit_edges(client, "/v1/counties/320612/rounds", {}, 200)
    _limit_edges(client, "/v1/counties/320612/lots", {}, 1000)
    _limit_edges(client, "/v1/requests", {}, 1000)
    for bad in ("0", "-1", "x", str(2**31)):
        r = client.get("/v1/counties/320612/rounds", params={"before_seq": bad}, headers=ADMIN)
        assert (r.status_code, r.json().get("reason")) == (422, "invalid_request"), (bad, r.text[:200])
    for key in ODD_KEYS:
        for path, params in (("/v1/counties/320612/lots", {}), ("/v1/requests", {"county_code": "320612"})):
            _never_5xx_and_4xx_says_why(client.get(path, params={**params, "after": key}, headers=ADMIN), (path, key[:9]))


# -- settlement --------------------------------------------------------------------------------------------------
@pytest.fixture
def settlement(pg_url, kafka_bootstrap):
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (rt, client):
        yield rt, client


def test_statement_after_line_the_contract_allows_is_not_refused_by_the_database(settlement):
    """after_line is published as an integer >= 0 with no maximum. A client positioned past the last line (e.g. a
    sentinel 2^31) is answered on PostgreSQL 422 invalid_value "integer out of range", on SQLite 200 with an empty
    page: the same request means two things by database, and a value the contract allows is refused. Either the
    contract states the bound (422 invalid_request from validation) or the page is empty with no next."""
    rt, client = settlement
    w = settlement_county(rt)
    _finalize(rt, w.C, "2025-01", at(2025, 2, 5))
    spec = client.get("/openapi.json").json()
    param = next(p for p in spec["paths"]["/v1/counties/{county}/periods/{period}/statement"]["get"]["parameters"]
                 if p["name"] == "after_line")
    declared_max = param["schema"].get("maximum")
    r = client.get(f"/v1/counties/{w.C}/periods/2025-01/statement", params={"after_line": 2**31}, headers=ADMIN)
    if declared_max is not None and declared_max < 2**31:
        assert (r.status_code, r.json().get("reason")) == (422, "invalid_request"), r.text
    else:
        assert r.status_code == 200, f"after_line {2**31} (allowed by the contract) refused: {r.text[:200]}"
        assert r.json()["lines"] == [] and r.json()["next_after_line"] is None


def test_settlement_listings_keep_to_their_filters_and_end_exactly(settlement):
    """Agreements by county and receipts by enterprise and month, paged one at a time while receipts arrive before,
    between and after the cursor: only the filter's items, each once, in id order; a cursor from the other county's
    listing only positions; the statement's kind filter pages end with no next exactly when the last matching line
    is listed. A finance system would otherwise settle another county's or month's tax."""
    rt, client = settlement
    w, v = settlement_county(rt), settlement_county(rt)
    for rid in ("m-2", "m-4"):
        _receipt(rt, f"{rid}-{w.C}", w.E, "2025-02", 100, at(2025, 3, 2))
    _receipt(rt, f"m-3-{v.C}", v.E, "2025-02", 100, at(2025, 3, 2))
    arrivals = [lambda: _receipt(rt, f"m-1-{w.C}", w.E, "2025-02", 1, at(2025, 3, 3)),
                lambda: _receipt(rt, f"m-3-{w.C}", w.E, "2025-02", 1, at(2025, 3, 3)),
                lambda: _receipt(rt, f"m-9-{w.C}", w.E, "2025-01", 1, at(2025, 3, 3))]
    seen = _walk(client, "/v1/tax-receipts", {"enterprise": w.E, "month": "2025-02"}, "receipts", "receipt_id",
                 arrivals, limit=1)
    assert seen == sorted(seen) and len(seen) == len(set(seen)), seen
    assert {f"m-2-{w.C}", f"m-4-{w.C}"} <= set(seen) <= {f"m-{i}-{w.C}" for i in (1, 2, 3, 4)}, seen
    ags = _walk(client, "/v1/agreements", {"county": w.C}, "agreements", "agreement_id", limit=1)
    assert ags == [f"AG{w.C}"], ags
    foreign = client.get("/v1/agreements", params={"county": w.C, "after": f"AG{v.C}"}, headers=ADMIN).json()
    expected = [f"AG{w.C}"] if f"AG{w.C}" > f"AG{v.C}" else []
    assert [x["agreement_id"] for x in foreign["agreements"]] == expected and foreign["next_after"] is None
    _limit_edges(client, "/v1/agreements", {}, 500)
    _limit_edges(client, "/v1/tax-receipts", {}, 1000)
    for key in ODD_KEYS:
        for path in ("/v1/agreements", "/v1/tax-receipts"):
            _never_5xx_and_4xx_says_why(client.get(path, params={"after": key}, headers=ADMIN), (path, key[:9]))

    _finalize(rt, w.C, "2025-01", at(2025, 2, 5))
    S = f"/v1/counties/{w.C}/periods/2025-01/statement"
    comp = client.get(S, params={"kind": "compensation", "limit": 1000}, headers=ADMIN).json()
    n = comp["matching_lines"]
    assert n == len(comp["lines"]) > 0 and all(ln["kind"] == "compensation" for ln in comp["lines"])
    exact = client.get(S, params={"kind": "compensation", "limit": n}, headers=ADMIN).json()
    assert exact["next_after_line"] is None and exact["lines"] == comp["lines"]
    if n > 1:
        short = client.get(S, params={"kind": "compensation", "limit": n - 1}, headers=ADMIN).json()
        assert short["next_after_line"] == short["lines"][-1]["line_no"]
        rest = client.get(S, params={"kind": "compensation", "after_line": short["next_after_line"]}, headers=ADMIN)
        assert short["lines"] + rest.json()["lines"] == comp["lines"] and rest.json()["next_after_line"] is None
    _limit_edges(client, S, {}, 1000)
