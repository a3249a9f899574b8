"""The ledger's read API at its edges, on SQLite and PostgreSQL: transfer ids with slashes, address prefixes
with LIKE's wildcards and another case, as_of with a '+' offset written as such in a URL and at the ends of
time, pending transfers past one page, an account's entries in a long journal."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, text

from services.ledger.storage.repository import LedgerRepository
from tests.integration.ledger.harness import POOL, REG, cod_transfer, pausing, served_ledger
from tests.support.services import ADMIN

PRJ = "project:P1/COD"
ODD = "park:P_1%/COD"  # an address with LIKE's wildcards in it
PX = "park:PX1/COD"  # what "park:P_1" would match were '_' a wildcard


@pytest.fixture
def ledger(db_url, kafka_bootstrap):
    with served_ledger(db_url, kafka_bootstrap, [(REG, "external:rights-register"), (POOL, "county:320612/pool"),
                                                 (PRJ, "project:P1"), (ODD, "park:P_1%"), (PX, "park:PX1")]) as served:
        yield served


_t = cod_transfer


def post(client, *transfers):
    r = client.post("/v1/transfers", headers=ADMIN, json={"transfers": list(transfers)})
    assert r.status_code == 200 and r.json()["ok"], r.text
    return r.json()


def test_a_transfer_id_with_slashes_is_found_plain_or_percent_encoded(ledger):
    _, client = ledger
    post(client, _t("quota/intake/L1/COD", REG, POOL, "10"), _t("quota/reserve/R1/COD", POOL, PRJ, "1", pending=True))
    for path in ("/v1/transfers/quota/reserve/R1/COD", "/v1/transfers/quota%2Freserve%2FR1%2FCOD"):
        r = client.get(path, headers=ADMIN)
        assert r.status_code == 200, (path, r.text)
        assert (r.json()["transfer_id"], r.json()["status"]) == ("quota/reserve/R1/COD", "pending")
    r = client.get("/v1/transfers/quota/reserve/R9/COD", headers=ADMIN)
    assert (r.status_code, r.json()["reason"]) == (404, "transfer_not_found")


def test_an_address_prefix_matches_exactly_its_characters(ledger):
    _, client = ledger

    def ids(prefix):
        r = client.get("/v1/balances", params={"address_prefix": prefix}, headers=ADMIN)
        assert r.status_code == 200, r.text
        return [b["account_id"] for b in r.json()]

    assert ids("county:320612/") == [POOL]
    assert ids("COUNTY:320612/") == [], "another case is another address (SQLite's LIKE ignores case)"
    assert ids("County:") == []
    assert ids("park:P_1") == [ODD], "'_' is a character, not any character"
    assert ids("park:P_") == [ODD]
    assert ids("park:P%") == [], "'%' is a character, not any characters"
    assert ids("park:P_1%") == [ODD]
    assert ids("PARK:") == []
    assert ids("park:") == sorted([ODD, PX])


def test_as_of_with_an_offset_a_url_did_not_encode(ledger):
    _, client = ledger
    post(client, _t("rel-1", REG, POOL, "5"))
    url = f"/v1/accounts/{POOL}/balance"
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).astimezone(timezone(timedelta(hours=8)))
    typed = later.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    # written into the URL as is, its '+' is a space once decoded: still the +08:00 the caller meant
    r = client.get(f"{url}?as_of={typed}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["balance"] == "5.0000"
    earlier = client.get(f"{url}?as_of=2000-01-01T08:00:00+08:00", headers=ADMIN)
    assert (earlier.status_code, earlier.json()["reason"]) == (404, "account_not_found_at")
    assert client.get(f"{url}?as_of={typed.replace('+08:00', '')}", headers=ADMIN).json()["reason"] \
        == "as_of_needs_timezone", "without an offset it is still refused"


def test_as_of_at_the_ends_of_time(ledger):
    """Moments a datetime holds only in their own zone (past year 9999, or before year 1, in UTC): after, or
    before, every entry; not a 422."""
    _, client = ledger
    post(client, _t("rel-1", REG, POOL, "5"))
    url = f"/v1/accounts/{POOL}/balance"
    far = client.get(url, params={"as_of": "9999-12-31T23:00:00-05:00"}, headers=ADMIN)
    assert far.status_code == 200, far.text
    assert far.json()["balance"] == "5.0000"
    assert far.json()["as_of_seq"] == client.get(url, headers=ADMIN).json()["as_of_seq"]
    first = client.get(url, params={"as_of": "0001-01-01T01:00:00+05:00"}, headers=ADMIN)
    assert (first.status_code, first.json()["reason"]) == (404, "account_not_found_at")


def test_pending_transfers_past_one_page_are_all_listed(ledger):
    _, client = ledger
    post(client, _t("fund", REG, POOL, "100"))
    for i in range(7):  # one request each: each its own timestamp
        post(client, _t(f"quota/reserve/R{i}/COD", POOL, PRJ, "1", pending=True, timeout_seconds=3600))
    everything = client.get(f"/v1/accounts/{POOL}/pending", headers=ADMIN)
    assert "link" not in everything.headers
    assert [p["transfer_id"] for p in everything.json()] == [f"quota/reserve/R{i}/COD" for i in range(7)]
    seen, url = [], f"/v1/accounts/{POOL}/pending?limit=3"
    while url:
        r = client.get(url, headers=ADMIN)
        assert r.status_code == 200, r.text
        seen += [p["transfer_id"] for p in r.json()]
        url = r.links.get("next", {}).get("url")
    assert seen == [p["transfer_id"] for p in everything.json()]
    # a transfer resolved between two pages still marks the place
    first = client.get(f"/v1/accounts/{POOL}/pending", params={"limit": 2}, headers=ADMIN)
    post(client, {"transfer_id": "void-R1", "asset": "COD", "amount": "0", "void_pending_id": "quota/reserve/R1/COD"})
    rest, url = [], first.links["next"]["url"]
    while url:
        r = client.get(url, headers=ADMIN)
        rest += [p["transfer_id"] for p in r.json()]
        url = r.links.get("next", {}).get("url")
    assert rest == [f"quota/reserve/R{i}/COD" for i in range(2, 7)]
    r = client.get(f"/v1/accounts/{POOL}/pending", params={"after": "nope"}, headers=ADMIN)
    assert (r.status_code, r.json()["reason"]) == (404, "transfer_not_found")


def test_an_account_with_few_entries_is_read_without_scanning_the_journal(ledger):
    """Its entries are found through the journal's indexes (debit, credit, and its account_created entry by seq):
    not one row of a 20,000-row journal read and dropped by a filter."""
    rt, client = ledger
    with rt.db.engine.begin() as c:
        head = c.execute(text("SELECT seq FROM journal_head")).scalar_one()
        c.execute(text(
            "INSERT INTO journal (seq, kind, transfer_id, account_id, debit_account_id, credit_account_id, "
            "d_debits_pending, d_debits_posted, d_credits_pending, d_credits_posted, payload, recorded_at, "
            "prev_hash, hash) "
            + ("SELECT g, 'transfer_posted', 'x' || g, NULL, 'other' || (g % 50), 'another' || (g % 50), 0, 1, 0, 1, "
               "'{}', :at, '', '' FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) AS g" if rt.db.is_postgres else
               "WITH RECURSIVE g(n) AS (SELECT :a UNION ALL SELECT n + 1 FROM g WHERE n < :b) "
               "SELECT n, 'transfer_posted', 'x' || n, NULL, 'other' || (n % 50), 'another' || (n % 50), 0, 1, 0, 1, "
               "'{}', :at, '', '' FROM g")), {"a": head + 1, "b": head + 20_000, "at": datetime.now(timezone.utc)})
        c.execute(text("ANALYZE"))
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM journal" in statement and "ORDER BY journal.seq" in statement:
            statements.append((statement, parameters))

    event.listen(rt.db.engine, "before_cursor_execute", capture)
    try:
        page = client.get(f"/v1/accounts/{PRJ}/entries", headers=ADMIN).json()
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", capture)
    assert [e["kind"] for e in page["entries"]] == ["account_created"] and page["next_after_seq"] is None
    (statement, parameters), = statements
    with rt.db.engine.connect() as c:
        if rt.db.is_postgres:
            plan = c.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar_one()
            assert _removed_by_filter(plan) < 100, plan
        else:
            plan = " / ".join(r[3] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
            assert "MULTI-INDEX OR" in plan, plan
    with rt.db.sessions() as s:  # the repository without the account's created_seq: the same entries
        assert [r.seq for r in LedgerRepository(s).entries(PRJ, 0, 10)] == [e["seq"] for e in page["entries"]]


def _removed_by_filter(node) -> int:
    if isinstance(node, list):
        return sum(_removed_by_filter(n) for n in node)
    if isinstance(node, dict):
        return node.get("Rows Removed by Filter", 0) + sum(_removed_by_filter(v) for v in node.values())
    return 0


def test_verifying_the_whole_journal_leaves_the_writers_going(ledger, monkeypatch):
    """GET /v1/journal/verify reads every entry: paused in the middle, it must not hold the ledger's writers
    (SQLite: a session takes the write lock, BEGIN IMMEDIATE, unless it asks for a read snapshot)."""
    import services.ledger.api.routes as routes

    _, client = ledger
    post(client, *[_t(f"v{i}", REG, POOL, "1") for i in range(3)])
    paused, release = threading.Event(), threading.Event()
    monkeypatch.setattr(routes, "verify", pausing(routes.verify, paused, release))
    verdicts: list[dict] = []
    checking = threading.Thread(target=lambda: verdicts.append(client.get("/v1/journal/verify", headers=ADMIN).json()))
    checking.start()
    writer = threading.Thread(target=lambda: post(client, _t("w", REG, POOL, "1")))
    try:
        assert paused.wait(10)
        writer.start()
        writer.join(5)
        assert not writer.is_alive(), "the writer waited for the verification"
    finally:
        release.set()
        checking.join(30)
        writer.join(60)
    assert verdicts[0]["ok"] and verdicts[0]["checked"] == verdicts[0]["head_seq"] == 8
    monkeypatch.undo()
    assert client.get("/v1/journal/verify", headers=ADMIN).json()["head_seq"] == 9
