"""Operator views of Kafka: consumer lag per group and topic, dead-letter contents, and re-driving
dead-lettered messages to the topic they came from once the cause is fixed.

A re-drive publishes a dead letter's bytes, key and original partition to its original topic again, waits
until Kafka has them (acks=all), and only then appends a *marker* to the dead-letter topic, in the letter's
partition, whose ``dlq-redriven`` header names it (``<partition>:<offset>``; the marker has no value and no
``dlq-reason``). Listing and re-driving skip marked letters, so a second re-drive sends nothing twice, a
message dead-lettered again by the re-drive is the one letter still outstanding (not the old one as well),
and a crash between the copy and its marker loses nothing: the letter is re-driven again and its consumer,
which records every event id it applied, drops the repeat."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from shared.contracts import topics as T
from shared.kafka_admin import KafkaProbe
from shared.kafka_security import kafka_python_options
from shared.outbox import close_producer, make_producer

GROUPS = {s: f"countypool-{s}" for s in ("ledger", "quota", "settlement", "assessment")}
SERVICES = tuple(GROUPS)

REDRIVEN = "dlq-redriven"  # header of a marker: "<partition>:<offset>" of the letter it re-drove


class KafkaUnavailable(RuntimeError):
    """No broker of the bootstrap list answers."""


class NoSuchTopic(LookupError):
    pass


def require_kafka(bootstrap: str, timeout: float = 5.0) -> None:
    """Fail at once, with a sentence, when Kafka is away (kafka-python's clients wait 30 s and raise deep
    inside their bootstrap)."""
    if not KafkaProbe(bootstrap, ttl=0, timeout=timeout).reachable():
        raise KafkaUnavailable(f"Kafka at {bootstrap} is not reachable (set KAFKA_BOOTSTRAP_SERVERS?)")


def _reader(bootstrap: str) -> KafkaConsumer:
    # never creates a topic by asking for it (the broker may auto-create topics)
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         allow_auto_create_topics=False, auto_offset_reset="earliest", client_id="countypool-ops",
                         **kafka_python_options())


# -- lag -------------------------------------------------------------------------------------------
@dataclass
class Lag:
    group: str
    topic: str
    committed: int
    end: int
    missing: bool = False  # the topic does not exist
    behind: int | None = None  # the sum of each partition's lag (consumer_lag sets it)

    @property
    def lag(self) -> int:
        # per partition, as the services' own gauge (shared/consumer_lag.py) counts it: a position past a
        # partition's end (offsets reset by hand, a log truncated) must not cancel another partition's backlog
        return self.behind if self.behind is not None else max(0, self.end - self.committed)


def service_groups() -> dict[str, list[str]]:
    """Each service's consumer group and the topics it consumes, with the settings the service itself reads
    (COUNTYPOOL_<SERVICE>_GROUP_ID, COUNTYPOOL_ASSESSMENT_INTAKE_TOPIC)."""
    from services.assessment.main import AssessmentSettings
    from services.ledger.main import TOPICS as LEDGER_TOPICS
    from services.quota.main import TOPICS as QUOTA_TOPICS
    from services.settlement.main import TOPICS as SETTLEMENT_TOPICS
    from shared.settings import load_settings

    assessment = load_settings("assessment", AssessmentSettings)
    consumed = {"ledger": LEDGER_TOPICS, "quota": QUOTA_TOPICS, "settlement": SETTLEMENT_TOPICS,
                "assessment": [assessment.intake_topic]}
    out: dict[str, list[str]] = {}
    for service in SERVICES:
        group = assessment.consumer_group if service == "assessment" else load_settings(service).consumer_group
        topics = out.setdefault(group, [])
        topics += [t for t in consumed[service] if t not in topics]
    return out


def consumer_lag(bootstrap: str, groups: dict[str, list[str]] | None = None) -> list[Lag]:
    """Lag of each group on every partition of the topics it consumes, from the offsets the group committed to
    Kafka (the database positions are at least as far). A partition the group never committed counts from its
    first offset, so a consumer that is stuck, or never started, shows its lag instead of nothing."""
    groups = service_groups() if groups is None else groups
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="countypool-ops", request_timeout_ms=15000,
                             **kafka_python_options())
    probe = _reader(bootstrap)
    out: list[Lag] = []
    try:
        for group, topics in groups.items():
            committed = admin.list_group_offsets(group).get(group) or {}
            for topic in sorted(set(topics) | {tp.topic for tp in committed}):
                parts = probe.partitions_for_topic(topic)
                if not parts:
                    out.append(Lag(group, topic, 0, 0, missing=True))
                    continue
                tps = [TopicPartition(topic, p) for p in sorted(parts)]
                first, ends = probe.beginning_offsets(tps), probe.end_offsets(tps)
                position = behind = 0
                for tp in tps:
                    meta = committed.get(tp)
                    at = meta.offset if meta is not None and meta.offset >= 0 else first[tp]
                    position += at
                    behind += max(0, ends[tp] - at)
                out.append(Lag(group, topic, position, sum(ends[tp] for tp in tps), behind=behind))
    finally:
        probe.close()
        admin.close()
    return out


# -- dead letters ----------------------------------------------------------------------------------
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
    raw_key: bytes | None = None  # the key as sent (``key`` is its text, for display)
    original_partition: int | None = None
    original_offset: int | None = None
    value_omitted: int | None = None  # the consumer left the value out (its size in bytes): nothing to re-drive
    headers: list[tuple[str, bytes]] = field(default_factory=list)  # the message's own headers (not dlq-*)


@dataclass
class DeadLetterQueue:
    topic: str
    letters: list[DeadLetter]  # outstanding: not re-driven yet, oldest first per partition
    redriven: int  # letters a re-drive has marked


def dlq_name(topic: str) -> str:
    return topic if topic.endswith(".dlq") else T.dlq(topic)


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def read_dlq(bootstrap: str, topic: str, idle_timeout: float = 30.0) -> DeadLetterQueue:
    """Every message of ``<topic>.dlq`` up to its end when called (letters dead-lettered meanwhile wait for
    the next call), re-driven letters set apart. Raises NoSuchTopic, and TimeoutError when the topic cannot be
    read to that end (never a silently partial answer)."""
    name = dlq_name(topic)
    c = _reader(bootstrap)
    try:
        parts = c.partitions_for_topic(name)
        if not parts:
            raise NoSuchTopic(f"there is no dead-letter topic {name}")
        tps = [TopicPartition(name, p) for p in sorted(parts)]
        first, ends = c.beginning_offsets(tps), c.end_offsets(tps)
        todo = [tp for tp in tps if ends[tp] > first[tp]]
        records = []
        if todo:
            c.assign(todo)
            for tp in todo:
                c.seek(tp, first[tp])
            deadline = time.monotonic() + idle_timeout
            while todo:
                polled = c.poll(timeout_ms=500)
                for tp, recs in polled.items():
                    records += [r for r in recs if r.offset < ends[tp]]
                if polled:
                    deadline = time.monotonic() + idle_timeout
                todo = [tp for tp in todo if c.position(tp) < ends[tp]]
                if todo and time.monotonic() > deadline:
                    raise TimeoutError(f"{name} could not be read to its end within {idle_timeout:.0f} s")
    finally:
        c.close()
    marked: set[tuple[int, int]] = set()
    letters: list[DeadLetter] = []
    for r in records:
        raw = list(r.headers or [])
        h = {k: v.decode(errors="replace") for k, v in raw}
        if REDRIVEN in h:
            p, _, o = h[REDRIVEN].rpartition(":")
            if _int(o) is not None:
                marked.add((_int(p) if p else r.partition, int(o)))
            continue
        letters.append(DeadLetter(
            r.topic, r.partition, r.offset, r.key.decode(errors="replace") if r.key is not None else None,
            h.get("dlq-reason", ""), h.get("dlq-error", ""), h.get("dlq-original-topic", name[:-4]),
            r.value if r.value is not None else b"", raw_key=r.key,
            original_partition=_int(h.get("dlq-original-partition")), original_offset=_int(h.get("dlq-original-offset")),
            value_omitted=_int(h["dlq-value-omitted"]) if "dlq-value-omitted" in h else None,
            headers=[(k, v) for k, v in raw if not k.startswith("dlq-") and k not in ("redriven-from", "redrive-run")],
        ))
    outstanding = [d for d in letters if (d.partition, d.offset) not in marked]
    outstanding.sort(key=lambda d: (d.partition, d.offset))
    return DeadLetterQueue(name, outstanding, len(letters) - len(outstanding))


def dead_letters(bootstrap: str, topic: str, limit: int | None = None, *, reason: str | None = None) -> list[DeadLetter]:
    """The outstanding (not re-driven) messages of ``<topic>.dlq``, of one ``reason`` if given, oldest first
    per partition; the first ``limit`` of them if given."""
    letters = read_dlq(bootstrap, topic).letters
    if reason is not None:
        letters = [d for d in letters if d.reason == reason]
    return letters if limit is None else letters[:limit]


@dataclass
class RedriveResult:
    sent: list[tuple[DeadLetter, str]] = field(default_factory=list)  # (letter, where its copy went)
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)  # cannot be re-driven: why
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)  # the copy was not acknowledged
    unmarked: list[tuple[DeadLetter, str]] = field(default_factory=list)  # sent, but its marker failed

    @property
    def ok(self) -> bool:
        return not (self.refused or self.failed or self.unmarked)


def where(d: DeadLetter) -> str:
    return f"{d.topic}[{d.partition}]@{d.offset}"


def _refusal(d: DeadLetter) -> str | None:
    if d.value_omitted is not None:
        original = (f"{d.original_topic}[{d.original_partition}]@{d.original_offset}"
                    if d.original_partition is not None else d.original_topic)
        return (f"{where(d)}: the dead letter has no body (its {d.value_omitted} bytes were left out); the original "
                f"is {original}: have it published again, fixed")
    if not d.value:
        return f"{where(d)}: the dead letter has no body (the original message was empty): nothing to re-drive"
    if d.original_topic != d.topic[: -len(".dlq")]:
        return f"{where(d)}: it names {d.original_topic!r} as its topic, not {d.topic[: -len('.dlq')]!r}"
    return None


def redrive(bootstrap: str, letters: list[DeadLetter], timeout: float = 30.0) -> RedriveResult:
    """Publish each dead letter's original bytes, key and headers to its original topic and partition again,
    in dead-letter order, then mark it re-driven (see the module's docstring). The consumer applies it as a
    new message (dead-lettered ids were never recorded as processed), or ignores it if it was since. Letters
    with no body are refused; a missing original topic raises NoSuchTopic before anything is sent."""
    result = RedriveResult()
    todo: list[DeadLetter] = []
    for d in sorted(letters, key=lambda d: (d.topic, d.partition, d.offset)):
        why = _refusal(d)
        if why:
            result.refused.append((d, why))
        else:
            todo.append(d)
    if not todo:
        return result
    c = _reader(bootstrap)
    try:
        parts = {t: c.partitions_for_topic(t) for t in sorted({d.original_topic for d in todo})}
    finally:
        c.close()
    missing = [t for t, p in parts.items() if not p]
    if missing:  # a copy must not create a topic by its name
        raise NoSuchTopic(f"the original topic {', '.join(missing)} does not exist: nothing re-driven")
    run = str(uuid.uuid4()).encode()
    p = make_producer(bootstrap, client_id="countypool-ops", allow_auto_create_topics=False, linger_ms=0)
    try:
        copies = []
        for d in todo:
            # the partition it was taken from: where the key's other messages are, whatever partitioner wrote them
            partition = d.original_partition if d.original_partition in parts[d.original_topic] else None
            headers = [*d.headers, ("redriven-from", where(d).encode()), ("redrive-run", run)]
            copies.append((d, _send(p, d.original_topic, d.raw_key, d.value, partition, headers)))
        _flush(p, timeout)
        marks = []
        for d, future in copies:
            try:
                md = future.get(timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - reported, and the letter stays outstanding
                result.failed.append((d, f"{type(exc).__name__}: {exc}"))
                continue
            to = f"{md.topic}[{md.partition}]@{md.offset}"
            result.sent.append((d, to))
            marks.append((d, to, _send(p, d.topic, d.raw_key, b"", d.partition, [
                (REDRIVEN, f"{d.partition}:{d.offset}".encode()), ("dlq-redriven-to", to.encode()),
                ("redrive-run", run)])))
        _flush(p, timeout)
        for d, to, future in marks:
            try:
                future.get(timeout=timeout)
            except Exception as exc:  # noqa: BLE001
                result.unmarked.append((d, f"re-driven to {to} but not marked ({type(exc).__name__}: {exc}); a later "
                                           f"re-drive sends it again and its consumer drops the repeat"))
    finally:
        close_producer(p, timeout=5)
    return result


class _Failed:
    def __init__(self, exc: Exception):
        self.exc = exc

    def get(self, timeout=None):
        raise self.exc


def _send(p, topic, key, value, partition, headers):
    try:
        return p.send(topic, key=key, value=value, partition=partition, headers=headers)
    except Exception as exc:  # noqa: BLE001 - e.g. no metadata within max_block_ms: this message failed
        return _Failed(exc)


def _flush(p, timeout: float) -> None:
    try:
        p.flush(timeout=timeout)
    except Exception:  # noqa: BLE001 - each future says what became of its message
        pass
