"""The quota service and the real ledger service in-process, on real Kafka, each with its own database.

Topics are shared by every test (and other sessions), so each service gets its own consumer group that
starts at the current end of its topics (positions written to its database before it starts); tests use
their own county codes and ids, so they never see each other's data."""
from __future__ import annotations

import json
import random
import uuid
from contextlib import ExitStack, contextmanager
from datetime import date
from typing import Iterator

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from services.quota.application.reconciliation import LedgerBalances
from services.quota.domain.identifiers import credit_code_check_char
from shared.contracts import topics
from shared.contracts.assessment import EnterpriseExited, ProjectEvaluated
from shared.envelope import Event, new_envelope
from shared.kafka_admin import ensure_topics
from shared.outbox import unpublished_count
from tests.support.services import ADMIN, auth, running_service, wait_for

ECOLOGY = auth("dev-ecology-token")
ENERGY = auth("dev-development-reform-token")
LAND = auth("dev-natural-resources-token")
SOURCES = {"ecology": "/departments/ecology", "energy": "/departments/development-reform",
           "land": "/departments/natural-resources", "tax": "/departments/tax"}
RUN = uuid.uuid4().hex[:6]  # in Kafka keys: dead letters of earlier runs stay on the topic
_counties = random.Random().sample(range(110000, 990000), 2000)


def new_county() -> str:
    """A county code (6 digits) unlikely to have been used by an earlier run."""
    return str(_counties.pop())


def key(county: str, name: str) -> str:
    """A Kafka key unique to this run, for finding our own dead letters."""
    return f"K{county}{RUN}-{name}"


def credit_code(county: str, serial: int) -> str:
    body = f"91{county}MA{serial:07d}"
    return body + credit_code_check_char(body)


def start_at_end(runtime, bootstrap: str) -> None:
    """A private consumer group positioned at the end of the service's topics (see module note)."""
    consumer = runtime.consumer
    consumer.group_id = f"{consumer.group_id}-test-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap)
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in consumer.topics for p in sorted(probe.partitions_for_topic(t) or ())]
        ends = probe.end_offsets(tps)
    finally:
        probe.close()
    positions = consumer.positions
    with runtime.db.sessions() as s, s.begin():
        s.execute(positions.insert(), [dict(group_id=consumer.group_id, topic=tp.topic, partition=tp.partition,
                                            next_offset=off) for tp, off in ends.items()])


def ensure_assigned(runtime, timeout: float = 4, attempts: int = 4) -> None:
    """Wait until the service's consumer owns partitions of every topic it subscribes to (it is the group's only
    member), so a test's first event is not published before anyone reads it. A consumer that joined without
    a topic's metadata rejoins by itself (shared/consumer.py, tested in test_consumer.py); restarting the
    consumer thread after a wait stays as the last resort of a test that must not hang."""
    import threading
    import time

    consumer = runtime.consumer
    for _ in range(attempts):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kc = consumer._consumer
            try:
                if kc is not None and {tp.topic for tp in kc.assignment()} >= set(consumer.topics):
                    return
            except Exception:  # noqa: BLE001 - the client is being replaced
                pass
            time.sleep(0.05)
        consumer.stop()
        consumer._stop = threading.Event()
        consumer.start()
    raise AssertionError(f"{runtime.name}: the consumer never got partitions")


class Platform:
    """The two services plus ways to publish what departments and the assessment service would."""

    def __init__(self, quota_rt, quota, ledger_rt, ledger, bootstrap: str):
        self.quota_rt, self.quota, self.ledger_rt, self.ledger = quota_rt, quota, ledger_rt, ledger
        self.bootstrap = bootstrap
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    def publish(self, event: Event, *, source: str, subject: str, event_id: str | None = None) -> str:
        env = new_envelope(event, subject=subject, source=source, event_id=event_id)
        self.producer.send(event.topic, key=subject.encode(), value=env.to_json()).get(timeout=30)
        return env.id

    def publish_raw(self, topic: str, key: str, value: bytes) -> None:
        self.producer.send(topic, key=key.encode(), value=value).get(timeout=30)

    # -- what the assessment service would say --------------------------------------------------
    def admit(self, county: str, project_id: str, *, admitted: bool = True, project_class: str | None = "A",
              tax_per_mu: str = "150000.00", industry_code: str = "C39", park_id: str | None = "park-1",
              land_quota_allowed: bool = True) -> None:
        self.publish(ProjectEvaluated(
            project_id=project_id, applicant_credit_code=credit_code(county, 9999), county_code=county,
            park_id=park_id, admitted=admitted, land="10.0000", investment_per_mu="3000000.00", tax_per_mu=tax_per_mu,
            industry_code=industry_code, project_class=project_class, land_quota_allowed=land_quota_allowed,
            policy_hash="h"),
            source="/countypool/assessment", subject=project_id)

    def exited(self, county: str, code: str) -> None:
        self.publish(EnterpriseExited(credit_code=code, county_code=county, township_code=f"{county}100",
                                      effective_on=date(2024, 1, 31)), source="/countypool/assessment", subject=code)

    def wait_project(self, project_id: str, admitted: bool = True) -> None:
        from services.quota.storage.request_store import project_row

        def seen():
            with self.quota_rt.db.sessions() as s:
                row = project_row(s, project_id)
                return row is not None and row.admitted == admitted
        wait_for(seen, what=f"project {project_id} known")

    # -- HTTP helpers ---------------------------------------------------------------------------
    def policy(self, county: str, **doc) -> dict:
        r = self.quota.put(f"/v1/counties/{county}/policy", headers=ADMIN, json=doc)
        assert r.status_code == 200, r.text
        return r.json()

    def release(self, county: str, release_id: str, asset: str = "COD", amount: str = "10", *, serial: int = 1,
                headers=None, **extra) -> dict:
        body = dict(release_id=release_id, enterprise_credit_code=credit_code(county, serial),
                    township_code=f"{county}100", county_code=county, asset=asset, amount=amount, reason="closure",
                    basis="free", document_ref="通环收〔2024〕1号", released_on="2024-02-01")
        body.update(extra)
        hdr = headers if headers is not None else {"COD": ECOLOGY, "NH3N": ECOLOGY, "SO2": ECOLOGY, "NOX": ECOLOGY, "VOCS": ECOLOGY,
                          "ENERGY": ENERGY, "LAND": LAND}[asset]
        return self.quota.post("/v1/releases", headers=hdr, json=body)

    def request(self, county: str, request_id: str, project_id: str, **lines: str):
        return self.quota.post("/v1/requests", headers=ADMIN, json=dict(
            request_id=request_id, project_id=project_id, county_code=county,
            lines=[{"asset": a, "amount": n} for a, n in lines.items()]))

    def round(self, county: str) -> dict:
        r = self.quota.post(f"/v1/counties/{county}/rounds", headers=ADMIN)
        assert r.status_code == 201, r.text
        return r.json()

    def get_request(self, request_id: str) -> dict:
        return self.quota.get(f"/v1/requests/{request_id}", headers=ADMIN).json()

    def wait_state(self, request_id: str, state: str, timeout: float = 30) -> dict:
        return wait_for(lambda: (r := self.get_request(request_id))["state"] == state and r,
                        timeout=timeout, what=f"{request_id} {state}")

    def pool(self, county: str) -> dict[str, dict]:
        return {a["asset"]: a for a in self.quota.get(f"/v1/counties/{county}/pool", headers=ADMIN).json()["assets"]}

    def wait_booked(self, county: str, asset: str, available: str) -> None:
        try:
            wait_for(lambda: self.pool(county)[asset]["available"] == available, what=f"{asset} {available} available")
        except AssertionError:
            raise AssertionError(f"{asset} {available} never available: {self.diagnosis(county)}") from None

    def diagnosis(self, county: str) -> str:
        """What both services know, for a failure message."""
        from sqlalchemy import text

        with self.quota_rt.db.sessions() as s:
            lots = s.execute(text("select lot_id, ledger_state from lots where county_code = :c"), {"c": county}).all()
            asked = s.execute(text("select transfer_id, state, ledger_reason from ledger_transfers "
                                   "where county_code = :c"), {"c": county}).all()
            unpublished = unpublished_count(s)
        with self.ledger_rt.db.sessions() as s:
            made = s.execute(text("select id, status from transfers where id like :p"), {"p": "quota/%"}).all()
        kc = self.ledger_rt.consumer._consumer
        try:
            assigned = {(tp.partition): kc.position(tp) for tp in kc.assignment()} if kc else None
        except Exception as exc:  # noqa: BLE001
            assigned = repr(exc)
        return (f"ledger_assignment={assigned} stored={self.ledger_rt.consumer.stored_positions()} lots={lots} asked={asked} quota_unpublished={unpublished} ledger_transfers={made[-10:]} "
                f"quota_consumer={self.quota_rt.consumer.stats} ledger_consumer={self.ledger_rt.consumer.stats}")

    def reconciliation(self, county: str) -> dict:
        r = self.quota.get(f"/v1/counties/{county}/reconciliation", headers=ADMIN)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_reconciled(self, county: str, timeout: float = 30) -> dict:
        return wait_for(lambda: (r := self.reconciliation(county))["agrees"] and r["in_flight"] == 0 and r,
                        timeout=timeout, what=f"county {county} reconciled")

    def ledger_balance(self, account: str) -> dict:
        return self.ledger.get(f"/v1/accounts/{account}", headers=ADMIN).json()

    def quota_events(self, subject_contains: str, timeout: float = 5) -> list[dict]:
        """Every quota event published so far whose subject contains the text (read from the outbox)."""
        from services.quota.storage.tables import messaging

        wait_for(lambda: self.quota_rt.relay.backlog() == 0, timeout=timeout, what="quota outbox published")
        out = messaging["outbox"]
        with self.quota_rt.db.sessions() as s:
            rows = s.execute(out.select().where(out.c.topic == topics.QUOTA_EVENTS).order_by(out.c.position)).all()
        return [json.loads(r.envelope) for r in rows if subject_contains in r.key]

    # -- holding the saga still ----------------------------------------------------------------
    @contextmanager
    def relay_paused(self):
        """Nothing the quota service writes reaches Kafka meanwhile (its outbox keeps it): the ledger's
        answer to a reservation cannot arrive before what the test does inside."""
        from shared.outbox import OutboxRelay

        rt = self.quota_rt
        rt.relay.stop()
        try:
            yield
        finally:
            rt.relay = OutboxRelay(rt.db, rt.tables["outbox"], rt.settings.kafka_bootstrap_servers,
                                   batch_size=rt.settings.relay_batch_size, idle_seconds=rt.settings.relay_idle_seconds)
            rt.relay.start()

    def dead_letters(self, key_contains: str, expect: int, timeout: float = 20) -> dict[str, str]:
        """key -> dlq-reason of the intake topic's dead letters whose key contains the text."""
        found: dict[str, str] = {}

        def enough():
            c = KafkaConsumer(topics.dlq(topics.INTAKE_QUOTA), bootstrap_servers=self.bootstrap,
                              auto_offset_reset="earliest", consumer_timeout_ms=1500, enable_auto_commit=False)
            try:
                for rec in c:
                    if rec.key and key_contains in rec.key.decode():
                        found[rec.key.decode()] = dict(rec.headers)["dlq-reason"].decode()
            finally:
                c.close()
            return len(found) >= expect

        try:
            wait_for(enough, timeout=timeout, interval=0.2, what=f"{expect} dead letters for {key_contains}")
        except AssertionError:
            raise AssertionError(f"dead letters for {key_contains}: {found}; {self.quota_rt.consumer.stats}") from None
        return found

    def close(self) -> None:
        self.producer.close()


@contextmanager
def platform(quota_db: str, ledger_db: str, bootstrap: str, **quota_settings) -> Iterator[Platform]:
    with ExitStack() as stack:
        ledger_rt, ledger = stack.enter_context(running_service("ledger", ledger_db, bootstrap, background=False,
                                                                expiry_interval_seconds=0.2))
        quota_settings.setdefault("expiry_interval_seconds", 0.2)
        quota_rt, quota = stack.enter_context(running_service("quota", quota_db, bootstrap, background=False,
                                                              **quota_settings))
        quota.app.state.ledger_balances = LedgerBalances("", "dev-admin-token", client=ledger)
        for rt in (ledger_rt, quota_rt):
            start_at_end(rt, bootstrap)
            rt.start_background()
        for rt in (ledger_rt, quota_rt):
            ensure_assigned(rt)
        p = Platform(quota_rt, quota, ledger_rt, ledger, bootstrap)
        stack.callback(p.close)
        yield p
