"""What the bad-input tests share: the dev principals, the error-shape check, a fingerprint of a service's data
(to prove a refused call changed nothing), and a service's consumer on real topics with a group of its own."""
from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from shared.kafka_admin import ensure_topics
from tests.support.services import TOKENS

SERVICES = ("assessment", "quota", "ledger", "settlement")
# Every dev token (deploy/dev-tokens.json): each department, finance, the settlement office, the county admin.
PRINCIPALS: dict[str, dict] = json.loads(Path(TOKENS).read_text(encoding="utf-8"))
REASON = re.compile(r"^[a-z][a-z0-9_.:-]{1,99}$")  # machine-readable: an identifier, not a sentence


def error_shape_problem(status: int, content: bytes) -> str | None:
    """None when a 4xx body is the shared error shape {reason, message, details?}; else what is wrong."""
    try:
        doc = json.loads(content)
    except ValueError:
        return f"{status} body is not JSON: {content[:120]!r}"
    if not isinstance(doc, dict):
        return f"{status} body is not a JSON object: {content[:120]!r}"
    reason = doc.get("reason")
    if not isinstance(reason, str) or not REASON.match(reason):
        return f"{status} body has no machine-readable 'reason': {content[:200]!r}"
    if not isinstance(doc.get("message"), str):
        return f"{status} body has no string 'message': {content[:200]!r}"
    return None


# -- a fingerprint of a service's data ----------------------------------------------------------------------------

SKIP_TABLES = {"alembic_version"}


def fingerprint(db) -> dict[str, tuple[int, str]]:
    """table -> (row count, hash of all its rows in a canonical order). One statement on PostgreSQL (it is taken
    after every fuzzed call); row by row on SQLite, which has no hash function and no round trips to save."""
    engine = db.engine
    names = _tables(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sql = " UNION ALL ".join(
                f"SELECT '{n}', count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM \"{n}\" x"
                for n in names)
            return {r[0]: (r[1], r[2]) for r in conn.execute(sa.text(sql)).all()}
        out: dict[str, tuple[int, str]] = {}
        for name in names:
            rows = conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()
            lines = sorted(repr(tuple(r)) for r in rows)
            out[name] = (len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest())
        return out


_TABLES: dict[str, list[str]] = {}


def _tables(engine) -> list[str]:
    key = engine.url.render_as_string(hide_password=True)
    if key not in _TABLES:  # migrated once at start; the fuzzed calls create no tables
        _TABLES[key] = sorted(n for n in sa.inspect(engine).get_table_names() if n not in SKIP_TABLES)
    return _TABLES[key]


def changed_tables(before: dict, after: dict) -> dict[str, str]:
    return {t: f"{before.get(t, (0, ''))[0]} -> {after.get(t, (0, ''))[0]} rows"
            for t in sorted(set(before) | set(after)) if before.get(t) != after.get(t)}


# -- consumers on shared topics ----------------------------------------------------------------------------------

def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    probe = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tps = []
        for t in topics:
            parts = None
            deadline = time.monotonic() + 10
            while not parts and time.monotonic() < deadline:
                probe.topics()  # refresh metadata: partitions_for_topic may answer None at first
                parts = probe.partitions_for_topic(t)
            assert parts, f"no partitions for {t}"
            tps += [TopicPartition(t, p) for p in sorted(parts)]
        return probe.end_offsets(tps)
    finally:
        probe.close()


def start_consuming_from_end(runtime, bootstrap: str) -> None:
    """Topics are shared with other tests and sessions: the service gets a consumer group of its own, positioned
    (in its own database, where the consumer resumes from) at the current end of its topics; then it starts."""
    consumer = runtime.consumer
    consumer.group_id = f"{consumer.group_id}-badinput-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap)
    ends = end_offsets(bootstrap, consumer.topics)
    with runtime.db.sessions() as s, s.begin():
        s.execute(consumer.positions.insert(), [dict(group_id=consumer.group_id, topic=tp.topic, partition=tp.partition,
                                                      next_offset=off) for tp, off in ends.items()])
    runtime.start_background()
    _until_assigned(consumer)


def _until_assigned(consumer, timeout: float = 8, attempts: int = 4) -> None:
    """kafka-python sometimes joins a new group before it has the topics' metadata and then keeps an empty
    assignment; restarting the consumer thread gets past it (see tests/integration/quota/harness.py)."""
    for _ in range(attempts):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kc = consumer._consumer
            try:
                if kc is not None:
                    want = {(t, p) for t in consumer.topics for p in (kc.partitions_for_topic(t) or ())}
                    have = {(tp.topic, tp.partition) for tp in kc.assignment()}
                    if want and want <= have:
                        return
            except Exception:  # noqa: BLE001 - the client is being replaced
                pass
            time.sleep(0.05)
        consumer.stop()
        consumer._stop.clear()
        consumer.start()
    raise AssertionError(f"{consumer.group_id}: the consumer never got its partitions")


class TopicTail:
    """What is published to a topic from now on (its end offsets taken when made)."""

    def __init__(self, bootstrap: str, topic: str):
        ensure_topics(bootstrap, [topic])
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                      fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024)
        ends = end_offsets(bootstrap, [topic])
        self.consumer.assign(list(ends))
        for tp, off in ends.items():
            self.consumer.seek(tp, off)
        self.records: list = []

    def until(self, done, timeout: float = 30) -> list:
        deadline = time.monotonic() + timeout
        while not done(self.records):
            if time.monotonic() > deadline:
                return self.records
            for recs in self.consumer.poll(timeout_ms=200).values():
                self.records.extend(recs)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def headers_of(record) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (record.headers or [])}
