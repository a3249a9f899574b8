"""Helpers for settlement's integration tests: services with a consumer group of their own (topics are shared
with every other test and session, so a shared group would split partitions with someone else's process),
starting at the topics' current ends; publishing as another service or a department; reading a topic from a
remembered position."""
from __future__ import annotations

import importlib
import json
import random
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition

from shared.contracts.topics import ALL, dlq
from shared.envelope import Event, new_envelope
from shared.kafka_admin import ensure_topics
from shared.outbox import make_producer
from shared.settings import ServiceSettings, load_settings
from tests.support.services import TOKENS, auth

FINANCE = auth("dev-finance-token")
OFFICE = auth("dev-settlement-admin-token")
TAX = auth("dev-tax-token")
CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def new_county() -> str:
    """A county code no other test uses (topics and the ledger's accounts are shared)."""
    return f"{random.randint(1, 9)}{random.randint(0, 99999):05d}"


def credit_code(county: str, n: int) -> str:
    tail = "".join(random.choice(CHARSET) for _ in range(8))
    return f"91{county}{tail}{n:02d}"[:18]


def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): off for tp, off in c.end_offsets(tps).items()}
    finally:
        c.close()


@contextmanager
def isolated_service(name: str, db_url: str, bootstrap: str, **settings) -> Iterator[tuple]:
    """Like tests.support.services.running_service, with a fresh consumer group positioned at the end of its
    topics (recorded in the service's own consumer_positions, which the consumer resumes from)."""
    module = importlib.import_module(f"services.{name}.main")
    base = getattr(module, f"{name.capitalize()}Settings", ServiceSettings)
    group = f"countypool-{name}-test-{uuid.uuid4().hex[:8]}"

    class Isolated(base):  # type: ignore[valid-type, misc]
        @property
        def consumer_group(self) -> str:
            return group

    st = load_settings(name, Isolated, database_url=db_url, kafka_bootstrap_servers=bootstrap, auth_tokens_file=TOKENS,
                       **settings)
    runtime, app = module.build(st)
    runtime.migrate()
    ensure_topics(bootstrap, [*ALL, *(dlq(t) for t in ALL)])
    positions = runtime.tables["consumer_positions"]
    with runtime.db.sessions() as s, s.begin():
        for (topic, part), off in end_offsets(bootstrap, runtime.consumer.topics).items():
            s.execute(positions.insert().values(group_id=group, topic=topic, partition=part, next_offset=off))
    runtime.start_background()
    _until_assigned(runtime.consumer)
    try:
        with TestClient(app) as client:
            yield runtime, client
    finally:
        runtime.stop_background()
        runtime.db.dispose()


def _assigned(consumer) -> bool:
    c = consumer._consumer
    if c is None:
        return False
    want = {(t, p) for t in consumer.topics for p in (c.partitions_for_topic(t) or ())}
    have = {(tp.topic, tp.partition) for tp in c.assignment()}
    return bool(want) and want <= have


def _until_assigned(consumer, timeout: float = 15, attempts: int = 3) -> None:
    """Wait until the consumer owns every partition of its topics. A brand-new group's first join sometimes
    happens before the member has the topics' metadata ("No partition metadata for topic ..."), leaving it with
    nothing assigned and, in kafka-python 3.0, not always rejoining; a restart of the consumer fixes that."""
    for _ in range(attempts):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _assigned(consumer):
                return
            time.sleep(0.2)
        consumer.stop()
        consumer._stop.clear()
        consumer.start()
    raise AssertionError(f"consumer {consumer.group_id} got no assignment")


def publish(bootstrap: str, topic: str, event: Event, *, subject: str, source: str, event_id: str | None = None) -> str:
    env = new_envelope(event, subject=subject, source=source, producer=source.rsplit("/", 1)[-1],
                       event_id=event_id or str(uuid.uuid4()), time=datetime.now(timezone.utc))
    p = make_producer(bootstrap)
    try:
        p.send(topic, key=subject.encode(), value=env.to_json()).get(timeout=30)
    finally:
        p.close()
    return env.id


def read_from(bootstrap: str, start: dict[tuple[str, int], int], until, timeout: float = 30) -> list:
    """Records after ``start`` until ``until(records)`` is true."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    tps = [TopicPartition(t, p) for t, p in start]
    c.assign(tps)
    for tp in tps:
        c.seek(tp, start[(tp.topic, tp.partition)])
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            for recs in c.poll(timeout_ms=300).values():
                out.extend(recs)
    finally:
        c.close()
    return out


def envelope(record) -> dict:
    return json.loads(record.value)


def headers_of(record) -> dict[str, str]:
    return {k: v.decode() for k, v in (record.headers or [])}
