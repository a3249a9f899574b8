"""Quota's PostgreSQL database restored from an older pg_dump, on real Kafka, with the real ledger answering.

README.md, "Backups and recovery": quota, restored, takes its releases in again from the intake topic and asks
the ledger again; the ledger answers the repeated transfer ids again (services/ledger/handlers.py,
``answer_repeats``), so every lot ends booked, even when quota read the ledger's first answers before its lots
were there again.

The run: releases of three counties come in on the intake topic, quota takes them in (lots, intake and retire
transfers asked over the commands topic), the ledger books them and answers on its events topic. quota's database
is dumped; more releases come in and settle; quota's figures are recorded (what the county saw before the disk was
lost). The dump is restored into a fresh database and quota starts again on it with the same consumer group. To
make the hard case happen for certain, the restored quota first reads only the ledger's events topic (the answers
to the lots taken in after the backup, which it no longer knows: ignored as not ours), and only then the intake
topic too (the releases again: lots again, asked again, answered again by the ledger). Compared at the end:
quota's lots, transfers and pool figures with those recorded before the loss, the ledger's books with what they
were before the restore (each transfer posted once), and quota's reconciliation with the ledger.

Every service runs in-process with its real handlers, batch paths, inboxes, positions and outbox relays, on
private topics (the relays publish each row to the private topic standing for the one it names), private consumer
groups and private databases: nothing here touches what other tests or sessions use.
"""
from __future__ import annotations

import json
import time
import uuid
from contextlib import ExitStack
from datetime import date

from kafka import KafkaProducer
from sqlalchemy import select, text

from services.ledger.handlers import LedgerApp, build_bus
from services.ledger.main import command_source_check
from services.quota.application.reconciliation import LedgerBalances
from shared.consumer import IdempotentConsumer
from shared.contracts import topics
from shared.contracts.quota import QuotaReleaseSubmitted
from shared.envelope import new_envelope
from shared.kafka_admin import ensure_topics
from shared.outbox import OutboxRelay, RelaySender
from tests.integration.quota.harness import credit_code, new_county
from tests.integration.test_restore_from_backup import end_offsets, pg_dump, pg_restore
from tests.support.pg import fresh_database
from tests.support.services import ADMIN, running_service

ECOLOGY = "/departments/ecology"


# -- private topics -----------------------------------------------------------------------------------------------

class Topics:
    """A private topic for each real one the two services use (3 partitions each, as the ledger restore test)."""

    def __init__(self, bootstrap: str):
        base = f"test.restore-quota.{uuid.uuid4().hex[:10]}"
        self.intake, self.commands, self.events = f"{base}.intake", f"{base}.commands", f"{base}.ledger-events"
        self.sink = f"{base}.other"  # quota's own events (nobody here reads them)
        self.real = {self.intake: topics.INTAKE_QUOTA, self.commands: topics.LEDGER_COMMANDS,
                     self.events: topics.LEDGER_EVENTS}
        self.private = {real: mine for mine, real in self.real.items()}
        ensure_topics(bootstrap, [self.intake, self.commands, self.events, self.sink,
                                  *(topics.dlq(t) for t in (self.intake, self.commands, self.events))], partitions=3)

    def of(self, real: str) -> str:
        return self.private.get(real, self.sink)


class _Remapped:
    """The relay's sender, publishing each message to the private topic standing for the one its row names."""

    def __init__(self, sender: RelaySender, names: Topics):
        self.sender, self.names = sender, names

    def send(self, messages: list[tuple[str, bytes, bytes]]) -> None:
        self.sender.send([(self.names.of(t), k, v) for t, k, v in messages])

    def close(self, timeout: float = 5) -> None:
        self.sender.close(timeout)


class PrivateRelay(OutboxRelay):
    """The service's real outbox relay (its epochs, its place), its messages sent to the private topics."""

    def __init__(self, runtime, names: Topics):
        super().__init__(runtime.db, runtime.tables["outbox"], runtime.settings.kafka_bootstrap_servers)
        self.names = names

    def _ensure_producer(self):
        if self._producer is None:
            self._producer = _Remapped(RelaySender(self.bootstrap), self.names)
        return self._producer


def consumer_of(runtime, names: Topics, group: str, read: list[str], **kw) -> IdempotentConsumer:
    """The service's consumer as ServiceRuntime builds it (handler, batch path, authorization by the real topic
    name, strict and signed intake), on the private topics ``read``."""
    real = runtime.consumer
    return IdempotentConsumer(
        db=runtime.db, tables=runtime.tables, outbox=runtime.outbox, bootstrap=runtime.settings.kafka_bootstrap_servers,
        group_id=group, topics=read, handler=kw.get("handler", real.handler),
        batch_handler=kw.get("batch_handler", real.batch_handler), handled_types=real.handled_types, wants=real.wants,
        authorize=lambda env, topic: (kw.get("authorize") or real.authorize)(env, names.real.get(topic, topic)),
        max_records=real.max_records, strict_topics={t for t in read if names.real.get(t) in real.strict_topics},
        signed_topics={t for t in read if names.real.get(t) in real.signed_topics},
        check_signature=real.check_signature, max_message_bytes=real.max_message_bytes, commit_interval_seconds=0.0)


# -- the services ---------------------------------------------------------------------------------------------------

class LedgerService:
    """The ledger: its HTTP API (for quota's reconciliation) and its real consumer and relay on the private topics."""

    def __init__(self, stack: ExitStack, url: str, bootstrap: str, names: Topics):
        self.rt, self.client = stack.enter_context(running_service("ledger", url, bootstrap, background=False))
        self.app = LedgerApp(self.rt.outbox)
        bus, many = build_bus(self.app)
        self.consumer = consumer_of(self.rt, names, f"test-restore-quota-ledger-{uuid.uuid4().hex[:8]}",
                                    [names.commands], handler=bus, batch_handler=many,
                                    authorize=command_source_check(["/countypool/quota"]))
        self.relay = PrivateRelay(self.rt, names)
        stack.callback(self.relay.stop)
        stack.callback(self.consumer.stop, 5)

    def books(self) -> dict:
        """Every transfer (status, amounts), every failed id, every balance, the journal's length."""
        with self.rt.db.sessions() as s:
            return {
                "transfers": {r.id: (r.status, r.amount, r.posted_amount) for r in s.execute(text(
                    "SELECT id, status, amount, posted_amount FROM transfers")).all()},
                "failed": dict(s.execute(text("SELECT id, result FROM failed_transfers")).all()),
                "balances": {r[0]: tuple(r[1:]) for r in s.execute(text(
                    "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted FROM accounts")).all()},
                "journal": s.execute(text("SELECT count(*) FROM journal")).scalar_one()}

    def answers(self) -> list[tuple[str, str, str]]:
        """What the ledger said about transfers, in outbox order: (event id, event name, transfer id)."""
        out = self.rt.tables["outbox"]
        with self.rt.db.sessions() as s:
            rows = s.execute(select(out.c.envelope).order_by(out.c.position)).all()
        said = []
        for (raw,) in rows:
            env = json.loads(raw)
            if "transfer_id" in env["data"]:
                said.append((env["id"], env["type"].split(".")[1], env["data"]["transfer_id"]))
        return said


class QuotaService:
    """Quota: its HTTP API, its real consumer (reading ``read`` of the private topics) and relay."""

    def __init__(self, stack: ExitStack, url: str, bootstrap: str, names: Topics, group: str, ledger: LedgerService):
        self.stack, self.names, self.group = stack, names, group
        self.rt, self.client = stack.enter_context(running_service("quota", url, bootstrap, background=False))
        self.client.app.state.ledger_balances = LedgerBalances("", "dev-admin-token", client=ledger.client)
        self.relay = PrivateRelay(self.rt, names)
        stack.callback(self.relay.stop)
        self.consumer: IdempotentConsumer | None = None

    def read(self, *which: str) -> IdempotentConsumer:
        """(Re)start the consumer, same group, on these private topics."""
        if self.consumer is not None:
            self.consumer.stop(5)
        self.consumer = consumer_of(self.rt, self.names, self.group, list(which))
        self.stack.callback(self.consumer.stop, 5)
        return self.consumer

    def policy(self, county: str) -> None:
        r = self.client.put(f"/v1/counties/{county}/policy", headers=ADMIN, json={"verification": "accept"})
        assert r.status_code == 200, r.text

    def figures(self, counties: list[str]) -> dict:
        """What the county sees: its lots and their ledger state, every transfer asked and its answer, its pool."""
        with self.rt.db.sessions() as s:
            lots = {r.lot_id: tuple(r[1:]) for r in s.execute(text(
                "SELECT lot_id, county_code, asset, amount, retired, remaining, ledger_state FROM lots")).all()}
            asked = {r.transfer_id: tuple(r[1:]) for r in s.execute(text(
                "SELECT transfer_id, purpose, lot_id, amount, state, ledger_reason FROM ledger_transfers")).all()}
        pools = {}
        for c in counties:
            r = self.client.get(f"/v1/counties/{c}/pool", headers=ADMIN)
            assert r.status_code == 200, r.text
            pools[c] = sorted(r.json()["assets"], key=lambda a: a["asset"])
        return {"lots": lots, "asked": asked, "pools": pools}

    def reconciliation(self, county: str) -> dict:
        r = self.client.get(f"/v1/counties/{county}/reconciliation", headers=ADMIN)
        assert r.status_code == 200, r.text
        return r.json()

    def inbox_ids(self) -> set[str]:
        with self.rt.db.sessions() as s:
            return set(s.execute(select(self.rt.tables["inbox"].c.event_id)).scalars())


def settle(relays: list[OutboxRelay], consumers: list[IdempotentConsumer], timeout: float = 60) -> None:
    """Drive relays and consumers in turn until nothing is left to publish and every consumer's stored positions
    are at the end of every partition of its topics (twice in a row)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        moved = 0
        for step in [*relays, *consumers]:
            moved += step.publish_batch() if isinstance(step, OutboxRelay) else step.poll_once(timeout_ms=100)
        if moved or any(r.backlog() for r in relays) or not all(_at_end(c) for c in consumers):
            quiet = 0
            continue
        quiet += 1
        if quiet == 2:
            return
    raise AssertionError(f"not settled: {[(c.topics, c.stored_positions(), c.stats) for c in consumers]}")


def _at_end(c: IdempotentConsumer) -> bool:
    stored = c.stored_positions()
    return all(stored.get((t, p), 0) >= end for t in c.topics
               for p, end in end_offsets(c.bootstrap, t).items() if end)


def publish_releases(bootstrap: str, names: Topics, releases: list[tuple[str, str, str, str]]) -> None:
    """(county, release id, asset, amount): each as the ecology department publishes it, keyed by release id."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for n, (county, rid, asset, amount) in enumerate(releases):
            ev = QuotaReleaseSubmitted(
                release_id=rid, enterprise_credit_code=credit_code(county, n + 1), township_code=f"{county}100",
                county_code=county, asset=asset, amount=amount, reason="closure", basis="free",
                document_ref="通环收〔2024〕1号", released_on=date(2024, 2, 1))
            p.send(names.intake, key=rid.encode(), value=new_envelope(ev, subject=rid, source=ECOLOGY).to_json())
        p.flush()
    finally:
        p.close()


# -- the drill ------------------------------------------------------------------------------------------------------

def test_restored_quota_takes_its_releases_in_again_and_every_lot_ends_booked(
        pg_server_url, kafka_bootstrap, tmp_path):
    names = Topics(kafka_bootstrap)
    group = f"test-restore-quota-{uuid.uuid4().hex[:8]}"
    a, b, c = new_county(), new_county(), new_county()
    counties = [a, b, c]
    before = [(a, f"R{a}-1", "COD", "10"), (a, f"R{a}-2", "NH3N", "2.5"), (b, f"R{b}-1", "COD", "4")]
    # after the backup: more of the same counties, and a county first heard of now (its policy is in the dump)
    after = [(a, f"R{a}-3", "COD", "1.25"), (b, f"R{b}-2", "COD", "6"), (b, f"R{b}-3", "NH3N", "0.5"),
             (c, f"R{c}-1", "COD", "3"), (a, f"R{a}-4", "NH3N", "7")]

    with ExitStack() as stack:
        ledger_db = stack.enter_context(fresh_database(pg_server_url))
        quota_db = stack.enter_context(fresh_database(pg_server_url))
        restored_db = stack.enter_context(fresh_database(pg_server_url))
        ledger = LedgerService(stack, ledger_db, kafka_bootstrap, names)

        # -- quota as it ran before the disk was lost --------------------------------------------------------------
        with ExitStack() as first_life:
            first = QuotaService(first_life, quota_db, kafka_bootstrap, names, group, ledger)
            first.read(names.intake, names.events)
            parts = ([first.relay, ledger.relay], [ledger.consumer, first.consumer])
            for county in counties:
                first.policy(county)
            publish_releases(kafka_bootstrap, names, before)
            settle(*parts)
            assert {v[-1] for v in first.figures(counties)["lots"].values()} == {"booked"}
            backup = tmp_path / "quota.dump"
            pg_dump(quota_db, backup)  # the nightly (or hourly) dump
            at_backup = first.figures(counties)
            answered_at_backup = len(ledger.answers())
            publish_releases(kafka_bootstrap, names, after)
            settle(*parts)
            lived = first.figures(counties)  # what the counties saw when the disk was lost
            lived_reconciled = {county: first.reconciliation(county) for county in counties}
        books_before_restore = ledger.books()
        first_answers = ledger.answers()[answered_at_backup:]  # the answers to what came after the backup

        assert len(lived["lots"]) == len(before) + len(after) and len(at_backup["lots"]) == len(before)
        assert {v[-1] for v in lived["lots"].values()} == {"booked"}
        assert {v[-2] for v in lived["asked"].values()} == {"posted"}
        for county, rep in lived_reconciled.items():
            assert rep["agrees"] and rep["settled"] and rep["in_flight"] == 0, (county, rep)
        lost = set(lived["asked"]) - set(at_backup["asked"])  # the transfers asked after the backup
        assert lost and {tid for _, _, tid in first_answers} == lost

        # -- the disk is lost; the dump is restored into a fresh database; quota starts again, same group ----------
        pg_restore(backup, restored_db)
        second = QuotaService(stack, restored_db, kafka_bootstrap, names, group, ledger)
        assert second.figures(counties) == at_backup

        # the ledger's first answers to the lots taken in after the backup, read before the releases are again
        settle([second.relay, ledger.relay], [ledger.consumer, second.read(names.events)])
        read_too_early = {eid for eid, _, _ in first_answers} & second.inbox_ids()
        assert read_too_early == {eid for eid, _, _ in first_answers}, "every first answer read (and ignored)"
        assert second.figures(counties) == at_backup, "answers to transfers quota no longer knows change nothing"

        # now the intake topic too: the releases after the backup come in again, quota asks the ledger again
        settle([second.relay, ledger.relay], [ledger.consumer, second.read(names.intake, names.events)])
        now = second.figures(counties)
        reconciled = {county: second.reconciliation(county) for county in counties}
        books_after = ledger.books()
        answers_again = ledger.answers()[answered_at_backup + len(first_answers):]

    stuck = {lot: v[-1] for lot, v in now["lots"].items() if v[-1] != "booked"}
    assert not stuck, f"lots not booked after the restore: {stuck}; transfers {now['asked']}"
    assert now == lived, "quota's lots, transfers and pool as before the disk was lost"
    assert books_after == books_before_restore, "the ledger's books unchanged: every transfer posted once"
    for county, rep in reconciled.items():
        assert rep["agrees"] and rep["settled"] and rep["in_flight"] == 0 and rep["stuck"] == 0, (county, rep)
        assert not rep["differences"] and rep["ours"] == lived_reconciled[county]["ours"], (county, rep)
    # the ledger answered each repeated transfer id once more, under a fresh event id
    assert sorted((name, tid) for _, name, tid in answers_again) == sorted(
        (name, tid) for _, name, tid in first_answers)
    assert all(name == "TransferPosted" for _, name, _ in answers_again)
    assert not {eid for eid, _, _ in answers_again} & {eid for eid, _, _ in first_answers}
