"""The ledger fed over Kafka: commands consumed twice post once; bad commands go to the DLQ; outcomes are
published for sagas."""
from __future__ import annotations

import json
import uuid

from kafka import KafkaProducer

from shared.contracts import topics
from shared.contracts.ledger import AccountSpec, TransfersRequested, TransferSpec
from shared.envelope import new_envelope
from tests.support.machinery import read_all
from tests.support.services import ADMIN, running_service, wait_for


def _cmd(county: str, tid: str, amount: str, *, reverse=False, event_id=None):
    pool = f"county:{county}/pool/COD"
    reg = "external:rights-register/COD"
    debit, credit = (pool, reg) if reverse else (reg, pool)
    cmd = TransfersRequested(
        transfers=[TransferSpec(transfer_id=tid, debit_account=debit, credit_account=credit, asset="COD",
                                amount=amount, code="quota.release")],
        open_accounts=[AccountSpec(account_id=reg, asset="COD", address="external:rights-register"),
                       AccountSpec(account_id=pool, asset="COD", address=f"county:{county}/pool")],
    )
    return new_envelope(cmd, subject=tid, source="/countypool/quota", event_id=event_id).to_json()


def _send(bootstrap, values):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, v in values:
        p.send(topics.LEDGER_COMMANDS, key=key.encode(), value=v)
    p.flush()
    p.close()


def test_commands_consumed_twice_post_once_and_outcomes_are_published(db_url, kafka_bootstrap):
    county = f"{uuid.uuid4().int % 900000 + 100000}"
    tag = uuid.uuid4().hex[:8]
    with running_service("ledger", db_url, kafka_bootstrap) as (rt, client):
        same = _cmd(county, f"rel-{tag}", "2.5")
        _send(kafka_bootstrap, [("k", same), ("k", same), ("k", _cmd(county, f"over-{tag}", "100", reverse=True))])
        pool = f"county:{county}/pool/COD"
        wait_for(lambda: client.get(f"/v1/transfers/over-{tag}", headers=ADMIN).status_code == 404
                 and client.get(f"/v1/transfers/over-{tag}", headers=ADMIN).json()["reason"] == "transfer_failed",
                 what="both commands applied")
        assert client.get(f"/v1/accounts/{pool}", headers=ADMIN).json()["balance"] == "2.5000", "posted once"
        # a second delivery of the same command id from another producer retry: still once
        _send(kafka_bootstrap, [("k", _cmd(county, f"rel-{tag}", "2.5"))])
        wait_for(lambda: rt.consumer.stats.applied >= 3, what="retry consumed")
        assert client.get(f"/v1/accounts/{pool}", headers=ADMIN).json()["balance"] == "2.5000", "transfer id is idempotent"
        wait_for(lambda: rt.relay.backlog() == 0, what="outcomes published")
    def both_seen(records):
        keys = {r.key.decode() for r in records if r.key}
        return {f"rel-{tag}", f"over-{tag}"} <= keys

    events = [json.loads(r.value) for r in read_all(kafka_bootstrap, topics.LEDGER_EVENTS, expect=10**9, timeout=60,
                                                    until=both_seen)]
    mine = {(e["type"], e["data"].get("transfer_id")) for e in events if tag in e["subject"]}
    assert ("countypool.TransferPosted.v1", f"rel-{tag}") in mine
    assert ("countypool.TransferRejected.v1", f"over-{tag}") in mine
    rejected = [e for e in events if e["subject"] == f"over-{tag}"][0]
    assert rejected["data"]["reason"] == "exceeds_credits"
    # the same command id twice: the inbox drops the second; the transfer asked again under a new command id is
    # answered again (its sender may have lost the first answer), posted still once
    dupes = [e for e in events if e["subject"] == f"rel-{tag}"]
    assert [e["type"] for e in dupes] == ["countypool.TransferPosted.v1"] * 2, json.dumps(dupes, indent=1)
    assert dupes[0]["id"] != dupes[1]["id"] and dupes[0]["data"] == dupes[1]["data"]


def test_malformed_and_invalid_commands_go_to_the_dlq(db_url, kafka_bootstrap):
    county = f"{uuid.uuid4().int % 900000 + 100000}"
    tag = uuid.uuid4().hex[:8]
    bad_amount = json.loads(_cmd(county, f"bad-{tag}", "1"))
    bad_amount["data"]["transfers"][0]["amount"] = "1.000001"
    with running_service("ledger", db_url, kafka_bootstrap) as (rt, client):
        _send(kafka_bootstrap, [(f"m-{tag}", b"{broken"), (f"a-{tag}", json.dumps(bad_amount).encode()),
                                (f"g-{tag}", _cmd(county, f"good-{tag}", "1"))])
        wait_for(lambda: client.get(f"/v1/transfers/good-{tag}", headers=ADMIN).status_code == 200, what="good command")
        wait_for(lambda: rt.consumer.stats.dead_lettered >= 2, what="bad ones dead-lettered")
    dead = read_all(kafka_bootstrap, topics.dlq(topics.LEDGER_COMMANDS), expect=10**9, timeout=60,
                    until=lambda rs: {f"m-{tag}", f"a-{tag}"} <= {r.key.decode() for r in rs if r.key})
    mine = {r.key.decode(): dict(r.headers)["dlq-reason"].decode() for r in dead if r.key and tag in r.key.decode()}
    assert mine == {f"m-{tag}": "malformed_json", f"a-{tag}": "amount_exceeds_scale"}


def _merge_cmds(tag: str) -> list[TransfersRequested]:
    """A good command, one that opens an account of an unknown asset (refused alone), another good one."""
    reg, pool = "external:rights-register/COD", f"county:320612/pool/COD-{tag}"
    opens = [AccountSpec(account_id=reg, asset="COD", address="external:rights-register"),
             AccountSpec(account_id=pool, asset="COD", address="county:320612/pool")]

    def t(tid, credit=pool, amount="1"):
        return TransferSpec(transfer_id=f"{tid}-{tag}", debit_account=reg, credit_account=credit, asset="COD",
                            amount=amount)

    bad_opens = opens + [AccountSpec(account_id=f"gold-{tag}", asset="GOLD", address="county:320612/pool")]
    return [TransfersRequested(transfers=[t("a1")], open_accounts=opens),
            TransfersRequested(transfers=[t("b1", amount="2"), t("b2", credit=f"gold-{tag}")], open_accounts=bad_opens),
            TransfersRequested(transfers=[t("c1", amount="4")], open_accounts=opens)]


def test_a_merged_run_with_an_invalid_account_is_refused_whole(db_url):
    """The batch path never half-applies a command whose account spec is invalid: the run is refused (the
    consumer then applies its commands one by one)."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    import pytest

    from services.ledger.handlers import _apply_commands
    from shared.consumer import Rejected
    from tests.integration.ledger.harness import SqlLedger

    led = SqlLedger(db_url, datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc))
    try:
        ctxs = [SimpleNamespace(event=c, envelope=SimpleNamespace(id=f"e{i}", correlationid=None))
                for i, c in enumerate(_merge_cmds("m"))]
        with pytest.raises(Rejected) as exc:
            led.tx(lambda uow: _apply_commands(led.app, uow.session, ctxs))
        assert exc.value.reason == "account_spec_invalid"
        assert [led.transfer(f"{t}-m") for t in ("a1", "b1", "b2", "c1")] == [None] * 4, "nothing stays"
    finally:
        led.close()


def test_merged_commands_give_what_one_after_the_other_gives(db_url, kafka_bootstrap):
    """Three commands in one poll through the real consumer: the one refused alone is dead-lettered with
    nothing of it stored, the others are applied as they would be alone."""
    from types import SimpleNamespace

    tag = uuid.uuid4().hex[:8]
    envs = [new_envelope(c, subject=f"cmd-{i}-{tag}", source="/countypool/quota").to_json()
            for i, c in enumerate(_merge_cmds(tag))]
    records = [SimpleNamespace(topic=topics.LEDGER_COMMANDS, partition=0, offset=i, key=f"k-{tag}".encode(),
                               value=v, headers=[]) for i, v in enumerate(envs)]
    from services.ledger.metrics import TRANSFERS

    def counted() -> dict[str, float]:  # countypool_ledger_transfers_total of this test's transfers (no code)
        return {m.labels["result"]: m.value for metric in TRANSFERS.collect() for m in metric.samples
                if m.name.endswith("_total") and m.labels["code"] == "none"}

    with running_service("ledger", db_url, kafka_bootstrap, background=False) as (rt, client):
        before = counted()
        rt.consumer._apply(records)  # one poll's records: the batch handler's merged run first
        assert (rt.consumer.stats.applied, rt.consumer.stats.dead_lettered) == (2, 1)
        after = counted()
        # the metric counts what was applied (a1, c1), not the refused merged run nor the command refused alone
        assert {r: after[r] - before.get(r, 0) for r in after if after[r] != before.get(r, 0)} == {"ok": 2}
        got = {t: client.get(f"/v1/transfers/{t}-{tag}", headers=ADMIN) for t in ("a1", "b1", "b2", "c1")}
        assert {t: r.status_code for t, r in got.items()} == {"a1": 200, "b1": 404, "b2": 404, "c1": 200}
        assert got["b2"].json()["reason"] == "transfer_not_found", "not reserved as failed either"
        balance = client.get(f"/v1/accounts/county:320612/pool/COD-{tag}", headers=ADMIN).json()["balance"]
        assert balance == "5.0000"
        assert client.get(f"/v1/accounts/gold-{tag}", headers=ADMIN).status_code == 404
