"""Traceability review of issue 3 (the ledger), requirement by requirement, on SQLite and PostgreSQL: what no other
test held, and what an auditor trying to break it found.

- accounts: every address kind and its default flags, flags chosen at creation, each per-item refusal, and what
  each flag does to a transfer, through the HTTP API;
- amounts: every asset's scale at its smallest unit and one decimal past it, and each kind of "not a number";
- a pending transfer seen from both of its accounts, through its whole life, with its references and metadata;
- the batch endpoint taking thousands of transfers in one request (past group commit, COPY on PostgreSQL);
- nothing in the journal is ever updated or deleted (database triggers refuse it while a whole life runs), and
  no route changes or removes anything;
- one moment per batch: a hold whose timeout passes while a batch waits for the journal head must not both be
  refused as expired and still count against the account;
- a balance as of a time never counts an entry recorded after that time, even when two writers' clocks disagree;
- PostgreSQL: a deadlock is retried and counted; writers touching accounts in opposite orders never deadlock;
- the ledger's own metrics after traffic, with bounded labels;
- which result code wins when several apply, as TigerBeetle's state machine decides (src/state_machine.zig:
  create_transfer, create_transfer_exists, post_or_void_pending_transfer).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select, text

from services.ledger.api import routes
from services.ledger.domain import NewAccount
from services.ledger.domain import TransferRequest as T
from services.ledger.domain import TransferResult as R
from services.ledger.domain import TransferStatus as S
from services.ledger.domain.balances import balance_as_of
from services.ledger.handlers import LedgerApp
from services.ledger.storage.repository import LedgerRepository, journal_entry_from_row
from services.ledger.storage.tables import messaging
from tests.integration.ledger.harness import ENT, POOL, REG, STANDARD_ACCOUNTS, SqlLedger, cod_transfer, served_ledger
from tests.support.services import ADMIN

T0 = datetime(2026, 6, 30, 15, 59, 0, tzinfo=timezone.utc)
MINT, PRJ = "external:mint/COD", "project:P1/COD"
ACCOUNTS = [NewAccount(MINT, "COD", "external:mint"), NewAccount(POOL, "COD", "county:320612/pool"),
            NewAccount(PRJ, "COD", "project:P1")]
DMNEC = ["debits_must_not_exceed_credits"]


@pytest.fixture
def ledger(db_url, kafka_bootstrap):
    with served_ledger(db_url, kafka_bootstrap, STANDARD_ACCOUNTS + [(PRJ, "project:P1")]) as served:
        yield served


def _post(client, *transfers):
    return client.post("/v1/transfers", headers=ADMIN, json={"transfers": list(transfers)})


def _results(r) -> list[str]:
    assert r.status_code == 200, r.text
    return [x["result"] for x in r.json()["results"]]


def _outbox(db) -> list[dict]:
    o = messaging["outbox"]
    with db.sessions() as s:
        return [json.loads(e) for e in s.execute(select(o.c.envelope).order_by(o.c.position)).scalars()]


def _sql_ledger(url: str, fund: int = 1_000_000) -> SqlLedger:
    led = SqlLedger(url, T0)
    led.open(ACCOUNTS)
    assert led.submit([T("fund", MINT, POOL, fund, code="intake")]).ok
    return led


# -- accounts: addresses, default flags, flags at creation ----------------------------------------------------------

ADDRESS_DEFAULTS = {  # address -> the flags it gets when none are given (issue 3: all but external/issuance)
    "county:320612/pool": DMNEC,  # a county pool
    "county:320612/retired": DMNEC,  # the retired-quota sink
    "township:320612101": DMNEC,
    "park:P01": DMNEC,
    "enterprise:91320612MA1W2B3C4D": DMNEC,  # by its unified social credit code
    "project:P-2026-001": DMNEC,
    "retired:320612": DMNEC,
    "external:world": [],  # the external world
    "issuance:320612": [],
}


def test_account_addresses_default_flags_and_flags_chosen_at_creation(ledger):
    rt, client = ledger
    specs = [{"account_id": f"{address}/CNY", "asset": "CNY", "address": address} for address in ADDRESS_DEFAULTS]
    specs += [
        {"account_id": "park:P02/CNY", "asset": "CNY", "address": "park:P02", "flags": ["credits_must_not_exceed_debits"]},
        {"account_id": "project:SHUT/CNY", "asset": "CNY", "address": "project:SHUT", "flags": ["closed"]},
        {"account_id": "external:lax/CNY", "asset": "CNY", "address": "external:lax", "flags": DMNEC},
        {"account_id": "park:P03/CNY", "asset": "CNY", "address": "park:P03",
         "flags": ["debits_must_not_exceed_credits", "credits_must_not_exceed_debits"]},
        {"account_id": "enterprise:123/CNY", "asset": "CNY", "address": "enterprise:123"},
        {"account_id": "nobody/CNY", "asset": "CNY", "address": "planet:mars"},
        {"account_id": "park:P04/GOLD", "asset": "GOLD", "address": "park:P04"},
        {"account_id": "park:P05/balance", "asset": "CNY", "address": "park:P05"},
        {"account_id": "county:320612/pool/CNY", "asset": "CNY", "address": "county:320612/pool"},  # again: exists
        {"account_id": "county:320612/pool/CNY", "asset": "CNY", "address": "county:320612/pool", "flags": []},
        {"account_id": "county:320612/pool/CNY", "asset": "LAND", "address": "county:320612/pool"},
        {"account_id": "county:320612/pool/CNY", "asset": "CNY", "address": "county:320613/pool"},
    ]
    r = client.post("/v1/accounts", headers=ADMIN, json={"accounts": specs})
    assert r.status_code == 200, r.text
    assert [x["result"] for x in r.json()["results"]] == ["ok"] * (len(ADDRESS_DEFAULTS) + 3) + [
        "flags_are_mutually_exclusive", "address_invalid", "address_invalid", "asset_unknown", "id_reserved_suffix",
        "exists", "exists_with_different_flags", "exists_with_different_asset", "exists_with_different_address"]
    assert r.json()["ok"] is False
    for address, flags in ADDRESS_DEFAULTS.items():
        got = client.get(f"/v1/accounts/{address}/CNY", headers=ADMIN).json()
        assert (got["address"], got["asset"], got["flags"]) == (address, "CNY", flags), address
    for refused in ("park:P03/CNY", "enterprise:123/CNY", "nobody/CNY", "park:P04/GOLD", "park:P05/balance"):
        assert client.get(f"/v1/accounts/{refused}", headers=ADMIN).status_code == 404, refused
    opened = {e["data"]["account_id"]: e["data"]["flags"] for e in _outbox(rt.db)
              if e["type"] == "countypool.AccountOpened.v1" and e["data"]["asset"] == "CNY"}
    assert opened == {**{f"{a}/CNY": f for a, f in ADDRESS_DEFAULTS.items()},
                      "park:P02/CNY": ["credits_must_not_exceed_debits"], "project:SHUT/CNY": ["closed"],
                      "external:lax/CNY": DMNEC}, "AccountOpened once per new account, with its flags"

    def t(tid, dr, cr, amount):
        return {"transfer_id": tid, "debit_account": dr, "credit_account": cr, "asset": "CNY", "amount": amount}

    w, pool, ent = "external:world/CNY", "county:320612/pool/CNY", "enterprise:91320612MA1W2B3C4D/CNY"
    debt, shut, lax = "park:P02/CNY", "project:SHUT/CNY", "external:lax/CNY"
    assert _results(_post(client, t("fund", w, pool, "100.00"), t("over", pool, ent, "100.01"),
                          t("all", pool, ent, "100.00"), t("ent-over", ent, pool, "100.01"),
                          t("shut-dr", shut, w, "1"), t("shut-cr", w, shut, "1"),
                          t("debt-cr", w, debt, "0.01"), t("debt-dr", debt, w, "5"), t("debt-cr2", w, debt, "5"),
                          t("debt-cr3", w, debt, "0.01"), t("lax", lax, w, "0.01"))) == [
        "ok", "exceeds_credits", "ok", "exceeds_credits", "debit_account_closed", "credit_account_closed",
        "exceeds_debits", "ok", "ok", "exceeds_debits", "exceeds_credits"]
    got = {a: client.get(f"/v1/accounts/{a}", headers=ADMIN).json() for a in (w, pool, ent, debt)}
    assert {a: (b["debits_posted"], b["credits_posted"], b["balance"]) for a, b in got.items()} == {
        w: ("105.00", "5.00", "-100.00"),  # the external world may go negative
        pool: ("100.00", "100.00", "0.00"), ent: ("0.00", "100.00", "100.00"),
        debt: ("5.00", "5.00", "0.00")}
    assert {k for k in got[pool]} >= {"debits_pending", "debits_posted", "credits_pending", "credits_posted",
                                      "balance", "available", "flags", "as_of_seq"}


# -- amounts: every asset's scale, and "not a number" -------------------------------------------------------------

SCALES = {"LAND": 4, "ENERGY": 3, "COD": 4, "NH3N": 4, "SO2": 4, "NOX": 4, "VOCS": 4, "CNY": 2}


def test_every_assets_scale_and_each_bad_amount_is_a_422_with_its_reason(ledger):
    _, client = ledger
    assert {a["code"]: a["scale"] for a in client.get("/v1/assets", headers=ADMIN).json()} == SCALES
    assert {a["code"]: a["unit"] for a in client.get("/v1/assets", headers=ADMIN).json()} == {
        "LAND": "亩", "ENERGY": "tce", "COD": "t", "NH3N": "t", "SO2": "t", "NOX": "t", "VOCS": "t", "CNY": "元"}
    r = client.post("/v1/accounts", headers=ADMIN, json={"accounts": [
        {"account_id": f"{who}/{a}", "asset": a, "address": who} for a in SCALES
        for who in ("external:mint", "county:320612/pool")]})
    assert r.json()["ok"], r.text
    for asset, scale in SCALES.items():
        smallest = "0." + "0" * (scale - 1) + "1"
        tid = f"smallest-{asset}"
        ok = _post(client, {"transfer_id": tid, "debit_account": f"external:mint/{asset}",
                            "credit_account": f"county:320612/pool/{asset}", "asset": asset, "amount": smallest})
        assert _results(ok) == ["ok"], asset
        assert client.get(f"/v1/accounts/county:320612/pool/{asset}", headers=ADMIN).json()["balance"] == smallest
        assert client.get(f"/v1/transfers/{tid}", headers=ADMIN).json()["amount"] == smallest
        bad = _post(client, {"transfer_id": f"finer-{asset}", "debit_account": f"external:mint/{asset}",
                             "credit_account": f"county:320612/pool/{asset}", "asset": asset, "amount": smallest + "1"})
        assert (bad.status_code, bad.json()["reason"], bad.json()["details"]) == (
            422, "amount_exceeds_scale", {"index": 0}), asset
        assert str(scale) in bad.json()["message"], bad.json()["message"]
    # the same figure with trailing zeros past the scale is the same exact amount, not a finer one
    assert _results(_post(client, cod_transfer("zeros", REG, POOL, "1.000000"))) == ["ok"]
    assert client.get("/v1/transfers/zeros", headers=ADMIN).json()["amount"] == "1.0000"
    for amount, reason in [("-0.0001", "amount_must_not_be_negative"), ("0", "amount_must_not_be_zero"),
                           ("0.0000", "amount_must_not_be_zero"), ("abc", "invalid_request"),
                           ("1e3", "invalid_request"), ("NaN", "invalid_request"), ("Infinity", "invalid_request"),
                           ("", "invalid_request"), ("1,5", "invalid_request"), ("0x10", "invalid_request"),
                           (".5", "invalid_request"), (1.5, "invalid_request"), (2, "invalid_request"),
                           (None, "invalid_request")]:
        r = _post(client, cod_transfer("fine", REG, POOL, "1"), cod_transfer("bad", REG, POOL, amount))
        assert (r.status_code, r.json()["reason"]) == (422, reason), (amount, r.text)
        if reason == "invalid_request":
            assert [d["field"] for d in r.json()["details"]] == ["body.transfers.1.amount"], (amount, r.text)
        else:
            assert r.json()["details"] == {"index": 1}, amount
        assert client.get("/v1/transfers/fine", headers=ADMIN).status_code == 404, "the request is refused whole"
    # zero is allowed on a post or void only (the pending's full amount); a pending transfer of zero is refused
    pending_zero = _post(client, cod_transfer("hold0", REG, POOL, "0", pending=True, timeout_seconds=60))
    assert (pending_zero.status_code, pending_zero.json()["reason"]) == (422, "amount_must_not_be_zero")
    assert _results(_post(client, cod_transfer("hold", POOL, PRJ, "0.5", pending=True))) == ["ok"]
    neg = _post(client, {"transfer_id": "post-neg", "asset": "COD", "amount": "-0.0001", "post_pending_id": "hold"})
    assert (neg.status_code, neg.json()["reason"]) == (422, "amount_must_not_be_negative")
    assert _results(_post(client, {"transfer_id": "post", "asset": "COD", "amount": "0", "post_pending_id": "hold"})) \
        == ["ok"]
    assert client.get(f"/v1/accounts/{PRJ}", headers=ADMIN).json()["balance"] == "0.5000"


# -- a pending transfer from both sides, with its references and metadata ------------------------------------------

def test_a_pending_transfer_from_both_of_its_accounts_with_its_references(ledger):
    rt, client = ledger
    assert _results(_post(client, cod_transfer("fund", REG, POOL, "10", refs=["REL-1", "文书-7"],
                                               metadata={"lot": "L-1", "部门": "生态环境局"}))) == ["ok"]
    t = client.get("/v1/transfers/fund", headers=ADMIN).json()
    assert (t["code"], t["refs"], t["metadata"], t["status"]) == (
        "test", ["REL-1", "文书-7"], {"lot": "L-1", "部门": "生态环境局"}, "posted")
    assert _results(_post(client, cod_transfer("res", POOL, PRJ, "4", pending=True, timeout_seconds=3600,
                                               refs=["REQ-9"], metadata={"request": "R9"}))) == ["ok"]
    res = client.get("/v1/transfers/res", headers=ADMIN).json()
    assert res["status"] == "pending" and res["posted_amount"] is None
    assert datetime.fromisoformat(res["expires_at"]) - datetime.fromisoformat(res["timestamp"]) == timedelta(hours=1)
    for account, side in ((POOL, "debits_pending"), (PRJ, "credits_pending")):
        listed = client.get(f"/v1/accounts/{account}/pending", headers=ADMIN).json()
        assert [p["transfer_id"] for p in listed] == ["res"], account
        assert client.get(f"/v1/accounts/{account}", headers=ADMIN).json()[side] == "4.0000", account
    assert client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json()["available"] == "6.0000"
    assert client.get(f"/v1/accounts/{PRJ}", headers=ADMIN).json()["balance"] == "0.0000", "held, not yet theirs"
    assert client.get(f"/v1/accounts/{REG}/pending", headers=ADMIN).json() == []
    post = {"transfer_id": "post-res", "asset": "COD", "amount": "2.5", "post_pending_id": "res", "refs": ["APPROVAL-1"]}
    assert _results(_post(client, post)) == ["ok"]
    assert _results(_post(client, {"transfer_id": "void-res", "asset": "COD", "amount": "0", "void_pending_id": "res"},
                          {"transfer_id": "post-res-2", "asset": "COD", "amount": "1", "post_pending_id": "res"})) \
        == ["pending_transfer_already_posted"] * 2
    for account in (POOL, PRJ):
        assert client.get(f"/v1/accounts/{account}/pending", headers=ADMIN).json() == [], account
    got = {a: client.get(f"/v1/accounts/{a}", headers=ADMIN).json() for a in (POOL, PRJ)}
    assert (got[POOL]["debits_pending"], got[POOL]["debits_posted"], got[POOL]["available"]) == (
        "0.0000", "2.5000", "7.5000"), "the remainder (1.5) released"
    assert (got[PRJ]["credits_pending"], got[PRJ]["credits_posted"]) == ("0.0000", "2.5000")
    res = client.get("/v1/transfers/res", headers=ADMIN).json()
    assert (res["status"], res["posted_amount"], res["resolved_by"]) == ("posted_pending", "2.5000", "post-res")
    p = client.get("/v1/transfers/post-res", headers=ADMIN).json()
    assert (p["amount"], p["refs"], p["post_pending_id"], p["debit_account"], p["credit_account"]) == (
        "2.5000", ["APPROVAL-1"], "res", POOL, PRJ), "a post takes the pending's accounts"
    events = {(e["type"].split(".")[1], e["data"]["transfer_id"]): e["data"] for e in _outbox(rt.db)
              if "transfer_id" in e["data"]}
    assert (events[("TransferPosted", "fund")]["refs"], events[("TransferPosted", "fund")]["metadata"]) == (
        ["REL-1", "文书-7"], {"lot": "L-1", "部门": "生态环境局"})
    assert events[("TransferPending", "res")]["metadata"] == {"request": "R9"}
    assert (events[("TransferPosted", "post-res")]["amount"], events[("TransferPosted", "post-res")]["pending_id"]) \
        == ("2.5000", "res")
    assert events[("TransferRejected", "void-res")]["reason"] == "pending_transfer_already_posted"
    with rt.db.sessions() as s:  # the references are in the hashed journal, not only in the transfers table
        payload = json.loads(s.execute(text("SELECT payload FROM journal WHERE transfer_id = 'fund'")).scalar_one())
    assert (payload["ref.0"], payload["ref.1"], payload["meta.lot"], payload["meta.部门"]) == (
        "REL-1", "文书-7", "L-1", "生态环境局")


# -- the batch endpoint: thousands in one request ----------------------------------------------------------------

def test_the_batch_endpoint_takes_thousands_of_transfers_in_one_request(ledger):
    """2,600 transfers in one POST (past group commit's 100 and the outbox's 64-row INSERT line: COPY on
    PostgreSQL): a release per lot, pending holds, posts and voids of holds made earlier in the same request, a
    linked chain that fails in the middle, an overdraft and a retry inside the batch; each answered at its index."""
    rt, client = ledger
    batch, want = [], []
    for i in range(1000):
        batch.append(cod_transfer(f"rel-{i}", REG, POOL, "1"))
        want.append("ok")
    for i in range(600):
        batch.append(cod_transfer(f"hold-{i}", POOL, PRJ, "0.5", pending=True, timeout_seconds=3600))
        want.append("ok")
    for i in range(300):
        batch.append({"transfer_id": f"post-{i}", "asset": "COD", "amount": "0.2", "post_pending_id": f"hold-{i}"})
        batch.append({"transfer_id": f"void-{i + 300}", "asset": "COD", "amount": "0",
                      "void_pending_id": f"hold-{i + 300}"})
        want += ["ok", "ok"]
    batch += [cod_transfer("chain-a", POOL, ENT, "1", linked=True), cod_transfer("chain-b", ENT, POOL, "5", linked=True),
              cod_transfer("chain-c", POOL, ENT, "1")]
    want += ["linked_event_failed", "exceeds_credits", "linked_event_failed"]
    batch += [cod_transfer("too-much", POOL, ENT, "100000"), cod_transfer("rel-0", REG, POOL, "1"),
              cod_transfer("rel-1", REG, POOL, "2")]
    want += ["exceeds_credits", "exists", "exists_with_different_amount"]
    for i in range(394):  # 2,600 in all
        batch.append(cod_transfer(f"out-{i}", POOL, ENT, "0.01"))
        want.append("ok")
    assert len(batch) == 2600
    r = _post(client, *batch)
    assert r.status_code == 200, r.text[:500]
    got = r.json()["results"]
    assert [x["index"] for x in got] == list(range(2600))
    assert [x["id"] for x in got] == [b["transfer_id"] for b in batch]
    assert [x["result"] for x in got] == want
    pool = client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json()
    # 1,000 in; 300 holds posted at 0.2; 394 x 0.01 out
    assert (pool["credits_posted"], pool["debits_posted"], pool["debits_pending"]) == ("1000.0000", "63.9400", "0.0000")
    assert client.get(f"/v1/accounts/{PRJ}", headers=ADMIN).json()["credits_posted"] == "60.0000"
    assert client.get("/v1/transfers/chain-b", headers=ADMIN).json()["details"] == {"result": "exceeds_credits"}
    assert client.get("/v1/transfers/chain-a", headers=ADMIN).json()["reason"] == "transfer_not_found"
    v = client.get("/v1/journal/verify", headers=ADMIN).json()
    assert v["ok"] and v["checked"] == v["head_seq"], v
    events = [e for e in _outbox(rt.db) if "transfer_id" in e["data"]]
    assert len(events) == sum(1 for w in want if w not in ("exists", "exists_with_different_amount")), \
        "one outcome event per transfer that did something new"
    too_many = _post(client, *[cod_transfer(f"x-{i}", REG, POOL, "1") for i in range(10_001)])
    assert (too_many.status_code, too_many.json()["reason"]) == (422, "invalid_request")
    assert client.get("/v1/transfers/x-0", headers=ADMIN).status_code == 404


# -- nothing in the journal is ever updated or deleted --------------------------------------------------------------

_SQLITE_GUARDS = [
    "CREATE TRIGGER audit_journal_no_update BEFORE UPDATE ON journal BEGIN SELECT RAISE(ABORT, 'journal update'); END",
    "CREATE TRIGGER audit_journal_no_delete BEFORE DELETE ON journal BEGIN SELECT RAISE(ABORT, 'journal delete'); END",
    "CREATE TRIGGER audit_failed_no_update BEFORE UPDATE ON failed_transfers "
    "BEGIN SELECT RAISE(ABORT, 'failed id update'); END",
    "CREATE TRIGGER audit_failed_no_delete BEFORE DELETE ON failed_transfers "
    "BEGIN SELECT RAISE(ABORT, 'failed id delete'); END",
    "CREATE TRIGGER audit_transfers_no_delete BEFORE DELETE ON transfers "
    "BEGIN SELECT RAISE(ABORT, 'transfer delete'); END",
    # a transfer's terms never change: only a pending one's status and resolution
    "CREATE TRIGGER audit_transfers_terms BEFORE UPDATE OF id, debit_account_id, credit_account_id, asset, amount, "
    "code, pending, timeout_seconds, post_pending_id, void_pending_id, linked, refs, metadata, timestamp, expires_at "
    "ON transfers BEGIN SELECT RAISE(ABORT, 'transfer terms update'); END",
    "CREATE TRIGGER audit_accounts_no_delete BEFORE DELETE ON accounts BEGIN SELECT RAISE(ABORT, 'account delete'); END",
    "CREATE TRIGGER audit_accounts_terms BEFORE UPDATE OF id, asset, address, debits_must_not_exceed_credits, "
    "credits_must_not_exceed_debits, closed, created_at, created_seq ON accounts "
    "BEGIN SELECT RAISE(ABORT, 'account terms update'); END",
]
_PG_GUARDS = [
    "CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit: %% on %%', TG_OP, TG_TABLE_NAME; END $$",
    "CREATE TRIGGER audit_journal BEFORE UPDATE OR DELETE ON journal FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_journal_truncate BEFORE TRUNCATE ON journal FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_failed BEFORE UPDATE OR DELETE ON failed_transfers FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_transfers_delete BEFORE DELETE ON transfers FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_transfers_terms BEFORE UPDATE ON transfers FOR EACH ROW WHEN ("
    "(OLD.id, OLD.debit_account_id, OLD.credit_account_id, OLD.asset, OLD.amount, OLD.code, OLD.pending, "
    "OLD.timeout_seconds, OLD.post_pending_id, OLD.void_pending_id, OLD.linked, OLD.refs, OLD.metadata, "
    "OLD.timestamp, OLD.expires_at) IS DISTINCT FROM (NEW.id, NEW.debit_account_id, NEW.credit_account_id, NEW.asset, "
    "NEW.amount, NEW.code, NEW.pending, NEW.timeout_seconds, NEW.post_pending_id, NEW.void_pending_id, NEW.linked, "
    "NEW.refs, NEW.metadata, NEW.timestamp, NEW.expires_at)) EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_accounts_delete BEFORE DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION audit_refuse()",
    "CREATE TRIGGER audit_accounts_terms BEFORE UPDATE ON accounts FOR EACH ROW WHEN ("
    "(OLD.id, OLD.asset, OLD.address, OLD.debits_must_not_exceed_credits, OLD.credits_must_not_exceed_debits, "
    "OLD.closed, OLD.created_at, OLD.created_seq) IS DISTINCT FROM (NEW.id, NEW.asset, NEW.address, "
    "NEW.debits_must_not_exceed_credits, NEW.credits_must_not_exceed_debits, NEW.closed, NEW.created_at, "
    "NEW.created_seq)) EXECUTE FUNCTION audit_refuse()",
]


def test_nothing_in_the_journal_is_ever_updated_or_deleted(db_url):
    """Triggers refuse any UPDATE, DELETE or TRUNCATE of the journal and of failed ids, any DELETE of a transfer or
    an account, and any change of their terms, while every kind of write runs: accounts opened (over HTTP's path and a
    command's insert-or-ignore), posted, pending, partially posted, voided, expired by the ledger, failed ids retried,
    a linked chain rolled back, a large batch (COPY on PostgreSQL), and the auditor and replay reading it all."""
    led = _sql_ledger(db_url)
    try:
        with led.db.engine.begin() as c:
            for ddl in (_PG_GUARDS if led.db.is_postgres else _SQLITE_GUARDS):
                c.exec_driver_sql(ddl)
        with pytest.raises(Exception, match="audit|journal"):  # the guard is armed
            with led.db.engine.begin() as c:
                c.exec_driver_sql("UPDATE journal SET kind = kind WHERE seq = 1")
        before = led.verify()
        later = NewAccount("project:P2/COD", "COD", "project:P2")
        assert led.submit([T("h1", POOL, PRJ, 100, code="reserve", pending=True, timeout_seconds=60),
                           T("h2", POOL, PRJ, 100, code="reserve", pending=True, timeout_seconds=60),
                           T("h3", POOL, PRJ, 100, code="reserve", pending=True, timeout_seconds=5)],
                          ensure_accounts=[ACCOUNTS[1], later]).ok
        assert led.submit([T("p1", post_pending_id="h1", amount=40), T("v2", void_pending_id="h2")]).ok
        assert [o.result for o in led.submit([T("big", POOL, PRJ, 10**9), T("l1", POOL, PRJ, 1, linked=True),
                                              T("l2", PRJ, POOL, 10**9)]).results] == [
            R.exceeds_credits, R.linked_event_failed, R.exceeds_credits]
        assert [o.result for o in led.submit([T("big", POOL, PRJ, 1), T("p1", post_pending_id="h1", amount=40),
                                              T("p1", post_pending_id="h1", amount=41)]).results] == [
            R.exceeds_credits, R.exists, R.exists_with_different_amount]
        led.advance(10)
        assert led.expire() == 1  # h3
        assert led.submit([T(f"many-{i}", MINT, "project:P2/COD", 1, code="bulk") for i in range(200)]).ok
        led.open(ACCOUNTS)  # all exist: nothing to write
        after = led.verify()
        assert after.ok and after.head_seq == before.head_seq + 3 + 1 + 2 + 1 + 200, after
        from services.ledger.auditor import JournalAuditor
        from services.ledger.replay import rebuild

        assert JournalAuditor(SimpleNamespace(db=led.db), full_interval=None).run_once()
        assert rebuild(led.db).differences == []
    finally:
        led.close()


def test_no_route_changes_or_removes_what_was_booked(ledger):
    """Corrections are new transfers: the API has no PUT, PATCH or DELETE, and its only POSTs create things
    (accounts, transfers) or read (balances:query)."""
    _, client = ledger
    paths = client.get("/openapi.json").json()["paths"]
    methods = {p: {m.upper() for m in ops} for p, ops in paths.items() if p.startswith("/v1")}
    assert len(methods) >= 10, methods
    assert all(m <= {"GET", "POST"} for m in methods.values()), methods
    assert {p for p, m in methods.items() if "POST" in m} == {"/v1/accounts", "/v1/transfers", "/v1/balances:query"}
    for method in ("PUT", "PATCH", "DELETE"):
        r = client.request(method, "/v1/transfers/fund", headers=ADMIN)
        assert r.status_code in (404, 405), (method, r.status_code)


# -- one moment per batch ------------------------------------------------------------------------------------------

class Ticking:
    """A wall clock that moves on by ``step`` each time it is read (time passes while a batch waits for the journal
    head: under load, for as long as the batches before it take)."""

    def __init__(self, start: datetime, step: timedelta):
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.step
        return now


def test_a_hold_timing_out_while_a_batch_waits_is_either_still_held_or_released_never_both(db_url):
    """A hold of the whole pool times out while the next batch waits for the journal head. That batch posts the
    hold and spends the pool. Judged before the timeout, the post takes the hold (the spend is then refused); judged
    after it, the post is refused as expired and the hold no longer counts (README: "a hold past its timeout never
    counts against an account"), so the spend goes through. Refusing both breaks that promise, and the spend's id
    then stays failed for good."""
    led = _sql_ledger(db_url, fund=500)
    try:
        assert led.submit([T("hold", POOL, PRJ, 500, code="reserve", pending=True, timeout_seconds=60)]).ok
        due = T0 + timedelta(seconds=60)
        clock = Ticking(due - timedelta(microseconds=500), timedelta(milliseconds=1))
        app = LedgerApp(led.outbox, clock=clock)
        out = led.tx(lambda uow: app.submit(uow.session, [T("post", post_pending_id="hold"),
                                                           T("spend", POOL, PRJ, 500, code="move")])).outcome
        got = tuple(o.result for o in out.results)
        assert got in {(R.ok, R.exceeds_credits), (R.pending_transfer_expired, R.ok)}, got
        hold = led.transfer("hold")
        if got[0] is R.ok:
            assert hold.status is S.posted_pending and hold.resolved_at < due
        else:
            assert hold.status is S.expired and led.transfer("spend").status is S.posted
        assert led.balances()[POOL] == (0, 500, 0, 500)
        assert led.verify().ok
    finally:
        led.close()


# -- as of a time, with two writers whose clocks disagree ----------------------------------------------------------

def _routes_request(led: SqlLedger):
    state = SimpleNamespace(runtime=SimpleNamespace(db=led.db), ledger=led.app)
    return SimpleNamespace(app=SimpleNamespace(state=state))


def test_a_balance_as_of_a_time_never_counts_an_entry_recorded_after_it(db_url):
    """Two ledger replicas append to the one chain (deploy/k8s runs two); replica B's clock is 2 s behind A's. A
    books t1 at T+10 s, then B books t2 (its clock says T+8.5 s), then A t3 at T+11 s. A balance as of T+9 s must
    be of a journal prefix none of whose entries was recorded after T+9 s: t1 was recorded at T+10 s."""
    led = _sql_ledger(db_url)
    try:
        behind = LedgerApp(led.outbox, clock=lambda: led.now - timedelta(seconds=2))
        led.now = T0 + timedelta(seconds=10)
        assert led.submit([T("t1", POOL, PRJ, 1, code="move")]).ok
        led.now = T0 + timedelta(seconds=10, milliseconds=500)
        assert led.tx(lambda uow: behind.submit(uow.session, [T("t2", POOL, PRJ, 20, code="move")])).outcome.ok
        led.now = T0 + timedelta(seconds=11)
        assert led.submit([T("t3", POOL, PRJ, 300, code="move")]).ok
        with led.db.sessions() as s:
            entries = [journal_entry_from_row(r) for r in LedgerRepository(s).journal_rows()]
        req = _routes_request(led)
        for moment in (T0 + timedelta(seconds=s) for s in (0, 8, 8.5, 9, 9.999, 10, 10.5, 11, 12)):
            b = routes.balance(PRJ, req, as_of=moment, at_seq=None, _=None)
            counted = [e for e in entries if e.seq <= b.as_of_seq]
            late = [e.transfer_id for e in counted if datetime.fromisoformat(e.recorded_at) > moment]
            assert late == [], (moment, late)
            # and it is the longest such prefix: the next entry was recorded after the moment
            nxt = [e for e in entries if e.seq == b.as_of_seq + 1]
            assert not nxt or datetime.fromisoformat(nxt[0].recorded_at) > moment, (moment, b.as_of_seq)
            want = balance_as_of(counted, PRJ)
            assert b.credits_posted == f"{want.credits_posted // 10_000}.{want.credits_posted % 10_000:04d}", moment
        assert routes.balance(PRJ, req, as_of=T0 + timedelta(seconds=9), at_seq=None, _=None).credits_posted \
            == "0.0000", "t1 was booked after T+9 s, and t2 after t1"
        assert routes.balance(PRJ, req, as_of=T0 + timedelta(seconds=12), at_seq=None, _=None).credits_posted \
            == "0.0321"
    finally:
        led.close()


# -- PostgreSQL: locking order, deadlocks retried and counted ---------------------------------------------------------

def _retries(reason: str) -> float:
    return REGISTRY.get_sample_value("countypool_db_retries_total", {"service": "ledger", "reason": reason}) or 0.0


def test_a_deadlock_is_retried_and_counted_and_the_transfer_applies_once(pg_url):
    """Another session (an operator's script, a replay --write) holds the pool's row and then asks for the journal
    head, which a ledger writer holds while it waits for the pool's row: PostgreSQL breaks the cycle by aborting the
    ledger's transaction (it waited first), which the ledger retries, counted as deadlock_detected."""
    led = _sql_ledger(pg_url)
    eng = create_engine(pg_url)
    try:
        before = _retries("deadlock_detected")
        other = eng.connect()
        tx = other.begin()
        other.exec_driver_sql("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (POOL,))
        done: list = []
        writer = threading.Thread(target=lambda: done.append(led.submit([T("moved", POOL, PRJ, 7, code="move")])))
        writer.start()
        deadline = time.monotonic() + 10
        with eng.connect() as watch:  # the writer holds the head and waits for the pool's row
            while time.monotonic() < deadline and not watch.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).scalar():
                time.sleep(0.02)
        time.sleep(0.2)
        try:
            other.exec_driver_sql("SELECT seq FROM journal_head WHERE id = 1 FOR UPDATE")  # the other side of the cycle
        except Exception:  # noqa: BLE001 - if PostgreSQL chose this session instead, the test says so below
            tx.rollback()
            pytest.fail("PostgreSQL aborted the other session, not the ledger's: no retry to observe")
        tx.commit()
        other.close()
        writer.join(30)
        assert done and done[0].ok, done
        assert _retries("deadlock_detected") == before + 1
        assert led.balances()[PRJ] == (0, 0, 0, 7), "applied once"
        assert led.verify().ok
    finally:
        led.close()
        eng.dispose()


def test_writers_touching_accounts_in_opposite_orders_never_deadlock(pg_url):
    """Pool -> project and project -> pool batches from several threads at once: every writer locks the journal head,
    then its accounts in one sorted order, so none waits for another in a cycle (no deadlock retried) and no
    interleaving overdraws either account."""
    led = _sql_ledger(pg_url, fund=10_000)
    try:
        assert led.submit([T("seed", POOL, PRJ, 5_000, code="move")]).ok
        before = _retries("deadlock_detected")
        errors: list = []

        def writer(w: int) -> None:
            try:
                for b in range(15):
                    one = [T(f"w{w}-{b}-{k}", *((POOL, PRJ) if (w + k) % 2 else (PRJ, POOL)), 700, code="move")
                           for k in range(4)]
                    led.submit(one if w % 2 else one[::-1])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not errors, errors
        assert _retries("deadlock_detected") == before
        bal = led.balances()
        for account in (POOL, PRJ):
            dp, dpo, cp, cpo = bal[account]
            assert cpo - dpo - dp >= 0, account
        assert sum(cpo - dpo for _, dpo, _, cpo in bal.values()) == 0
        assert led.verify().ok
    finally:
        led.close()


# -- metrics -------------------------------------------------------------------------------------------------------

def _metrics(client) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _value(metrics, name: str, **labels) -> float | None:
    for got, value in metrics.get(name, []):
        if all(got.get(k) == v for k, v in labels.items()):
            return value
    return None


def test_the_ledgers_metrics_after_traffic_with_bounded_labels(ledger):
    _, client = ledger
    before = _metrics(client)
    refused = _value(before, "countypool_ledger_transfers_total", result="exceeds_credits", code="audit.move") or 0
    tag = uuid.uuid4().hex[:8]  # the registry is the process's: ids no other test sends
    tids = [f"{name}-{tag}" for name in ("fund", "h1", "h2", "over")]
    assert _results(_post(client, cod_transfer(tids[0], REG, POOL, "10", code="audit.release"),
                          cod_transfer(tids[1], POOL, PRJ, "1.5", pending=True, timeout_seconds=3600, code="audit.hold"),
                          cod_transfer(tids[2], POOL, ENT, "0.25", pending=True, code="audit.hold"),
                          cod_transfer(tids[3], POOL, ENT, "100", code="audit.move"))) == [
        "ok", "ok", "ok", "exceeds_credits"]
    after = _metrics(client)
    assert _value(after, "countypool_ledger_transfers_total", result="exceeds_credits", code="audit.move") == refused + 1
    assert _value(after, "countypool_ledger_transfers_total", result="ok", code="audit.hold") >= 2
    assert _value(after, "countypool_ledger_pending_transfers", asset="COD") == 2
    assert _value(after, "countypool_ledger_pending_amount_units", asset="COD") == 17_500
    head = client.get("/v1/journal/verify", headers=ADMIN).json()["head_seq"]
    assert _value(after, "countypool_ledger_journal_length") == head
    assert _value(after, "countypool_ledger_asset_imbalance_units", asset="COD") == 0
    assert _value(after, "countypool_http_request_duration_seconds_count", route="/v1/transfers") is not None
    ids = {REG, POOL, PRJ, ENT, *tids}
    ledger_families = {n: v for n, v in after.items() if n.startswith("countypool_ledger_")}
    for name, samples in ledger_families.items():
        for labels, _ in samples:
            assert set(labels) <= {"result", "code", "asset"}, (name, labels)
            assert not set(labels.values()) & ids, (name, labels)


# -- which result code wins when several apply: TigerBeetle's order (src/state_machine.zig) -------------------------

TB_PRECEDENCE = {
    # create_transfer_exists: flags, accounts, amount, user data (our refs and metadata), timeout, code
    "retry_with_another_timeout_and_amount": (
        [T("h", POOL, PRJ, 10, code="reserve", pending=True, timeout_seconds=60)],
        T("h", POOL, PRJ, 11, code="reserve", pending=True, timeout_seconds=61), R.exists_with_different_amount),
    "retry_with_another_timeout_and_debit_account": (
        [T("h", POOL, PRJ, 10, code="reserve", pending=True, timeout_seconds=60)],
        T("h", MINT, PRJ, 10, code="reserve", pending=True, timeout_seconds=61),
        R.exists_with_different_debit_account_id),
    "retry_with_other_references_and_code": (
        [T("m", MINT, POOL, 10, code="intake", refs=("REL-1",))],
        T("m", MINT, POOL, 10, code="other", refs=("REL-2",)), R.exists_with_different_refs),
    "retry_with_other_metadata_and_timeout": (
        [T("h", POOL, PRJ, 10, code="reserve", pending=True, timeout_seconds=60)],
        T("h", POOL, PRJ, 10, code="reserve", pending=True, timeout_seconds=61, metadata={"k": "v"}),
        R.exists_with_different_metadata),
    # post_or_void_pending_transfer: the amount before the pending transfer's state
    "post_of_more_than_a_posted_pending": (
        [T("h", POOL, PRJ, 10, code="reserve", pending=True), T("p", post_pending_id="h")],
        T("p2", post_pending_id="h", amount=11), R.exceeds_pending_transfer_amount),
    "partial_void_of_a_voided_pending": (
        [T("h", POOL, PRJ, 10, code="reserve", pending=True), T("v", void_pending_id="h")],
        T("v2", void_pending_id="h", amount=4), R.pending_transfer_has_different_amount),
    "post_with_a_timeout_of_a_missing_pending": (
        [], T("p3", post_pending_id="nowhere", timeout_seconds=5), R.timeout_reserved_for_pending_transfer),
    # create_transfer: accounts_must_be_different, then timeout_reserved_for_pending_transfer, then the amount
    "same_accounts_and_a_timeout_on_a_posted_transfer": (
        [], T("s", POOL, POOL, 10, timeout_seconds=5), R.accounts_must_be_different),
    "a_timeout_on_a_posted_transfer_of_nothing": (
        [], T("z", POOL, PRJ, 0, timeout_seconds=5), R.timeout_reserved_for_pending_transfer),
}


@pytest.mark.parametrize("case", list(TB_PRECEDENCE))
def test_which_error_wins_as_tigerbeetle_decides(db_url, case):
    setup, request_, tigerbeetle = TB_PRECEDENCE[case]
    led = _sql_ledger(db_url)
    try:
        if setup:
            assert led.submit(setup).ok
        assert led.submit([request_]).results[0].result is tigerbeetle
    finally:
        led.close()
