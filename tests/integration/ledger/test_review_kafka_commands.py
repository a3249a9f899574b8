"""Review of how the ledger takes TransfersRequested commands off Kafka and answers them (SQLite and PostgreSQL).

The service's own consumer applies polls of command records built here (topic countypool.ledger.commands, as the
broker hands them over) through ``IdempotentConsumer._apply``: nothing is produced to the shared command topic, so
no other test's ledger can take these commands, nor this one theirs. Dead letters go to the real
``countypool.ledger.commands.dlq`` and are read back from Kafka by their keys (from the end it had before). The
outcome events are read from the ledger's outbox: what its relay publishes, row for row.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import select

from shared.contracts import topics
from shared.contracts.ledger import AccountSpec, TransfersRequested, TransferSpec
from shared.envelope import new_envelope
from tests.support.services import ADMIN, running_service, wait_for

DLQ = topics.dlq(topics.LEDGER_COMMANDS)
QUOTA = "/countypool/quota"


class Commands:
    """A ledger service (relay and consumer stopped, its clock the test's) fed polls of command records."""

    def __init__(self, rt, client, tag: str):
        self.rt, self.client, self.tag = rt, client, tag
        self.offset = 0
        self.county = str(uuid.uuid4().int % 900000 + 100000)
        self.reg, self.pool = "external:rights-register/COD", f"county:{self.county}/pool/COD"
        self.proj = f"project:P-{tag}/COD"
        self.ledger = client.app.state.ledger
        self.now = datetime.now(timezone.utc)
        self.ledger.clock = lambda: self.now

    def opens(self) -> list[AccountSpec]:
        return [AccountSpec(account_id=self.reg, asset="COD", address="external:rights-register"),
                AccountSpec(account_id=self.pool, asset="COD", address=f"county:{self.county}/pool"),
                AccountSpec(account_id=self.proj, asset="COD", address=f"project:P-{self.tag}")]

    def t(self, tid: str, dr: str | None = None, cr: str | None = None, amount: str = "1", **kw) -> TransferSpec:
        return TransferSpec(transfer_id=f"{tid}-{self.tag}", debit_account=self.reg if dr is None else dr,
                            credit_account=self.pool if cr is None else cr, asset="COD", amount=amount,
                            code="quota.test", **kw)

    def cmd(self, *transfers: TransferSpec, opens: bool = True, source: str = QUOTA, event_id: str | None = None,
            correlation: str | None = None) -> bytes:
        c = TransfersRequested(transfers=list(transfers), open_accounts=self.opens() if opens else [])
        return new_envelope(c, subject=f"batch-{self.tag}", source=source, event_id=event_id,
                            correlation_id=correlation).to_json()

    def poll(self, *values: bytes, keys: list[str] | None = None) -> None:
        """One poll's records, applied as the consumer applies them."""
        recs = []
        for i, v in enumerate(values):
            key = (keys[i] if keys else f"k-{self.tag}").encode()
            recs.append(SimpleNamespace(topic=topics.LEDGER_COMMANDS, partition=0, offset=self.offset, key=key,
                                        value=v, headers=[]))
            self.offset += 1
        self.rt.consumer._apply(recs)

    def events(self) -> list[dict]:
        """Every outcome envelope about this test's transfers, in outbox order."""
        o = self.rt.tables["outbox"]
        with self.rt.db.sessions() as s:
            docs = [json.loads(e) for e in s.execute(select(o.c.envelope).order_by(o.c.position)).scalars()]
        return [d for d in docs if self.tag in d["data"].get("transfer_id", "")]

    def said(self, name: str) -> list[tuple[str, str | None]]:
        tid = f"{name}-{self.tag}"
        return [(d["type"].split(".")[1], d["data"].get("reason")) for d in self.events()
                if d["data"]["transfer_id"] == tid]

    def balance(self, account: str) -> dict:
        return self.client.get(f"/v1/accounts/{account}", headers=ADMIN).json()

    def transfer(self, name: str):
        return self.client.get(f"/v1/transfers/{name}-{self.tag}", headers=ADMIN)


def _service(db_url, kafka_bootstrap):
    return running_service("ledger", db_url, kafka_bootstrap, background=False)


def _dlq_end(bootstrap: str) -> dict[TopicPartition, int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(DLQ, p) for p in (c.partitions_for_topic(DLQ) or {0})]
        return c.end_offsets(parts)
    finally:
        c.close()


def _dead_letters(bootstrap: str, since: dict[TopicPartition, int], keys: set[str]) -> dict[str, list[str]]:
    """dlq-reason of every letter with one of ``keys`` written after ``since``, key -> reasons."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    c.assign(list(since))
    for tp, off in since.items():
        c.seek(tp, off)
    found: dict[str, list[str]] = {}

    def read() -> bool:
        for recs in c.poll(timeout_ms=300).values():
            for r in recs:
                k = r.key.decode() if r.key else ""
                if k in keys:
                    found.setdefault(k, []).append(dict(r.headers)["dlq-reason"].decode())
        return keys <= set(found)

    try:
        wait_for(read, timeout=30, what=f"dead letters {sorted(keys)}")
        read()  # a moment more: a letter sent twice would show
    finally:
        c.close()
    return found


# -- one poll, good and bad commands -----------------------------------------------------------------------------

def test_a_poll_with_bad_commands_applies_the_good_and_dead_letters_each_bad_one_with_its_reason(db_url, kafka_bootstrap):
    tag = uuid.uuid4().hex[:8]
    with _service(db_url, kafka_bootstrap) as (rt, client):
        c = Commands(rt, client, tag)
        since = _dlq_end(kafka_bootstrap)
        taken = c.cmd(c.t("taken"))
        bad_asset = json.loads(c.cmd(c.t("gold")))
        bad_asset["data"]["transfers"][0]["asset"] = "GOLD"
        values = [
            c.cmd(c.t("g1", amount="5")),
            json.dumps(bad_asset).encode(),  # asset_unknown
            c.cmd(c.t("open", linked=True)),  # its last transfer leaves the chain open
            c.cmd(c.t("dept"), source="/departments/ecology"),  # only quota and settlement send commands
            taken,
            c.cmd(c.t("g2", c.pool, c.proj, amount="2")),  # needs g1 in the same poll
            taken.replace(b'"1"', b'"9"'),  # the same command id, another body
        ]
        keys = [f"{n}-{tag}" for n in ("g1", "asset", "chain", "src", "taken", "g2", "body")]
        c.poll(*values, keys=keys)
        assert (rt.consumer.stats.applied, rt.consumer.stats.dead_lettered) == (3, 4)
        assert {n: c.transfer(n).status_code for n in ("g1", "g2", "taken", "gold", "open", "dept")} == {
            "g1": 200, "g2": 200, "taken": 200, "gold": 404, "open": 404, "dept": 404}
        assert c.transfer("open").json()["reason"] == "transfer_not_found", "a dead-lettered command reserves no id"
        assert (c.balance(c.pool)["balance"], c.balance(c.proj)["balance"]) == ("4.0000", "2.0000")
        assert c.said("taken") == [("TransferPosted", None)], "the same command id, another body: no second answer"
    letters = _dead_letters(kafka_bootstrap, since, {f"{n}-{tag}" for n in ("asset", "chain", "src", "body")})
    assert letters == {f"asset-{tag}": ["asset_unknown"], f"chain-{tag}": ["linked_event_chain_open"],
                       f"src-{tag}": ["unexpected_source"], f"body-{tag}": ["duplicate_id_different_body"]}


def test_merged_commands_give_what_one_poll_each_gives_when_a_later_one_opens_an_account(db_url, kafka_bootstrap):
    """Command 1 credits the project's account, which only command 2 opens. Polled alone, command 1 is refused
    (credit_account_not_found, for good); the outcome must not depend on where Kafka cut the polls."""
    tag = uuid.uuid4().hex[:8]
    with _service(db_url, kafka_bootstrap) as (rt, client):
        c = Commands(rt, client, tag)
        first = TransfersRequested(transfers=[c.t("early", c.reg, c.proj)], open_accounts=c.opens()[:2])
        second = TransfersRequested(transfers=[c.t("late", c.reg, c.proj)], open_accounts=c.opens())
        c.poll(*(new_envelope(x, subject=f"b-{tag}", source=QUOTA).to_json() for x in (first, second)))
        assert c.said("early") == [("TransferRejected", "credit_account_not_found")], c.events()
        assert c.said("late") == [("TransferPosted", None)]
        assert c.balance(c.proj)["balance"] == "1.0000"


# -- answers: once per new outcome, again for a repeated id under a new command id --------------------------------

def test_outcomes_of_a_chain_with_a_failing_member_name_each_failure_and_repeats_are_answered_again(db_url, kafka_bootstrap):
    tag = uuid.uuid4().hex[:8]
    with _service(db_url, kafka_bootstrap) as (rt, client):
        c = Commands(rt, client, tag)
        fund = c.cmd(c.t("fund", amount="10"))
        c.poll(fund)
        chain = c.cmd(c.t("m1", c.pool, c.proj, amount="1", linked=True),
                      c.t("m2", c.pool, c.proj, amount="50", linked=True),
                      c.t("m3", c.pool, c.proj, amount="1"))
        hold = c.cmd(c.t("hold", c.pool, c.proj, amount="3", pending=True, timeout_seconds=3600))
        c.poll(chain, hold)
        assert [c.said(n) for n in ("m1", "m2", "m3")] == [
            [("TransferRejected", "linked_event_failed")], [("TransferRejected", "exceeds_credits")],
            [("TransferRejected", "linked_event_failed")]]
        c.poll(c.cmd(c.t("post", amount="2", post_pending_id=f"hold-{tag}", dr="", cr="")),
               c.cmd(c.t("hold2", c.pool, c.proj, amount="1", pending=True, timeout_seconds=3600)))
        c.poll(c.cmd(c.t("void", amount="0", void_pending_id=f"hold2-{tag}", dr="", cr="")))
        before = (c.balance(c.pool), c.balance(c.proj))
        assert (before[0]["balance"], before[1]["balance"]) == ("8.0000", "2.0000")
        first = {d["data"]["transfer_id"]: d for d in c.events()}
        posted, voided = first[f"post-{tag}"], first[f"void-{tag}"]
        assert (posted["type"], posted["subject"], posted["data"]["pending_id"], posted["data"]["amount"]) == (
            "countypool.TransferPosted.v1", f"hold-{tag}", f"hold-{tag}", "2.0000")
        assert (voided["type"], voided["subject"], voided["data"]["amount"]) == (
            "countypool.TransferVoided.v1", f"hold2-{tag}", "1.0000")

        # redelivered (same command ids): nothing at all; asked again (new command ids): answered again, applied once
        n = len(c.events())
        c.poll(fund, chain, hold)
        assert len(c.events()) == n and rt.consumer.stats.duplicates == 3
        again = [c.cmd(c.t("fund", amount="10")),
                 c.cmd(c.t("m1", c.pool, c.proj, amount="1", linked=True),
                       c.t("m2", c.pool, c.proj, amount="50", linked=True), c.t("m3", c.pool, c.proj, amount="1")),
                 c.cmd(c.t("post", amount="2", post_pending_id=f"hold-{tag}", dr="", cr=""))]
        c.poll(*again)
        assert (c.balance(c.pool), c.balance(c.proj)) == before
        assert c.said("fund") == [("TransferPosted", None)] * 2
        assert c.said("post") == [("TransferPosted", None)] * 2
        assert [c.said(n)[-1] for n in ("m1", "m2", "m3")] == [
            ("TransferRejected", "linked_event_failed"), ("TransferRejected", "exceeds_credits"),
            ("TransferRejected", "linked_event_failed")]
        last = {d["data"]["transfer_id"]: d for d in c.events()[n:]}
        assert last[f"post-{tag}"]["data"] == posted["data"] and last[f"post-{tag}"]["subject"] == f"hold-{tag}"


def test_each_outcome_event_carries_its_own_commands_correlation_and_causation(db_url, kafka_bootstrap):
    """Two commands merged into one engine run: each transfer's event is caused by, and correlates with, the
    command that asked for it, as when the command is polled alone."""
    tag = uuid.uuid4().hex[:8]
    with _service(db_url, kafka_bootstrap) as (rt, client):
        c = Commands(rt, client, tag)
        ids = {n: f"cmd-{n}-{tag}" for n in ("alone", "a", "b")}
        c.poll(c.cmd(c.t("alone"), event_id=ids["alone"], correlation=f"corr-alone-{tag}"))
        c.poll(c.cmd(c.t("a"), event_id=ids["a"], correlation=f"corr-a-{tag}"),
               c.cmd(c.t("b", c.pool, c.proj, amount="50"), event_id=ids["b"], correlation=f"corr-b-{tag}"))
        got = {d["data"]["transfer_id"].split("-")[0]: (d["type"].split(".")[1], d["correlationid"],
                                                         d.get("causationid")) for d in c.events()}
        assert got == {n: (kind, f"corr-{n}-{tag}", ids[n]) for n, kind in (
            ("alone", "TransferPosted"), ("a", "TransferPosted"), ("b", "TransferRejected"))}


# -- expiry of a hold taken over Kafka ---------------------------------------------------------------------------

def test_a_hold_taken_over_kafka_expires_once_and_a_late_post_is_refused(db_url, kafka_bootstrap):
    tag = uuid.uuid4().hex[:8]
    with _service(db_url, kafka_bootstrap) as (rt, client):
        c = Commands(rt, client, tag)
        c.poll(c.cmd(c.t("fund", amount="5")),
               c.cmd(c.t("hold", c.pool, c.proj, amount="4", pending=True, timeout_seconds=60)))
        pending = [d for d in c.events() if d["data"]["transfer_id"] == f"hold-{tag}"][0]
        assert pending["data"]["expires_at"] is not None
        assert datetime.fromisoformat(pending["data"]["expires_at"]) == (
            datetime.fromisoformat(pending["data"]["at"]) + timedelta(seconds=60))
        assert c.balance(c.pool)["available"] == "1.0000"
        c.now += timedelta(seconds=61)
        # the next command expires the hold before it is judged: the pool's 5 are free again, the post refused
        c.poll(c.cmd(c.t("post", amount="0", post_pending_id=f"hold-{tag}", dr="", cr="")),
               c.cmd(c.t("spend", c.pool, c.proj, amount="5")))
        expiry = client.app.state.expiry
        assert expiry.run_once() == 0 and expiry.run_once() == 0
        c.now += timedelta(days=1)
        assert expiry.run_once() == 0
        assert c.said("hold") == [("TransferPending", None), ("TransferExpired", None)]
        assert c.said("post") == [("TransferRejected", "pending_transfer_expired")]
        assert c.said("spend") == [("TransferPosted", None)]
        expired = [d for d in c.events() if d["type"] == "countypool.TransferExpired.v1"][0]
        assert (expired["subject"], expired["data"]["amount"], expired["data"]["at"]) == (
            f"hold-{tag}", "4.0000", pending["data"]["expires_at"])
        assert c.balance(c.pool)["balance"] == "0.0000" and c.balance(c.pool)["debits_pending"] == "0.0000"
