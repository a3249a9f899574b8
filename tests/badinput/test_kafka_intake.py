"""Bad messages on each service's intake topic (issue 8, "Bad input"), on real Kafka.

For assessment (countypool.intake.assessment — here a topic of the test's own, through the service's
intake_topic/group_id settings), quota (countypool.intake.quota), settlement (countypool.intake.settlement) and
the ledger (countypool.ledger.commands), the service's consumer gets:

- malformed JSON, an unknown event type, a known type in a schema version nobody has (v9);
- an oversized message (~900 KB, below the broker's ~1 MB default, so Kafka carries it), its bulk in a field the
  contract leaves unbounded where there is one, so without a size limit the message would be applied;
- a known event from a source that may not publish it (the tax bureau publishing a quota release, ...);
- an event id already applied, sent again with a different body.

Every one must land on ``<topic>.dlq`` with its machine-readable ``dlq-reason`` header and have no effect; the
consumer keeps its pace: N good messages after the bad ones are applied about as fast as N before them.

Topics other than assessment's are shared with every other test and session: the service reads them with a
consumer group of its own that starts at their current end, and its messages carry Kafka keys of this run, by
which its dead letters are found.
"""
from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Callable

import pytest
from kafka import KafkaProducer

from shared.contracts import topics
from shared.contracts.assessment import EnterpriseRegistered, EnterpriseReported
from shared.contracts.ledger import AccountSpec, TransferSpec, TransfersRequested
from shared.contracts.quota import QuotaReleaseSubmitted, ReclamationAccepted
from shared.contracts.settlement import TaxReceiptReported
from shared.envelope import Event, new_envelope
from tests.badinput.support import SERVICES, TopicTail, headers_of, start_consuming_from_end
from tests.support.services import ADMIN, auth, running_service

N_GOOD = 60  # good messages before the bad ones (the pace to keep) and again after them
OVERSIZE = 900 * 1024
SIZE_REASONS = {"message_too_large", "payload_too_large", "invalid_payload", "invalid_envelope"}
SOURCE_REASONS = {"source_not_allowed", "unknown_source", "unexpected_source"}
FOREIGN_REASONS = {"unexpected_type", "unknown_type", "unhandled_type", "wrong_topic"}
DEPT = {"industry": "/departments/industry", "tax": "/departments/tax", "ecology": "/departments/ecology",
        "land": "/departments/natural-resources", "quota": "/countypool/quota"}


def credit_code(county: str, n: int) -> str:
    from services.assessment.domain.credit_code import make_credit_code

    return make_credit_code(f"91{county}{n:09d}")


@dataclass
class Probe:
    """One bad message: its Kafka key, bytes, the dlq-reason(s) it may get and how to tell it had no effect."""
    key: str
    value: bytes
    reasons: set[str]
    no_effect: Callable[[], bool] | None = None


class Scenario:
    """What differs between services: topic, a good event and how to see it applied, the service's bad cases."""

    service: str
    topic: str
    settings: dict = {}

    def __init__(self, run: str, kafka_bootstrap: str, topic: str | None = None):
        self.run = run
        self.bootstrap = kafka_bootstrap
        self.county = str(random.Random(run).randint(110000, 659999))
        if topic:
            self.topic = topic
        self.client = None
        self.runtime = None

    def key(self, label: str) -> str:
        return f"bi-{self.run}-{label}"

    def envelope(self, event: Event, source: str, label: str, event_id: str | None = None) -> bytes:
        return new_envelope(event, subject=self.key(label), source=source, event_id=event_id).to_json()

    # per service ----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        pass

    def good(self, i: int) -> tuple[Event, str]:
        raise NotImplementedError

    def changed(self, event: Event) -> Event:
        """The same event with another body (for the duplicate id)."""
        raise NotImplementedError

    def applied(self, event: Event) -> bool:
        raise NotImplementedError

    def wrong_source(self) -> tuple[Event, str]:
        raise NotImplementedError

    def oversized(self) -> tuple[Event, str, set[str], Callable[[], bool]]:
        raise NotImplementedError

    def foreign(self) -> tuple[Event, str]:
        """A registered event that belongs on another topic, from a source allowed to publish it (misrouted):
        this service has no handler for it, so taking it silently would lose it."""
        return TaxReceiptReported(receipt_id=self.key("foreign"), enterprise_credit_code=credit_code(self.county, 8003),
                                  month="2024-03", tax_kind="VAT", amount="1.00"), DEPT["tax"]


class Assessment(Scenario):
    service = "assessment"

    def good(self, i):
        return EnterpriseReported(credit_code=credit_code(self.county, i), name=f"企业{i}",
                                  township_code=f"{self.county}101", industry_code="C3311"), DEPT["industry"]

    def changed(self, event):
        return event.model_copy(update={"name_": "另一个名字"})

    def applied(self, event):
        r = self.client.get(f"/v1/enterprises/{event.credit_code}", headers=ADMIN)
        return r.status_code == 200 and r.json().get("name") == event.name_

    def _absent(self, code):
        return lambda: self.client.get(f"/v1/enterprises/{code}", headers=ADMIN).status_code == 404

    def wrong_source(self):  # the tax bureau may not register enterprises
        ev, _ = self.good(8001)
        return ev, DEPT["tax"], self._absent(ev.credit_code)

    def oversized(self):
        # flags: a list without a bound in the contract, each a name the register accepts (park_id, name ... are
        # bounded by the register itself)
        code = credit_code(self.county, 8002)
        flags = [f"flag{i:07d}" for i in range(OVERSIZE // 14)]
        # built without validation: the contract itself now bounds flags, the consumer must still refuse it
        ev = EnterpriseReported.model_construct(credit_code=code, name_="超大", township_code=f"{self.county}101",
                                                in_park=False, park_id=None, industry_code="C3311", flags=flags, scale=None)
        return ev, DEPT["industry"], SIZE_REASONS, self._absent(code)


class Quota(Scenario):
    service = "quota"
    topic = topics.INTAKE_QUOTA

    def prepare(self):
        # a reclamation project whose acceptance (ReclamationAccepted) would bring land into the pool
        body = {"project_id": self.key("rc"), "county_code": self.county, "township_code": f"{self.county}101",
                "area": "12.5"}
        r = self.client.post("/v1/reclamation-projects", headers=auth("dev-natural-resources-token"), json=body)
        assert r.status_code == 201, r.text

    def good(self, i):
        return QuotaReleaseSubmitted(
            release_id=self.key(f"R{i}"), enterprise_credit_code=credit_code(self.county, i),
            township_code=f"{self.county}101", county_code=self.county, asset="COD", amount="1.5", reason="closure",
            basis="free", document_ref="通环收〔2024〕1号", released_on=date(2024, 2, 1)), DEPT["ecology"]

    def changed(self, event):
        return event.model_copy(update={"amount": "9"})

    def applied(self, event):
        r = self.client.get(f"/v1/releases/{event.release_id}", headers=ADMIN)
        return r.status_code == 200 and r.json()["amount"] == "1.5000"

    def wrong_source(self):  # the tax bureau publishing a quota release
        ev, _ = self.good(8001)
        return ev, DEPT["tax"], lambda: self.client.get(f"/v1/releases/{ev.release_id}", headers=ADMIN).status_code == 404

    def oversized(self):  # document_ref of ReclamationAccepted has no bound in the contract
        pid = self.key("rc")
        ev = ReclamationAccepted.model_construct(project_id=pid, accepted_area=None, accepted_on=date(2024, 5, 1),
                                                 document_ref="D" * OVERSIZE)

        def not_accepted():
            return self.client.get(f"/v1/reclamation-projects/{pid}", headers=ADMIN).json()["state"] == "registered"

        return ev, DEPT["land"], SIZE_REASONS, not_accepted


class Settlement(Scenario):
    service = "settlement"
    topic = topics.INTAKE_SETTLEMENT

    def prepare(self):
        # receipts are taken for enterprises in the register (EnterpriseRegistered from assessment): the consumer's
        # own handler records them, as if they had come over countypool.assessment.events
        from services.settlement import intake

        def work(uow):
            for i in [*range(2 * N_GOOD), 9000, 8001, 8002]:
                intake.record_enterprise(uow.session, EnterpriseRegistered(
                    credit_code=credit_code(self.county, i), name=f"企业{i}", county_code=self.county,
                    township_code=f"{self.county}101", in_park=False))

        self.runtime.transaction(work)

    def good(self, i):
        return TaxReceiptReported(receipt_id=self.key(f"T{i}"), enterprise_credit_code=credit_code(self.county, i),
                                  month="2024-03", tax_kind="VAT", amount="1000.00"), DEPT["tax"]

    def changed(self, event):
        return event.model_copy(update={"amount": "2000.00"})

    def applied(self, event):
        r = self.client.get(f"/v1/tax-receipts/{event.receipt_id}", headers=ADMIN)
        return r.status_code == 200 and r.json()["amount"] == "1000.00"

    def _absent(self, rid):
        return lambda: self.client.get(f"/v1/tax-receipts/{rid}", headers=ADMIN).status_code == 404

    def wrong_source(self):  # the ecology bureau publishing a tax receipt
        ev, _ = self.good(8001)
        return ev, DEPT["ecology"], self._absent(ev.receipt_id)

    def oversized(self):
        # every field of a receipt is bounded by the contract except ``corrects``, which must name a known receipt
        # (so cannot be large and valid): the bulk goes into receipt_id, refused by the contract's 200 characters
        rid = "T" * OVERSIZE
        ev = TaxReceiptReported.model_construct(receipt_id=rid, enterprise_credit_code=credit_code(self.county, 8002),
                                                month="2024-03", tax_kind="VAT", amount="1000.00", corrects=None)
        return ev, DEPT["tax"], {"invalid_payload", "message_too_large", "payload_too_large"}, self._absent(rid[:200])


    def foreign(self):  # an enterprise for the register (assessment's intake) sent to settlement's
        return EnterpriseReported(credit_code=credit_code(self.county, 8003), name="企业", industry_code="C3311",
                                  township_code=f"{self.county}101"), DEPT["industry"]


class Ledger(Scenario):
    service = "ledger"
    topic = topics.LEDGER_COMMANDS

    @property
    def accounts(self):
        pool, reg = f"county:{self.county}/pool/COD", "external:rights-register/COD"
        return pool, reg, [AccountSpec(account_id=reg, asset="COD", address="external:rights-register"),
                           AccountSpec(account_id=pool, asset="COD", address=f"county:{self.county}/pool")]

    def command(self, tid: str, amount: str = "1", **extra) -> TransfersRequested:
        pool, reg, specs = self.accounts
        return TransfersRequested(transfers=[TransferSpec(transfer_id=tid, debit_account=reg, credit_account=pool,
                                                          asset="COD", amount=amount, code="quota.release", **extra)],
                                  open_accounts=specs)

    def good(self, i):
        return self.command(self.key(f"t{i}")), DEPT["quota"]

    def changed(self, event):
        return self.command(event.transfers[0].transfer_id, "2")

    def applied(self, event):
        r = self.client.get(f"/v1/transfers/{event.transfers[0].transfer_id}", headers=ADMIN)
        return r.status_code == 200 and r.json()["amount"] == "1.0000"

    def _absent(self, tid):
        return lambda: self.client.get(f"/v1/transfers/{tid}", headers=ADMIN).status_code == 404

    def wrong_source(self):  # a department sending the ledger commands (only the quota and settlement services do)
        ev, _ = self.good(8001)
        return ev, DEPT["tax"], self._absent(ev.transfers[0].transfer_id)

    def oversized(self):  # metadata values have no bound in the contract
        tid = self.key("t8002")
        pool, reg, specs = self.accounts
        spec = TransferSpec.model_construct(transfer_id=tid, debit_account=reg, credit_account=pool, asset="COD",
                                            amount="1", code="quota.release", pending=False, timeout_seconds=0,
                                            post_pending_id="", void_pending_id="", linked=False, refs=[],
                                            metadata={"note": "M" * OVERSIZE})
        cmd = TransfersRequested.model_construct(transfers=[spec], open_accounts=specs)
        return cmd, DEPT["quota"], SIZE_REASONS, self._absent(tid)


SCENARIOS = {"assessment": Assessment, "quota": Quota, "settlement": Settlement, "ledger": Ledger}


def _retype(envelope: bytes, type_: str) -> bytes:
    doc = json.loads(envelope)
    doc["type"] = type_
    return json.dumps(doc).encode()


def probes(sc: Scenario) -> tuple[list[Probe], Event]:
    """The bad messages, and the event whose id the duplicate reuses (sent, and applied, before them)."""
    base, base_source = sc.good(7001)
    good_env = sc.envelope(base, base_source, "types")
    out = [
        Probe(sc.key("malformed"), b'{"specversion": "1.0", "id": "x", "type": "countypool.', {"malformed_json"}),
        Probe(sc.key("unknown-type"), _retype(good_env, "countypool.NoSuchThingHappened.v1"), {"unknown_type"},
              lambda: not sc.applied(base)),
        Probe(sc.key("version-9"), _retype(good_env, f"countypool.{base.name}.v9"), {"unsupported_version"},
              lambda: not sc.applied(base)),
    ]
    ev, source, no_effect = sc.wrong_source()
    out.append(Probe(sc.key("wrong-source"), sc.envelope(ev, source, "wrong-source"), SOURCE_REASONS, no_effect))
    ev, source, reasons, no_effect = sc.oversized()
    value = sc.envelope(ev, source, "oversized")
    assert OVERSIZE < len(value) < 1_000_000, len(value)
    out.append(Probe(sc.key("oversized"), value, reasons, no_effect))
    ev, source = sc.foreign()
    out.append(Probe(sc.key("foreign-type"), sc.envelope(ev, source, "foreign-type"), FOREIGN_REASONS))
    original, source = sc.good(9000)
    changed = sc.changed(original)
    out.append(Probe(sc.key("duplicate"), sc.envelope(changed, source, "duplicate", event_id=f"bi-{sc.run}-dup-id"),
                     {"duplicate_id_different_body"}, lambda: sc.applied(original)))
    return out, original


def _send(producer: KafkaProducer, topic: str, items: list[tuple[str, bytes]]) -> None:
    futures = [producer.send(topic, key=k.encode(), value=v) for k, v in items]
    producer.flush(30)
    for f in futures:
        f.get(timeout=30)


def _until_applied(sc: Scenario, events: list[Event], timeout: float) -> float:
    """Seconds until every event has its effect (or AssertionError)."""
    started = time.monotonic()
    waiting = list(events)
    while waiting:
        waiting = [e for e in waiting if not sc.applied(e)]
        if not waiting:
            break
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{sc.service}: {len(waiting)} of {len(events)} good messages not applied after "
                                 f"{timeout}s; consumer {sc.runtime.consumer.stats}")
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.kafka
@pytest.mark.parametrize("service", SERVICES)
def test_bad_intake_messages_are_dead_lettered_with_reasons_and_the_consumer_keeps_its_pace(
        service, tmp_path, kafka_bootstrap, request):
    run = uuid.uuid4().hex[:8]
    if service == "assessment":
        unique_topic = request.getfixturevalue("unique_topic")
        sc = Assessment(run, kafka_bootstrap, topic=unique_topic)
        settings = {"intake_topic": unique_topic, "group_id": f"test-badinput-{run}"}
    else:
        sc = SCENARIOS[service](run, kafka_bootstrap)
        settings = {}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=2 * 1024 * 1024,
                             linger_ms=5)
    with running_service(service, f"sqlite:///{tmp_path / 'svc.sqlite3'}", kafka_bootstrap, background=False,
                         **settings) as (runtime, client):
        sc.runtime, sc.client = runtime, client
        sc.prepare()
        start_consuming_from_end(runtime, kafka_bootstrap)
        dlq = TopicTail(kafka_bootstrap, topics.dlq(sc.topic))
        try:
            # the pace to keep: N good messages, plus the one whose id the duplicate reuses
            bad, original = probes(sc)
            before = [sc.good(i)[0] for i in range(N_GOOD)]
            _send(producer, sc.topic, [(sc.key(f"g{i}"), sc.envelope(e, sc.good(i)[1], f"g{i}")) for i, e in
                                       enumerate(before)]
                  + [(sc.key("duplicate"), sc.envelope(original, sc.good(9000)[1], "original",
                                                        event_id=f"bi-{run}-dup-id"))])
            pace_before = _until_applied(sc, [*before, original], timeout=60)

            _send(producer, sc.topic, [(p.key, p.value) for p in bad])
            after = [sc.good(i)[0] for i in range(N_GOOD, 2 * N_GOOD)]
            _send(producer, sc.topic, [(sc.key(f"g{i}"), sc.envelope(e, sc.good(i)[1], f"g{i}")) for i, e in
                                       enumerate(after, start=N_GOOD)])
            pace_after = _until_applied(sc, after, timeout=60)

            # other instances of the service (other sessions) read the shared topics too and dead-letter these
            # same messages with their own group in the header: only this service's dead letters count
            group = runtime.consumer.group_id

            def ours(recs):
                return {r.key.decode(): headers_of(r).get("dlq-reason") for r in recs
                        if r.key and r.key.decode() in wanted and headers_of(r).get("dlq-consumer-group") == group}

            wanted = {p.key for p in bad}
            # (sent before the good ones now applied: their dead letters, flushed before each commit, are out)
            got = ours(dlq.until(lambda recs: wanted <= set(ours(recs)), timeout=10))
        finally:
            dlq.close()
            producer.close()
        problems = []
        for p in bad:
            label = p.key[len(sc.key("")):]
            reason = got.get(p.key)
            if reason is None:
                problems.append(f"{label}: not dead-lettered ({len(p.value)} bytes)")
            elif reason not in p.reasons:
                problems.append(f"{label}: dead-lettered as {reason!r}, expected one of {sorted(p.reasons)}")
            if p.no_effect is not None and not p.no_effect():
                problems.append(f"{label}: it had an effect (it was applied)")
        consumer = runtime.consumer
        assert consumer._thread is not None and consumer._thread.is_alive(), "the consumer stopped"
    pace = f"{N_GOOD} good messages applied in {pace_before:.1f}s before the bad ones, {pace_after:.1f}s after"
    print(f"{service}: {pace}")
    assert not problems, f"{service} on {sc.topic} ({pace}):\n- " + "\n- ".join(problems)
    # keeping the pace: the bad messages cost no more than a few seconds (each is refused at once, not retried)
    assert pace_after <= 3 * pace_before + 5, pace
