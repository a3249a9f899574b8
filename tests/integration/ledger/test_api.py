"""The ledger's HTTP API on SQLite and PostgreSQL: amounts, 404s, point-in-time balances, pagination,
journal verification and tampering, auth."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from tests.integration.ledger.harness import ENT, POOL, REG, STANDARD_ACCOUNTS, cod_transfer, served_ledger
from tests.support.services import ADMIN, auth

@pytest.fixture
def ledger(db_url, kafka_bootstrap):
    with served_ledger(db_url, kafka_bootstrap, STANDARD_ACCOUNTS) as served:
        yield served


_t = cod_transfer


def post(client, *transfers, headers=ADMIN):
    return client.post("/v1/transfers", headers=headers, json={"transfers": list(transfers)})


@pytest.mark.parametrize("amount, reason", [
    ("1.00001", "amount_exceeds_scale"), ("-1", "amount_must_not_be_negative"), ("0", "amount_must_not_be_zero"),
    ("abc", "invalid_request"), (1.5, "invalid_request"), ("922337203685477.5808", "amount_too_large"),
    ("123456789012345678901234567890", "amount_too_large"),
])
def test_bad_amounts_are_422_with_a_reason_and_change_nothing(ledger, amount, reason):
    _, client = ledger
    r = post(client, _t("bad", REG, POOL, amount))
    assert r.status_code == 422 and r.json()["reason"] == reason
    assert client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json()["balance"] == "0.0000"
    assert client.get("/v1/transfers/bad", headers=ADMIN).status_code == 404


def test_unknown_account_and_asset_are_404_not_zero(ledger):
    _, client = ledger
    for path in ("/v1/accounts/county:320612/pool/NOPE", "/v1/accounts/county:999999/pool/COD/balance",
                 "/v1/accounts/nobody/entries", "/v1/assets/GOLD", "/v1/transfers/none"):
        r = client.get(path, headers=ADMIN)
        assert r.status_code == 404, path
        assert r.json()["reason"].endswith("not_found")
    r = client.post("/v1/balances:query", headers=ADMIN, json={"account_ids": [POOL, "missing/COD"]})
    assert r.status_code == 404 and "missing/COD" in r.json()["message"]
    r = post(client, _t("x", REG, POOL, "1", asset="GOLD"))
    assert r.status_code == 422 and r.json()["reason"] == "asset_unknown"


def test_batch_results_balances_and_point_in_time(ledger):
    _, client = ledger
    r = post(client, _t("rel-1", REG, POOL, "12.5"), _t("rel-2", REG, POOL, "0.0001"), _t("over", POOL, ENT, "99"))
    assert [x["result"] for x in r.json()["results"]] == ["ok", "ok", "exceeds_credits"]
    bal = client.get(f"/v1/accounts/{POOL}/balance", headers=ADMIN).json()
    assert bal["balance"] == "12.5001" and bal["credits_posted"] == "12.5001"
    seq_after_first = bal["as_of_seq"] - 1
    early = client.get(f"/v1/accounts/{POOL}/balance", params={"at_seq": seq_after_first}, headers=ADMIN).json()
    assert early["balance"] == "12.5000"
    before_all = client.get(f"/v1/accounts/{POOL}/balance", params={"as_of": "2000-01-01T00:00:00+00:00"}, headers=ADMIN)
    assert before_all.status_code == 404 and before_all.json()["reason"] == "account_not_found_at"
    now = client.get(f"/v1/accounts/{POOL}/balance", params={"as_of": datetime.now(timezone.utc).isoformat()}, headers=ADMIN)
    assert now.json()["balance"] == "12.5001"
    many = client.get("/v1/balances", params={"address_prefix": "county:320612/"}, headers=ADMIN).json()
    assert [b["account_id"] for b in many] == [POOL]
    sums = {b["account_id"]: b["balance"] for b in client.post("/v1/balances:query", headers=ADMIN,
                                                                   json={"account_ids": [REG, POOL]}).json()}
    assert sums == {REG: "-12.5001", POOL: "12.5001"}, "every asset sums to zero"


def test_pending_post_partial_and_pending_listing(ledger):
    _, client = ledger
    post(client, _t("rel", REG, POOL, "10"))
    r = post(client, _t("res", POOL, ENT, "4", pending=True, timeout_seconds=3600))
    assert r.json()["results"][0]["result"] == "ok"
    assert client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json()["available"] == "6.0000"
    pend = client.get(f"/v1/accounts/{POOL}/pending", headers=ADMIN).json()
    assert [p["transfer_id"] for p in pend] == ["res"]
    r = post(client, {"transfer_id": "post-res", "asset": "COD", "amount": "3", "post_pending_id": "res"})
    assert r.json()["results"][0]["result"] == "ok"
    t = client.get("/v1/transfers/res", headers=ADMIN).json()
    assert (t["status"], t["posted_amount"]) == ("posted_pending", "3.0000")
    assert client.get(f"/v1/accounts/{ENT}", headers=ADMIN).json()["balance"] == "3.0000"
    assert client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json()["available"] == "7.0000"
    assert client.get(f"/v1/accounts/{POOL}/pending", headers=ADMIN).json() == []


def test_idempotency_and_failed_ids_over_http(ledger):
    _, client = ledger
    first = post(client, _t("once", REG, POOL, "5")).json()["results"][0]["result"]
    again = post(client, _t("once", REG, POOL, "5")).json()["results"][0]["result"]
    other = post(client, _t("once", REG, POOL, "6")).json()["results"][0]["result"]
    assert (first, again, other) == ("ok", "exists", "exists_with_different_amount")
    assert post(client, _t("fail", POOL, ENT, "50")).json()["results"][0]["result"] == "exceeds_credits"
    post(client, _t("more", REG, POOL, "100"))
    assert post(client, _t("fail", POOL, ENT, "50")).json()["results"][0]["result"] == "exceeds_credits", "stays failed"
    r = client.get("/v1/transfers/fail", headers=ADMIN)
    assert r.status_code == 404 and r.json()["reason"] == "transfer_failed"


def test_the_stated_asset_must_be_the_accounts_and_is_compared_on_retry(ledger):
    """'1' CNY is 100 fen; between COD accounts those 100 units would be 0.0100 t: refused, per transfer."""
    _, client = ledger
    r = post(client, _t("cny", REG, POOL, "1", asset="CNY"), _t("cod", REG, POOL, "0.01"))
    assert r.status_code == 200 and not r.json()["ok"]
    assert [x["result"] for x in r.json()["results"]] == ["asset_differs_from_accounts", "ok"]
    assert client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json()["balance"] == "0.0100", "only 'cod' moved"
    assert client.get("/v1/transfers/cny", headers=ADMIN).json()["details"] == {"result": "asset_differs_from_accounts"}
    # the same id and units (100), another asset: named, not 'exists'
    assert post(client, _t("cod", REG, POOL, "1", asset="CNY")).json()["results"][0]["result"] \
        == "exists_with_different_asset"
    post(client, _t("res", POOL, ENT, "0.005", pending=True))
    r = post(client, {"transfer_id": "post-res", "asset": "CNY", "amount": "0", "post_pending_id": "res"})
    assert r.json()["results"][0]["result"] == "asset_differs_from_accounts", "a post: the pending's asset"
    assert client.get("/v1/transfers/res", headers=ADMIN).json()["status"] == "pending"


def test_entries_are_paginated_in_a_stable_order(ledger):
    _, client = ledger
    post(client, *[_t(f"e{i}", REG, POOL, "1") for i in range(7)])
    seen, after = [], 0
    while True:
        page = client.get(f"/v1/accounts/{POOL}/entries", params={"after_seq": after, "limit": 3}, headers=ADMIN).json()
        seen += [e["transfer_id"] for e in page["entries"]]
        if page["next_after_seq"] is None:
            break
        after = page["next_after_seq"]
    assert seen == [""] + [f"e{i}" for i in range(7)], "account_created first, then each transfer once"


def test_tampering_with_one_journal_row_breaks_verification_at_that_row(ledger):
    rt, client = ledger
    post(client, *[_t(f"v{i}", REG, POOL, "1") for i in range(5)])
    ok = client.get("/v1/journal/verify", headers=ADMIN).json()
    assert ok["ok"] and ok["checked"] == ok["head_seq"] == 8
    with rt.db.engine.begin() as c:
        row = c.execute(text("SELECT seq, payload FROM journal WHERE transfer_id = 'v2'")).one()
        payload = json.loads(row.payload)
        payload["amount"] = 1000000
        c.execute(text("UPDATE journal SET payload = :p WHERE seq = :s"), {"p": json.dumps(payload, sort_keys=True, separators=(",", ":")), "s": row.seq})
    bad = client.get("/v1/journal/verify", headers=ADMIN).json()
    assert (bad["ok"], bad["first_broken_seq"], bad["reason"]) == (False, row.seq, "hash_mismatch")
    from_checkpoint = client.get("/v1/journal/verify", params={"from_seq": row.seq + 1}, headers=ADMIN).json()
    assert from_checkpoint["ok"], "from a checkpoint after the damage, the rest verifies"
    with rt.db.engine.begin() as c:
        c.execute(text("UPDATE journal SET payload = :p WHERE seq = :s"), {"p": row.payload, "s": row.seq})
        c.execute(text("UPDATE journal SET d_credits_posted = 5 WHERE transfer_id = 'v3'"))
    cols = client.get("/v1/journal/verify", headers=ADMIN).json()
    assert (cols["ok"], cols["reason"], cols["first_broken_seq"]) == (False, "columns_disagree_with_payload", row.seq + 1)


def test_auth_on_ledger_endpoints(ledger):
    _, client = ledger
    assert post(client, _t("a", REG, POOL, "1"), headers={}).status_code == 401
    assert post(client, _t("a", REG, POOL, "1"), headers=auth("dev-finance-token")).status_code == 403
    assert client.get(f"/v1/accounts/{POOL}", headers=auth("dev-finance-token")).status_code == 200
    assert client.get(f"/v1/accounts/{POOL}").status_code == 401


def test_background_auditor_flags_a_tampered_journal(ledger):
    rt, client = ledger
    auditor = client.app.state.auditor
    post(client, *[_t(f"a{i}", REG, POOL, "1") for i in range(3)])
    assert auditor.run_once() and auditor.checked_seq == 6
    post(client, _t("a3", REG, POOL, "1"))
    assert auditor.run_once() and auditor.checked_seq == 7, "incremental"
    with rt.db.engine.begin() as c:
        c.execute(text("UPDATE journal SET hash = :h WHERE seq = 7"), {"h": "f" * 64})
    assert not auditor.run_once() and auditor.broken_at == 7
    assert "countypool_ledger_journal_verified 0.0" in client.get("/metrics").text
