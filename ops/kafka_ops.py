"""Operator views of Kafka: consumer lag per group and topic, dead-letter contents, and re-driving
dead-lettered messages to the topic they came from once the cause is fixed."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from shared.contracts import topics as T

GROUPS = {s: f"countypool-{s}" for s in ("ledger", "quota", "settlement", "assessment")}


@dataclass
class Lag:
    group: str
    topic: str
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


def consumer_lag(bootstrap: str) -> list[Lag]:
    """Lag from the offsets each group committed to Kafka (the database positions are at least as far)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="countypool-ops")
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    out: list[Lag] = []
    try:
        for group in GROUPS.values():
            offsets = admin.list_group_offsets(group)
            if not offsets:
                continue
            ends = probe.end_offsets(list(offsets))
            per_topic: dict[str, list[int]] = {}
            for tp, meta in offsets.items():
                c, e = per_topic.setdefault(tp.topic, [0, 0]), ends.get(tp, 0)
                c[0] += max(meta.offset, 0)
                c[1] += e
            out += [Lag(group, t, c, e) for t, (c, e) in sorted(per_topic.items())]
    finally:
        probe.close()
        admin.close()
    return out


@dataclass
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    error: str
    original_topic: str
    value: bytes


def dead_letters(bootstrap: str, topic: str, limit: int = 1000) -> list[DeadLetter]:
    """Every message of ``<topic>.dlq`` (up to ``limit``), oldest first."""
    name = topic if topic.endswith(".dlq") else T.dlq(topic)
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      consumer_timeout_ms=1500, auto_offset_reset="earliest")
    parts = [TopicPartition(name, p) for p in (c.partitions_for_topic(name) or [])]
    if not parts:
        c.close()
        return []
    c.assign(parts)
    c.seek_to_beginning(*parts)
    out: list[DeadLetter] = []
    for r in c:
        h = {k: v.decode(errors="replace") for k, v in (r.headers or [])}
        out.append(DeadLetter(r.topic, r.partition, r.offset, r.key.decode(errors="replace") if r.key else None,
                              h.get("dlq-reason", ""), h.get("dlq-error", ""), h.get("dlq-original-topic", name[:-4]), r.value))
        if len(out) >= limit:
            break
    c.close()
    return sorted(out, key=lambda d: (d.partition, d.offset))


def redrive(bootstrap: str, letters: list[DeadLetter]) -> int:
    """Publish each dead letter's original bytes to its original topic again. The consumer applies it as a
    new message (dead-lettered ids were never recorded as processed), or ignores it if it was since."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    run = str(uuid.uuid4())
    for d in letters:
        p.send(d.original_topic, key=d.key.encode() if d.key else None, value=d.value,
               headers=[("redriven-from", f"{d.topic}:{d.partition}:{d.offset}".encode()), ("redrive-run", run.encode())])
    p.flush()
    p.close()
    return len(letters)
