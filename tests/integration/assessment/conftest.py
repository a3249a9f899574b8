"""The assessment service on real Kafka and on both databases.

Each test gets its own intake topic and consumer group, and a county of its own (a random region code in
its credit codes and township), so events other tests publish on the shared countypool.assessment.events
topic at the same time are told apart.
"""
from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from shared.contracts import topics
from shared.envelope import decode, new_envelope
from shared.kafka_admin import ensure_topics
from tests.support.services import running_service
from tests.unit.assessment.factories import code as make_code

YEAR = 2023


@dataclass(frozen=True)
class County:
    code_: str  # 6-digit region code

    @property
    def township(self) -> str:
        return self.code_ + "101"

    def code(self, n: int) -> str:
        """A valid credit code registered in this county, numbered n."""
        return make_code(n, self.code_)

    def bad_code(self, n: int) -> str:
        """code(n) with a wrong check character."""
        good = self.code(n)
        return good[:17] + ("0" if good[17] != "0" else "1")

    @property
    def run(self) -> dict:
        return {"county_code": self.code_, "year": YEAR}


@pytest.fixture
def api(db_url, kafka_bootstrap):
    """The service with relay and consumer stopped: what it would publish is read from its outbox."""
    with running_service("assessment", db_url, kafka_bootstrap, background=False) as (runtime, c):
        yield runtime, c


@pytest.fixture
def county() -> County:
    return County(f"{random.randint(110000, 659999)}")


@pytest.fixture
def service(db_url, kafka_bootstrap, unique_topic):
    """(runtime, client, intake topic): relay and consumer running."""
    with running_service("assessment", db_url, kafka_bootstrap, intake_topic=unique_topic,
                         group_id=f"test-assessment-{uuid.uuid4().hex[:8]}") as (runtime, client):
        yield runtime, client, unique_topic


def _assigned(runtime, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        consumer = runtime.consumer._consumer
        if consumer is not None and consumer.assignment():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def consuming_service(db_url, kafka_bootstrap, unique_topic):
    """Like ``service``, once the intake consumer owns its partitions. kafka-python 3.0 sometimes forms the
    group before it knows the new topic's partitions and then never assigns them (the range assignor logs
    "No partition metadata"); a fresh start gets past it."""
    for attempt in range(3):
        with running_service("assessment", db_url, kafka_bootstrap, intake_topic=unique_topic,
                             group_id=f"test-assessment-{uuid.uuid4().hex[:8]}") as (runtime, client):
            if _assigned(runtime, 6) or attempt == 2:
                yield runtime, client, unique_topic
                return


class TopicTail:
    """Reads what is published to a topic from now on (end offsets taken when created)."""

    def __init__(self, bootstrap: str, topic: str):
        ensure_topics(bootstrap, [topic])
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        parts = None
        deadline = time.monotonic() + 10
        while not parts and time.monotonic() < deadline:
            self.consumer.topics()  # fetches metadata; partitions_for_topic alone may answer None at first
            parts = self.consumer.partitions_for_topic(topic)
        assert parts, f"no partitions for {topic}"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        for tp, end in self.consumer.end_offsets(tps).items():
            self.consumer.seek(tp, end)
        self.records: list = []

    def until(self, done, timeout: float = 30) -> list:
        """Poll until ``done(records)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            for recs in self.consumer.poll(timeout_ms=300).values():
                self.records.extend(recs)
            if done(self.records):
                return self.records
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; saw {len(self.records)} records")

    def events(self, county: County) -> list[dict]:
        """Envelopes (as JSON) about ``county``; each must decode against its registered contract. Events
        carry the county code, or a credit code whose region positions name it."""
        out = []
        for r in self.records:
            doc = json.loads(r.value)
            data = doc.get("data", {})
            if data.get("county_code", data.get("credit_code", "")[2:8]) == county.code_:
                decode(r.value)
                out.append(doc)
        return out

    def correlated(self, correlation_id: str) -> list[dict]:
        """Envelopes caused by requests that carried this x-correlation-id (each must decode)."""
        out = []
        for r in self.records:
            doc = json.loads(r.value)
            if doc.get("correlationid") == correlation_id:
                decode(r.value)
                out.append(doc)
        return out

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def events_tail(kafka_bootstrap):
    tail = TopicTail(kafka_bootstrap, topics.ASSESSMENT_EVENTS)
    yield tail
    tail.close()


def of_type(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["type"] == f"countypool.{name}.v1"]


def publish(bootstrap: str, topic: str, items: list[tuple]) -> None:
    """items: (event, source) sent as a department would, keyed by the credit code."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for event, source in items:
        env = new_envelope(event, subject=event.credit_code, source=source)
        p.send(topic, key=event.credit_code.encode(), value=env.to_json())
    p.flush()
    p.close()
