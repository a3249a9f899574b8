"""The quota consumer's batch path (services/quota/batch.py) against its oracle: the same poll of messages
applied by the consumer one message at a time (no batch handler) on a second database. Same rows, same events
in the same order with the same content, the same refusals with the same reasons; only the ledger commands
differ, by carrying many lots' chains each. On SQLite and PostgreSQL; dead letters go to the real Kafka topic.

The poll is handed to the consumer's ``_apply`` as Kafka would give it (sorted by topic and partition), so what
is in one batch is known, not left to the broker's timing."""
from __future__ import annotations

import json
import uuid
from collections import namedtuple
from datetime import date, datetime, timezone

import pytest
from tests.support.pg import fresh_database
from sqlalchemy import select

import services.quota.main as quota_main
from services.quota.application import ledger_commands
from services.quota.application.intake import register_reclamation_project
from services.quota.application.tx import Tx
from services.quota.domain.policy import PoolPolicy
from services.quota.storage import tables as T
from services.quota.storage.counties import save_policy
from shared.contracts import topics
from shared.contracts.assessment import EnterpriseExited
from shared.contracts.ledger import TransferPosted
from shared.contracts.quota import QuotaReleaseSubmitted, ReclamationAccepted
from shared.envelope import new_envelope
from shared.settings import load_settings
from tests.badinput.support import TopicTail, headers_of
from tests.integration.quota.harness import credit_code, new_county
from tests.support.services import TOKENS

Rec = namedtuple("Rec", "topic partition offset key value headers", defaults=[()])  # what the consumer reads of a Kafka record
ECOLOGY, ENERGY, LAND = "/departments/ecology", "/departments/development-reform", "/departments/natural-resources"
NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def oracle_url(db_url, tmp_path, request):
    """A second empty database of the same kind as ``db_url``."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'oracle.sqlite3'}"
        return
    with fresh_database(request.getfixturevalue("pg_server_url")) as url:
        yield url


def quota(url: str, bootstrap: str, *, batch: bool):
    rt, _ = quota_main.build(load_settings("quota", quota_main.QuotaSettings, database_url=url,
                                           kafka_bootstrap_servers=bootstrap, auth_tokens_file=TOKENS))
    rt.migrate()
    rt.consumer.group_id = f"test-quota-batch-{uuid.uuid4().hex[:8]}"  # tells its dead letters apart
    if not batch:
        rt.consumer.batch_handler = None
    return rt


class Poll:
    """Records of one poll, built in the order the consumer sorts them (topic, partition, offset)."""

    def __init__(self, run: str):
        self.run = run
        self.records: list[Rec] = []
        self.offsets: dict[tuple[str, int], int] = {}

    def key(self, name: str) -> str:
        return f"B{self.run}-{name}"

    def raw(self, topic: str, partition: int, name: str, value: bytes) -> None:
        off = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = off + 1
        self.records.append(Rec(topic, partition, off, self.key(name).encode(), value))

    def event(self, ev, source: str, name: str, partition: int = 0, event_id: str | None = None) -> None:
        eid = event_id or f"{self.run}-{name}"
        self.raw(ev.topic, partition, name, new_envelope(ev, subject=self.key(name), source=source, event_id=eid).to_json())

    def sorted(self) -> list[Rec]:
        return sorted(self.records, key=lambda r: (r.topic, r.partition, r.offset))


def release(county: str, rid: str, asset: str = "COD", amount: str = "10", serial: int = 1, **extra):
    fields = dict(release_id=rid, enterprise_credit_code=credit_code(county, serial), township_code=f"{county}100",
                  county_code=county, asset=asset, amount=amount, reason="closure", basis="free",
                  document_ref="通环收〔2024〕1号", released_on=date(2024, 2, 1))
    fields.update(extra)
    return QuotaReleaseSubmitted(**fields)


def prepare(rt, run: str, a: str, b: str) -> None:
    """The same starting point on both databases: county B's policy, a registered reclamation project in A, and
    one release of B taken earlier (the one the poll repeats, contradicts and gets the ledger's answers for)."""
    with rt.unit_of_work() as uow:
        save_policy(uow.session, PoolPolicy(b, verification="accept", retire_share_bp={"COD": 2500}), "test", NOW)
        register_reclamation_project(Tx.of_uow(uow, NOW), {"project_id": f"RC{run}", "county_code": a,
                                                           "township_code": f"{a}101", "area": "12.5"}, "test")
    first = Poll(run + "p")
    first.event(release(b, f"R0{run}", amount="8"), ECOLOGY, "r0", event_id=f"{run}-r0")
    rt.consumer._apply(first.sorted())


def the_poll(run: str, a: str, b: str, c: str, e: str) -> Poll:
    p = Poll(run)
    p.event(EnterpriseExited(credit_code=credit_code(a, 2), county_code=a, township_code=f"{a}100",
                             effective_on=date(2024, 1, 31)), "/countypool/assessment", "exited")
    p.event(release(a, f"A1{run}", serial=1), ECOLOGY, "a1")  # exit not known: held
    p.event(release(a, f"A2{run}", serial=2), ECOLOGY, "a2")  # its exit came first in the poll: accepted
    b1 = release(b, f"B1{run}", "ENERGY", "12.345", basis="paid", buyback_price_per_unit="800.00")
    p.event(b1, ENERGY, "b1")
    p.event(b1, ENERGY, "b1-again")  # the department sent it twice (new event id): no second effect
    p.event(release(b, f"BT{run}", township_code=f"{a}100"), ECOLOGY, "b-township")  # refused alone
    p.raw(topics.INTAKE_QUOTA, 0, "junk", b"{not json")
    p.event(ReclamationAccepted(project_id=f"RC{run}", accepted_on=date(2024, 5, 1)), LAND, "rc")  # applied alone
    p.event(ReclamationAccepted(project_id=f"RC{run}-none", accepted_on=date(2024, 5, 1)), LAND, "rc-unknown")
    p.event(release(b, f"B2{run}", amount="3"), ECOLOGY, "b2")
    p.event(release(b, f"B2{run}", amount="4"), ECOLOGY, "b2-other")  # same id, other body
    p.event(release(b, f"R0{run}", amount="8"), ECOLOGY, "r0-again", partition=1)
    p.event(release(b, f"R0{run}", amount="9"), ECOLOGY, "r0-other", partition=1)
    p.event(release(c, f"C1{run}", township_code=f"{a}100"), ECOLOGY, "c-refused", partition=1)  # a new county
    p.event(release(e, f"E1{run}", amount="2"), ECOLOGY, "e1", partition=1)  # another new county, taken
    p.event(release(a, f"A3{run}", "NOX", "5", serial=3, reason="upgrade_savings"), ECOLOGY, "a3", partition=1)
    for tid in (f"quota/intake/release:R0{run}", f"quota/retire/release:R0{run}", f"settlement/{run}/x"):
        p.event(TransferPosted(transfer_id=tid, debit_account="d", credit_account="c", asset="COD", amount="1",
                               code="x", at=NOW), "/countypool/ledger", tid.replace("/", "-"))
    return p


REFUSED = {"b-township": "township_not_in_county", "junk": "malformed_json", "rc-unknown": "reclamation_project_unknown",
           "b2-other": "release_id_reused", "r0-other": "release_id_reused", "c-refused": "township_not_in_county"}


def rows(rt) -> dict:
    """Every table the poll may touch, without the clock's columns (when, not what)."""
    clock = {"received_at", "decided_at", "created_at", "asked_at", "answered_at", "updated_at", "recorded_at",
             "processed_at"}
    out = {}
    with rt.db.sessions() as s:
        for t in (T.counties, T.releases, T.lots, T.ledger_transfers, T.reclamation_projects, T.departed_enterprises):
            cols = [c for c in t.c if c.name not in clock]
            out[t.name] = sorted(tuple(map(str, r)) for r in s.execute(select(*cols)))
        inbox = T.messaging["inbox"]
        out["inbox"] = sorted((r.event_id, r.outcome) for r in s.execute(select(inbox.c.event_id, inbox.c.outcome)))
    return out


def events(rt) -> tuple[list[tuple], list[dict]]:
    """(every event but the ledger commands, in outbox order; the ledger commands' payloads)."""
    out = T.messaging["outbox"]
    with rt.db.sessions() as s:
        docs = [json.loads(r.envelope) for r in s.execute(select(out.c.envelope).order_by(out.c.position))]
    plain = [(d["type"], d["subject"], d["data"], d.get("causationid"), d.get("correlationid"), d["source"])
             for d in docs if d["type"] != "countypool.TransfersRequested.v1"]
    return plain, [d["data"] for d in docs if d["type"] == "countypool.TransfersRequested.v1"]


def command_keys(rt) -> list[tuple[str, set[str]]]:
    """(Kafka key, counties its transfers name) of every ledger command in the outbox, in order."""
    out = T.messaging["outbox"]
    with rt.db.sessions() as s:
        rows = s.execute(select(out.c.key, out.c.envelope).where(out.c.event_type == "countypool.TransfersRequested.v1")
                         .order_by(out.c.position)).all()
    return [(r.key, {t["metadata"]["county_code"] for t in json.loads(r.envelope)["data"]["transfers"]}) for r in rows]


def dead_letters(tail: TopicTail, group: str, expect: int) -> dict[str, str]:
    def ours(recs):
        return {r.key.decode(): headers_of(r)["dlq-reason"] for r in recs
                if r.key and headers_of(r).get("dlq-consumer-group") == group}
    return ours(tail.until(lambda recs: len(ours(recs)) >= expect, timeout=20))


def test_a_poll_applied_at_once_has_the_effects_events_and_refusals_of_its_messages_one_by_one(
        db_url, oracle_url, kafka_bootstrap):
    run = uuid.uuid4().hex[:6]
    a, b, c, e = (new_county() for _ in range(4))
    batch, oracle = quota(db_url, kafka_bootstrap, batch=True), quota(oracle_url, kafka_bootstrap, batch=False)
    tail = TopicTail(kafka_bootstrap, topics.dlq(topics.INTAKE_QUOTA))
    try:
        for rt in (batch, oracle):
            prepare(rt, run, a, b)
        poll = the_poll(run, a, b, c, e).sorted()
        _, commands_before = events(batch)
        for rt in (batch, oracle):
            rt.consumer._apply(poll)

        # the refusals: each alone, with its reason, the rest applied
        for rt in (batch, oracle):
            got = dead_letters(tail, rt.consumer.group_id, len(REFUSED))
            assert got == {f"B{run}-{k}": v for k, v in REFUSED.items()}
        assert (batch.consumer.stats.applied, batch.consumer.stats.dead_lettered) == \
               (oracle.consumer.stats.applied, oracle.consumer.stats.dead_lettered)

        # the same rows and the same events, in the same order, caused by the same messages
        assert rows(batch) == rows(oracle)
        plain, commands = events(batch)
        oracle_plain, oracle_commands = events(oracle)
        assert plain == oracle_plain
        state = {r[0]: (r[-3], r[-2]) for r in rows(batch)["releases"]}  # release id -> (status, reason)
        assert state == {f"R0{run}": ("accepted", "accepted_unverified"),
                         f"A1{run}": ("pending_verification", "exit_not_known"), f"A2{run}": ("accepted", "exit_known"),
                         f"B1{run}": ("accepted", "accepted_unverified"), f"B2{run}": ("accepted", "accepted_unverified"),
                         f"E1{run}": ("pending_verification", "exit_not_known"),
                         f"A3{run}": ("accepted", "verification_not_required")}
        counties = {r[0] for r in rows(batch)["counties"]}
        assert {a, b, e} <= counties and c not in counties, "a county whose only message was refused is not made"
        lots = {r[0]: r[-1] for r in rows(batch)["lots"]}  # lot id -> ledger_state
        assert lots[f"release:R0{run}"] == "booked" and lots[f"release:B1{run}"] == "awaiting"
        assert f"reclamation:RC{run}" in lots and f"release:A1{run}" not in lots

        # the ledger is asked for the same chains, whole, in commands of one county each (keyed by its pool, so
        # they reach the ledger in order): one per county of a run of releases
        def chains(cmds):
            return [t for cmd in cmds for t in cmd["transfers"]]
        new = commands[len(commands_before):]
        assert chains(new) == chains(oracle_commands[len(commands_before):])
        assert len(new) == 5 and len(oracle_commands) - len(commands_before) == 5  # lots: A2 | B1 | RC | B2 | A3
        for rt in (batch, oracle):
            assert all(key == f"county:{county}/pool" for key, (county,) in command_keys(rt))
        for cmd in new:
            assert not cmd["transfers"][-1]["linked"]
            wanted = {(t[k], t["asset"]) for t in cmd["transfers"] for k in ("debit_account", "credit_account")}
            assert {(x["account_id"], x["asset"]) for x in cmd["open_accounts"]} == wanted

        # the poll again (a redelivery): nothing new, and the refused are refused again, alike
        for rt in (batch, oracle):
            rt.consumer._apply(poll)
        assert rows(batch) == rows(oracle) and events(batch)[0] == plain and len(events(batch)[1]) == len(commands)
        assert batch.consumer.stats.dead_lettered == oracle.consumer.stats.dead_lettered == 2 * len(REFUSED)
    finally:
        tail.close()
        for rt in (batch, oracle):
            rt.db.dispose()


def test_many_lots_travel_in_commands_of_bounded_size_each_chain_whole(db_url, kafka_bootstrap, monkeypatch):
    monkeypatch.setattr(ledger_commands, "MAX_COMMAND_TRANSFERS", 5)  # chains of 2: two lots per command
    run = uuid.uuid4().hex[:6]
    county = new_county()
    rt = quota(db_url, kafka_bootstrap, batch=True)
    try:
        with rt.unit_of_work() as uow:
            save_policy(uow.session, PoolPolicy(county, verification="accept"), "test", NOW)
        poll = Poll(run)
        for i in range(5):
            poll.event(release(county, f"M{i}{run}", amount=f"{i + 1}"), ECOLOGY, f"m{i}")
        rt.consumer._apply(poll.sorted())
        _, commands = events(rt)
        assert [[t["transfer_id"] for t in cmd["transfers"]] for cmd in commands] == [
            [f"quota/{k}/release:M{i}{run}" for i in pair for k in ("intake", "retire")] for pair in ((0, 1), (2, 3), (4,))]
        assert all(not cmd["transfers"][-1]["linked"] for cmd in commands)
    finally:
        rt.db.dispose()
