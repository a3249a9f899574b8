"""Review of the ledger's read API and of how commands map to accounts and events (SQLite and PostgreSQL):
POST /v1/balances:query's 404 naming the unknown ids, address prefixes in other scripts, the pending list's next
links for ids a URL must escape, and the AccountOpened events of commands one poll merges into one engine run."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from shared.contracts.ledger import AccountSpec, TransfersRequested
from shared.envelope import new_envelope
from tests.integration.ledger.harness import POOL, REG, cod_transfer, served_ledger
from tests.integration.ledger.test_review_kafka_commands import QUOTA, Commands, _service
from tests.support.services import ADMIN

UNI, UNI2, AST = "park:园区一号/COD", "park:园区二号/COD", "park:𠀀x/COD"


@pytest.fixture
def ledger(db_url, kafka_bootstrap):
    with served_ledger(db_url, kafka_bootstrap, [(REG, "external:rights-register"), (POOL, "county:320612/pool"),
                                                 (UNI, "park:园区一号"), (UNI2, "park:园区二号"),
                                                 (AST, "park:𠀀x")]) as served:
        yield served


def test_balances_query_404_names_every_distinct_unknown_id(ledger):
    """25 copies of one unknown id, then another unknown one: the 404 must name both (it named the first id 20
    times, and never the second), and an id asked twice once."""
    _, client = ledger
    ghost_a, ghost_b = "ghost-a/COD", "ghost-b/COD"
    r = client.post("/v1/balances:query", headers=ADMIN, json={"account_ids": [POOL] + [ghost_a] * 25 + [ghost_b]})
    assert (r.status_code, r.json()["reason"]) == (404, "account_not_found"), r.text
    message = r.json()["message"]
    assert ghost_b in message, message
    assert message.count(ghost_a) == 1, message
    assert POOL not in message, message


def test_prefixes_in_other_scripts_and_next_links_of_ids_a_url_must_escape(ledger):
    """Guard: CJK and astral-plane address prefixes match exactly their characters; the pending list's Link
    rel=next of an account in another script, after transfer ids holding '/', '%', '?' and '#', walks every hold
    once."""
    _, client = ledger

    def ids(prefix, **kw):
        r = client.get("/v1/balances", params={"address_prefix": prefix, **kw}, headers=ADMIN)
        assert r.status_code == 200, r.text
        return [b["account_id"] for b in r.json()]

    assert ids("park:园") == sorted([UNI, UNI2])
    assert ids("park:园区一") == [UNI]
    assert ids("park:园区三") == []
    assert ids("park:𠀀") == [AST]
    assert ids("park:", limit=2) == sorted([UNI, UNI2, AST])[:2]
    holds = [f"h/{i}%?#x" for i in range(5)]
    r = client.post("/v1/transfers", headers=ADMIN, json={"transfers": [cod_transfer("fund", REG, UNI, "10")] + [
        cod_transfer(h, UNI, UNI2, "1", pending=True, timeout_seconds=3600) for h in holds]})
    assert r.json()["ok"], r.text
    seen, url = [], f"/v1/accounts/{UNI2}/pending?limit=2"
    while url:
        page = client.get(url, headers=ADMIN)
        assert page.status_code == 200, (url, page.text)
        seen += [p["transfer_id"] for p in page.json()]
        url = page.links.get("next", {}).get("url")
    assert seen == sorted(holds)
    for h in holds[:2]:
        got = client.get("/v1/transfers/" + h.replace("%", "%25").replace("?", "%3F").replace("#", "%23"),
                         headers=ADMIN)
        assert (got.status_code, got.json()["transfer_id"]) == (200, h), got.text


def _opened(c: Commands, account_ids: set[str]) -> dict[str, tuple]:
    o = c.rt.tables["outbox"]
    with c.rt.db.sessions() as s:
        docs = [json.loads(e) for e in s.execute(select(o.c.envelope).order_by(o.c.position)).scalars()]
    return {d["data"]["account_id"]: (d["correlationid"], d.get("causationid")) for d in docs
            if d["type"].startswith("countypool.AccountOpened.") and d["data"]["account_id"] in account_ids}


def test_accounts_a_command_opens_are_announced_under_that_command_also_when_polled_with_others(db_url, kafka_bootstrap):
    """A command opening an account announces it (AccountOpened) correlated with and caused by that command when
    polled alone; two such commands polled together (merged into one engine run) must give the same announcements,
    as their transfers' outcome events do: the answer must not depend on where Kafka cut the polls."""
    tag = uuid.uuid4().hex[:8]
    with _service(db_url, kafka_bootstrap) as (rt, client):
        c = Commands(rt, client, tag)
        accounts = {n: f"project:{n}-{tag}/COD" for n in ("alone", "a", "b")}
        envs = {}
        for n, acct in accounts.items():
            cmd = TransfersRequested(transfers=[c.t(n, c.reg, acct)], open_accounts=[
                AccountSpec(account_id=c.reg, asset="COD", address="external:rights-register"),
                AccountSpec(account_id=acct, asset="COD", address=acct.rsplit("/", 1)[0])])
            envs[n] = new_envelope(cmd, subject=f"b-{tag}", source=QUOTA, event_id=f"cmd-{n}-{tag}",
                                   correlation_id=f"corr-{n}-{tag}").to_json()
        c.poll(envs["alone"])
        c.poll(envs["a"], envs["b"])
        assert [c.said(n) for n in ("alone", "a", "b")] == [[("TransferPosted", None)]] * 3
        got = _opened(c, set(accounts.values()))
        assert got == {acct: (f"corr-{n}-{tag}", f"cmd-{n}-{tag}") for n, acct in accounts.items()}, got
