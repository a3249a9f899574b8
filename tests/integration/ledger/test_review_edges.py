"""Edges found in a review, on SQLite and PostgreSQL: a journal payload rewritten into something that cannot be
read is a break the verification names (not a 500, not an auditor stuck at 'verified'); a NUL in an id or code
is a 422 with its reason on both databases (PostgreSQL refused it with a 500); a retried post of amount 0 after
a partial post is not 'exists'."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from services.ledger.auditor import JournalAuditor
from services.ledger.domain import NewAccount, TransferRequest
from tests.integration.ledger.harness import ENT, POOL, REG, STANDARD_ACCOUNTS, SqlLedger, cod_transfer, served_ledger
from tests.support.services import ADMIN

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _drop_a_delta(payload: str) -> str:
    p = json.loads(payload)
    del p["delta.debits_posted"]
    return json.dumps(p, sort_keys=True, separators=(",", ":"))


# (what the payload of a transfer entry is rewritten into, the kind it is relabelled as)
TAMPERS = {
    "a_key_missing": (_drop_a_delta, None),
    "not_json": (lambda p: "{not json", None),
    "a_list": (lambda p: "[1,2]", None),
    "relabelled_account_created": (lambda p: p, "account_created"),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_a_payload_that_cannot_be_read_is_a_break_at_its_row(db_url, tamper):
    led = SqlLedger(db_url, T0)
    try:
        led.open([NewAccount("mint", "CNY", "external:mint"), NewAccount("a", "CNY", "county:320612/a")])
        for i in range(3):
            assert led.submit([TransferRequest(f"t{i}", "mint", "a", 100 + i, code="fund")]).ok
        auditor = JournalAuditor(SimpleNamespace(db=led.db), interval=60, full_interval=None)
        assert auditor.run_once() and auditor.checked_seq == 5
        rewrite, kind = TAMPERS[tamper]
        with led.db.engine.begin() as c:
            payload = c.execute(text("SELECT payload FROM journal WHERE seq = 4")).scalar_one()
            c.execute(text("UPDATE journal SET payload = :p, kind = COALESCE(:k, kind) WHERE seq = 4"),
                      {"p": rewrite(payload), "k": kind})
        res = led.verify()  # what GET /v1/journal/verify answers
        assert (res.ok, res.first_broken_seq, res.reason) == (False, 4, "payload_not_canonical")
        fresh = JournalAuditor(SimpleNamespace(db=led.db), interval=60, full_interval=None)
        assert not fresh.run_once() and fresh.broken_at == 4, "a verdict, not an exception"
        assert REGISTRY.get_sample_value("countypool_ledger_journal_verified") == 0
    finally:
        led.close()


@pytest.fixture
def ledger(db_url, kafka_bootstrap):
    with served_ledger(db_url, kafka_bootstrap, STANDARD_ACCOUNTS) as served:
        yield served


_t = cod_transfer


def post(client, *transfers):
    return client.post("/v1/transfers", headers=ADMIN, json={"transfers": list(transfers)})


def test_a_nul_in_an_id_or_code_is_a_422_with_its_reason_and_changes_nothing(ledger):
    rt, client = ledger
    assert post(client, _t("fund", REG, POOL, "10")).json()["ok"]
    assert post(client, _t("res", POOL, ENT, "1", pending=True)).json()["ok"]
    head = client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json()
    for i, bad in enumerate([_t("n0", "ghost\x00", POOL, "1"), _t("n1", REG, "ghost\x00", "1"),
                             _t("n2", REG, POOL, "1", code="release\x00"),
                             {"transfer_id": "n3", "asset": "COD", "amount": "0", "post_pending_id": "res\x00"},
                             {"transfer_id": "n4", "asset": "COD", "amount": "0", "void_pending_id": "res\x00"}]):
        r = post(client, _t(f"ok{i}", REG, POOL, "1"), bad)
        assert (r.status_code, r.json()["reason"], r.json()["details"]) == (422, "invalid_value", {"index": 1}), r.text
        gone = client.get(f"/v1/transfers/{bad['transfer_id']}", headers=ADMIN)
        assert gone.json()["reason"] == "transfer_not_found", "not even a failure is kept"
        assert client.get(f"/v1/transfers/ok{i}", headers=ADMIN).status_code == 404, "the batch is refused whole"
    assert client.get(f"/v1/accounts/{POOL}", headers=ADMIN).json() == head
    r = client.get("/v1/transfers/res%00", headers=ADMIN)
    assert (r.status_code, r.json()["reason"]) == (404, "transfer_not_found")
    r = client.get(f"/v1/accounts/{POOL}/pending", params={"after": "res\x00"}, headers=ADMIN)
    assert (r.status_code, r.json()["reason"]) == (404, "transfer_not_found")


def test_a_retried_post_of_amount_0_after_a_partial_post_names_the_amount(ledger):
    _, client = ledger
    assert post(client, _t("fund", REG, POOL, "10")).json()["ok"]
    assert post(client, _t("res", POOL, ENT, "10", pending=True, timeout_seconds=3600)).json()["ok"]
    part = {"transfer_id": "post-res", "asset": "COD", "amount": "3", "post_pending_id": "res"}
    assert post(client, part).json()["results"][0]["result"] == "ok"
    full = dict(part, amount="0")
    assert post(client, full).json()["results"][0]["result"] == "exists_with_different_amount", \
        "0 asks for all 10: 'exists' would say they were posted"
    assert post(client, part).json()["results"][0]["result"] == "exists"
    assert client.get(f"/v1/accounts/{ENT}", headers=ADMIN).json()["balance"] == "3.0000"
