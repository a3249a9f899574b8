"""The idempotent consumer loop every service uses.

Auto-commit is off. Each polled batch is applied in one database transaction, each message inside its own
savepoint; the id of every applied event and the next offset of every partition are written in that same
transaction, so a redelivery changes nothing and a crash between the database commit and the Kafka commit
does not apply anything twice (on (re)assignment we seek to what the database says). A message that cannot
be decoded, is not allowed, or fails its handler after bounded retries goes to ``<topic>.dlq`` with the
reason in its headers, and the loop carries on.

The Kafka offset commit is only a courtesy to monitoring (the group's lag): the database position is what a
(re)assigned partition resumes from, and the inbox drops what is delivered again, so correctness never
depends on it. It is sent after a poll's database commit without waiting for the answer, at most about once
a second (a synchronous commit per poll cost ~10 ms of the loop's time).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from pydantic import ValidationError
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from shared.bulk import bulk_insert, copy_binary, id_in, is_pg
from shared.contracts.topics import dlq
from shared.db import DB_ERRORS, Database, data_exception, database_unavailable, driver_error, retry_reason
from shared.envelope import Envelope, EnvelopeError, Event, decode, parse_type
from shared.kafka_security import kafka_python_options
from shared.logs import correlation_id
from shared.consumer_lag import GroupLag
from shared.metrics import CONSUMER_LATENCY, DB_RETRIES, EVENTS_CONSUMED, EVENTS_DEAD_LETTERED
from shared.outbox import MAX_EVENT_BYTES, EventTooLarge, Outbox, make_producer

log = logging.getLogger(__name__)


class Rejected(Exception):
    """A handler's permanent refusal of a message (bad data, not allowed): it goes to the DLQ at once."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass
class MessageContext:
    session: Session
    envelope: Envelope
    event: Event
    outbox: Outbox
    topic: str
    partition: int
    offset: int

    def emit(self, event: Event, *, subject: str, aggregate_version: int = 0, event_id: str | None = None,
             topic: str | None = None) -> Envelope:
        """Write a follow-up event to the outbox, caused by the message being handled."""
        return self.outbox.add(
            self.session, event, subject=subject, aggregate_version=aggregate_version,
            causation_id=self.envelope.id, correlation=self.envelope.correlationid, event_id=event_id, topic=topic,
        )


Handler = Callable[[MessageContext], None]
# Optional: apply many messages at once (one engine call per poll, as the ledger does). It runs in one
# savepoint and may refuse single messages it left without effect: it returns {event id: Rejected} for those
# (or None), they are dead-lettered and the rest commit. If it raises, the batch falls back to the
# per-message handler so only bad messages are refused.
BatchHandler = Callable[[Session, list[MessageContext]], Mapping[str, Rejected] | None]
Authorizer = Callable[[Envelope, str], None]  # raises EnvelopeError("unauthorized_source", ...) to refuse


_INBOX_COLUMNS = ("event_id", "event_type", "topic", "partition", "offset", "digest", "outcome", "processed_at")


@dataclass
class _DeadLetter:
    record: object
    reason: str
    message: str


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    last_error: str | None = field(default=None)


def _same_event(stored: tuple[str, str], env: Envelope, digest: str) -> bool:
    """Whether a message whose id was taken already is that event again. Same type: the same data. Another version of
    the same event: the same event re-sent by a sender that upgraded (its data has the new version's shape, so the
    digests of the two cannot be compared; the stored one's effect stands). Another event: another body."""
    stored_digest, stored_type = stored
    if stored_type == env.type:
        return stored_digest == digest
    return _event_name(stored_type) == env.event_name


def _event_name(event_type: str) -> str:
    """``countypool.QuotaReleased.v2`` -> ``QuotaReleased`` (as ``Envelope.event_name``); another text as it is."""
    try:
        return parse_type(event_type)[0]
    except EnvelopeError:
        return event_type


def payload_digest(env: Envelope) -> str:
    """sha256 of the payload (``data``) in canonical JSON: the same event sent again with another envelope
    (a command re-sent under its derived id, a department re-publishing with a new ``time``) is a duplicate,
    not a different body (the event's name is compared beside it, see ``_seen``). Not a hash of the raw message for that reason, and because stored digests must keep
    comparing equal across versions."""
    return hashlib.sha256(json.dumps(env.data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# Above this a dead letter carries headers only (Kafka's default limit is 1 MiB per message, headers included):
# the one limit of a message value our producers send (see shared.outbox.MAX_EVENT_BYTES).
DLQ_VALUE_LIMIT = MAX_EVENT_BYTES
# What a whole letter (key, value and headers) may be: kafka-python refuses a record above its max_request_size
# (1 MiB) and the broker one above message.max.bytes (1 MiB + 12); 16 KiB is left for the record's framing.
DLQ_LETTER_LIMIT = 1024 * 1024 - 16 * 1024


def decode_message(raw: bytes | None) -> tuple[Envelope, Event]:
    """``shared.envelope.decode`` of a Kafka message, validating the envelope straight from the bytes (one pass of
    pydantic's JSON parser, no intermediate dict). Whatever that refuses goes through ``decode`` itself, so a
    refusal carries exactly the reason and message it always did."""
    if raw is None:  # a tombstone: nothing to decode (refused, not a crash of the loop)
        raise EnvelopeError("malformed_json", "the message has no value")
    try:
        env = Envelope.model_validate_json(raw)
    except (ValidationError, TypeError, ValueError, RecursionError):
        try:
            return decode(raw)
        except EnvelopeError:
            raise
        except Exception as exc:  # noqa: BLE001 - hostile input (deep nesting, huge integers) is a refusal, not a crash
            raise EnvelopeError("malformed_json", f"the message cannot be read ({type(exc).__name__})") from None
    return env, env.payload()


class IdempotentConsumer:
    def __init__(
        self,
        *,
        db: Database,
        tables: dict[str, Table],
        outbox: Outbox,
        bootstrap: str,
        group_id: str,
        topics: list[str],
        handler: Handler,
        authorize: Authorizer | None = None,
        max_records: int = 500,
        max_attempts: int = 5,
        handled_types: set[str] | None = None,
        batch_handler: BatchHandler | None = None,
        strict_topics: set[str] | None = None,
        max_message_bytes: int = 256 * 1024,
        commit_interval_seconds: float = 1.0,
        wants: Callable[[Envelope, Event], bool] | None = None,
        signed_topics: set[str] | None = None,
        check_signature: Callable[[str, bytes, list], None] | None = None,
    ):
        self.db = db
        self.inbox = tables["inbox"]
        self.positions = tables["consumer_positions"]
        self.outbox = outbox
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = topics
        self.handler = handler
        self.authorize = authorize
        # On these (the intake topics) a message must carry its source's signature (shared.auth.check_signature:
        # (source, value, headers), raising EnvelopeError), which the declared source alone does not prove
        self.signed_topics = signed_topics or set()
        self.check_signature = check_signature
        if max_attempts < 1 or max_records < 1:  # 0 attempts passed a message by: neither applied nor dead-lettered
            raise ValueError("max_attempts and max_records must be at least 1")
        self.max_records = max_records
        self.max_attempts = max_attempts
        # Events of types a service does not care about, or (``wants``) of a handled type but not its concern,
        # are recorded as "ignored" without a handler call.
        self.handled_types = handled_types
        self.wants = wants
        self.batch_handler = batch_handler
        # On these topics (intake, commands) a type the service has no handler for is a mistake of the
        # publisher: dead-lettered, not silently ignored.
        self.strict_topics = strict_topics or set()
        # Outsiders publish on the strict topics: the service's own cap. The other topics carry events that our
        # services' outboxes wrote, each at most MAX_EVENT_BYTES: refusing one of those (an allocation of many
        # lots, say) would leave its effect out for good, so they are taken up to that size.
        self.max_message_bytes = max_message_bytes
        self._size_limits = {t: max_message_bytes if t in self.strict_topics else max(max_message_bytes, MAX_EVENT_BYTES)
                             for t in topics}
        # Kafka offsets are committed (asynchronously) at most this often; see the module's docstring.
        self.commit_interval_seconds = commit_interval_seconds
        self._last_commit = float("-inf")
        self._commit_in_flight = False
        self._uncommitted = False  # applied polls whose offsets Kafka has not been told yet
        self.service = db.service
        self.stats = ConsumerStats()
        self._consumer: KafkaConsumer | None = None
        self._dlq_producer = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lag = GroupLag(service=self.service, bootstrap=bootstrap, group_id=group_id, topics=topics,
                            stored_positions=self.stored_positions)
        self._unassigned_since: float | None = None
        self._known_positions: dict[tuple[str, int], int] = {}  # committed positions of the assigned partitions
        # topics this member, as the group's leader, left out of an assignment for want of their metadata
        self._assigned_without: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"{self.service}-consumer", daemon=True)
        self._thread.start()
        self.lag.start()

    def stop(self, timeout: float = 15) -> None:
        self._stop.set()
        self.lag.stop()
        if self._thread is not None and self._thread.is_alive():  # one that ended needs no join (nor can,
            self._thread.join(timeout)                              # in a rare state a test run once hit)
        self._close()

    def run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self.poll_once()
                backoff = 0.2
            except Exception as exc:  # noqa: BLE001 - keep consuming through outages
                self.stats.last_error = str(exc)
                log.warning("consumer loop error, retrying in %.1fs: %s", backoff, exc)
                self._close()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self._close()

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:  # noqa: BLE001
                pass
            self._consumer = None
        if self._dlq_producer is not None:
            try:
                self._dlq_producer.close(timeout=2)
            except Exception:  # noqa: BLE001
                pass
            self._dlq_producer = None

    def _resubscribe_if_unassigned(self, consumer: KafkaConsumer) -> None:
        # kafka-python may join its group before it has the topics' metadata: the leader then assigns nobody
        # the partitions of a topic it has no metadata for, and the group, being stable, never assigns them
        # later (the topic's events would wait for ever). Subscribing again makes the member rejoin, and the
        # leader assign again, once the metadata is there. Only the cached metadata is read: fetching it
        # blocks without a timeout while the broker is away.
        cached = consumer._cluster.partitions_for_topic  # noqa: SLF001 - no public non-blocking read
        now = time.monotonic()
        if self._assigned_without and all(cached(t) for t in self._assigned_without):
            log.warning("the group was assigned without %s (no metadata then); rejoining",
                        ", ".join(sorted(self._assigned_without)))
            self._rejoin(consumer)
            return
        if consumer.assignment():
            self._unassigned_since = None
            return
        if self._unassigned_since is None:
            self._unassigned_since = now
        elif now - self._unassigned_since > 10 and any(cached(t) for t in self.topics):
            log.info("no partitions assigned after %.0fs; subscribing again", now - self._unassigned_since)
            self._rejoin(consumer)
            self._unassigned_since = now

    def _rejoin(self, consumer: KafkaConsumer) -> None:
        self._assigned_without = set()
        consumer.unsubscribe()
        consumer.subscribe(self.topics, listener=_ResumeFromDatabase(self))

    def _ensure_consumer(self) -> KafkaConsumer:
        if self._consumer is None:
            c = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # a department's producer may use transactions: what it aborted must not take effect here
                isolation_level="read_committed",
                max_poll_records=self.max_records,
                client_id=f"countypool-{self.service}",
                fetch_max_bytes=64 * 1024 * 1024,
                # New topics (and partitions) are noticed within seconds, not the default five minutes.
                metadata_max_age_ms=5000,
                # A killed member's partitions move to its replacement after 10 s, not kafka-python's 45 s.
                session_timeout_ms=10000,
                heartbeat_interval_ms=3000,
                partition_assignment_strategy=[_range_assignor_noting_gaps(self)],
                **kafka_python_options(),
            )
            c.subscribe(self.topics, listener=_ResumeFromDatabase(self))
            self._consumer = c
        return self._consumer

    # -- one poll ----------------------------------------------------------------------------------
    def poll_once(self, timeout_ms: int = 200) -> int:
        consumer = self._ensure_consumer()
        polled = consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        self._resubscribe_if_unassigned(consumer)
        records = [r for tp in sorted(polled, key=lambda tp: (tp.topic, tp.partition)) for r in polled[tp]]
        if not records:
            self._store_positions_past_markers(consumer)
            self._commit_offsets(consumer)  # what the last busy polls left uncommitted
            return 0
        started = time.perf_counter()
        after = _positions(consumer, polled)
        attempt = 0
        while True:
            attempt += 1
            try:
                self._apply(records, after)
                break
            except DB_ERRORS as exc:
                reason = retry_reason(exc) or "db_error"
                DB_RETRIES.labels(self.service, reason).inc()
                if self._stop.is_set():
                    raise
                # Transient database trouble: nothing of the batch was committed; apply it again.
                log.warning("batch of %d failed (%s), attempt %d", len(records), reason, attempt)
                time.sleep(min(5.0, 0.05 * 2**attempt))
        self._uncommitted = True
        self._commit_offsets(consumer)
        self.stats.batches += 1
        CONSUMER_LATENCY.labels(self.service).observe(time.perf_counter() - started)
        return len(records)

    def _commit_offsets(self, consumer: KafkaConsumer) -> None:
        """Tell Kafka the group's position, without waiting for the answer (the database position is
        authoritative): after applied polls, at most every ``commit_interval_seconds``, one commit at a time
        (a commit unanswered after 30 s no longer holds the next back)."""
        now = time.monotonic()
        if not self._uncommitted or now - self._last_commit < self.commit_interval_seconds:
            return
        if self._commit_in_flight and now - self._last_commit < 30:
            return
        self._last_commit = now
        self._commit_in_flight = True
        self._uncommitted = False

        def done(_offsets, result) -> None:
            self._commit_in_flight = False
            if isinstance(result, Exception):
                self._uncommitted = True  # sent again with the next one
                log.info("kafka offset commit failed (database position kept): %s", result)

        try:
            consumer.commit_async(callback=done)
        except Exception as exc:  # noqa: BLE001 - the database position is authoritative
            self._commit_in_flight = False
            self._uncommitted = True
            log.info("kafka offset commit failed (database position kept): %s", exc)

    def _apply(self, records: list, after: Mapping[tuple[str, int], int] | None = None) -> None:
        """Apply one poll's ``records`` in one transaction; ``after``: the consumer's position on their partitions
        after the poll (past a commit marker or aborted batch that follows the last record)."""
        dead: list[_DeadLetter] = []
        counts: dict[tuple[str, str], int] = {}
        with self.db.sessions() as session, session.begin():
            decoded: list[tuple[object, Envelope, Event]] = []
            limits, cap = self._size_limits, self.max_message_bytes
            for rec in records:
                limit = limits.get(rec.topic, cap)
                if len(rec.value or b"") > limit:
                    dead.append(_DeadLetter(rec, "message_too_large", f"{len(rec.value)} bytes; at most {limit} are taken"))
                    continue
                try:
                    env, ev = decode_message(rec.value)
                    if (rec.topic in self.strict_topics and self.handled_types is not None
                            and env.event_name not in self.handled_types):
                        raise EnvelopeError("unexpected_type", f"{env.type} is not taken on {rec.topic}")
                    if self.check_signature is not None and rec.topic in self.signed_topics:
                        self.check_signature(env.source, rec.value, rec.headers)
                    if self.authorize:
                        self.authorize(env, rec.topic)
                    decoded.append((rec, env, ev, payload_digest(env)))
                except EnvelopeError as exc:
                    dead.append(_DeadLetter(rec, exc.reason, str(exc)))
                except Exception as exc:  # noqa: BLE001 - one message that cannot be read must not stop its partition
                    dead.append(_DeadLetter(rec, "malformed_message", f"{type(exc).__name__}: {str(exc)[:200]}"))
            # A second copy of an id in the poll waits, with what follows it, for the first copy's outcome (the next
            # round): a refused first copy writes no inbox row, so a fixed copy after it is taken, as it would be in a
            # poll of its own; marked taken before its outcome was known, it was dead-lettered (another body), lost.
            pending = decoded
            while pending:
                pending = self._apply_round(session, pending, dead, counts)
            jumps, saved = self._save_positions(session, records, after or {})
            if dead:
                self._send_dead_letters(dead)  # flushed before the commit: a crash re-sends, never loses
        self._known_positions.update(saved)  # committed
        for topic, partition, position, offset in jumps:
            self.lag.note_jump(topic, partition, position, offset)
        for (topic, outcome), n in counts.items():
            EVENTS_CONSUMED.labels(self.service, topic, outcome).inc(n)
            if outcome == "applied":
                self.stats.applied += n
            elif outcome == "duplicate":
                self.stats.duplicates += n
        for d in dead:
            EVENTS_CONSUMED.labels(self.service, d.record.topic, "dead_lettered").inc()
            EVENTS_DEAD_LETTERED.labels(self.service, d.record.topic, d.reason).inc()
        self.stats.dead_lettered += len(dead)

    def _apply_round(self, session: Session, decoded: list, dead: list[_DeadLetter],
                     counts: dict[tuple[str, str], int]) -> list:
        """Apply the messages up to the second copy of an id in them; returns the rest (from that copy on, in the
        order they came), for the next round."""
        seen = self._seen(session, [env.id for _, env, _, _ in decoded])
        fresh: list[tuple[object, Envelope, Event, str]] = []
        later: list = []
        in_round: set[str] = set()
        for i, item in enumerate(decoded):
            rec, env, _, digest = item
            if env.id in in_round:
                later = decoded[i:]
                break
            if env.id in seen:
                if not _same_event(seen[env.id], env, digest):
                    dead.append(_DeadLetter(rec, "duplicate_id_different_body",
                                            f"event id {env.id} was already taken with another body"))
                else:
                    counts[(rec.topic, "duplicate")] = counts.get((rec.topic, "duplicate"), 0) + 1
            else:
                in_round.add(env.id)
                fresh.append(item)
        outcomes = self._handle_batch(session, fresh, dead) if self.batch_handler and fresh else None
        if outcomes is None:
            outcomes = [self._handle_one(session, rec, env, ev, dead) for rec, env, ev, _ in fresh]
        now = datetime.now(timezone.utc)
        rows = [
            dict(event_id=env.id, event_type=env.type, topic=rec.topic, partition=rec.partition, offset=rec.offset,
                 digest=digest, outcome=outcome, processed_at=now)
            for (rec, env, _, digest), outcome in zip(fresh, outcomes) if outcome is not None
        ]
        if rows and is_pg(session):  # binary COPY: a fraction of text COPY's client CPU per row
            copy_binary(session, self.inbox, _INBOX_COLUMNS, [[r[c] for c in _INBOX_COLUMNS] for r in rows])
        else:
            bulk_insert(session, self.inbox, rows)
        for row in rows:
            counts[(row["topic"], row["outcome"])] = counts.get((row["topic"], row["outcome"]), 0) + 1
        return later

    def _handle_batch(self, session: Session, fresh: list, dead: list[_DeadLetter]) -> list[str | None] | None:
        wanted = [(rec, env, ev) for rec, env, ev, _ in fresh if self._concerns(env, ev)]
        savepoint = session.begin_nested()
        try:
            refused = self.batch_handler(session, [MessageContext(session, env, ev, self.outbox, rec.topic, rec.partition,
                                                                  rec.offset) for rec, env, ev in wanted]) or {}
            savepoint.commit()
        except DB_ERRORS as exc:
            savepoint.rollback()
            if retry_reason(exc):
                raise
            log.warning("batch handler failed (%s); applying one by one", exc)
            return None
        except Exception as exc:  # noqa: BLE001 - fall back to one message at a time
            savepoint.rollback()
            log.warning("batch handler failed (%s); applying one by one", exc)
            return None
        wanted_ids = {env.id for _, env, _ in wanted}
        for rec, env, _ in wanted:
            if env.id in refused:  # no inbox row, as when the one-message handler refuses it
                dead.append(_DeadLetter(rec, refused[env.id].reason, str(refused[env.id])))
        return [None if env.id in refused else "applied" if env.id in wanted_ids else "ignored"
                for _, env, _, _ in fresh]

    def _concerns(self, env: Envelope, ev: Event) -> bool:
        return ((self.handled_types is None or env.event_name in self.handled_types)
                and (self.wants is None or self.wants(env, ev)))

    def _handle_one(self, session: Session, rec, env: Envelope, ev: Event, dead: list[_DeadLetter]) -> str | None:
        if not self._concerns(env, ev):
            return "ignored"
        token = correlation_id.set(env.correlationid)
        try:
            for attempt in range(1, self.max_attempts + 1):
                savepoint = session.begin_nested()
                try:
                    self.handler(MessageContext(session, env, ev, self.outbox, rec.topic, rec.partition, rec.offset))
                    savepoint.commit()
                    return "applied"
                except Rejected as exc:
                    savepoint.rollback()
                    dead.append(_DeadLetter(rec, exc.reason, str(exc)))
                    return None
                except EventTooLarge as exc:  # the same event would be as big on every attempt
                    savepoint.rollback()
                    dead.append(_DeadLetter(rec, "event_too_large", str(exc)))
                    return None
                except DB_ERRORS as exc:  # SQLAlchemy's or, from the raw COPY/pipeline paths, psycopg's own
                    savepoint.rollback()
                    if retry_reason(exc) or database_unavailable(exc):
                        raise  # deadlock or a lost database: the whole batch is retried by the caller
                    if data_exception(exc):  # a value no column takes (too long, out of range, NUL): as HTTP's 422
                        raw = driver_error(exc)
                        first = (str(raw).splitlines() or [""])[0]
                        dead.append(_DeadLetter(rec, "invalid_value", f"{type(raw).__name__}: {first}"))
                        return None
                    if attempt == self.max_attempts:
                        # bad data the database refuses (too long, constraint): this message, not the batch
                        raw = driver_error(exc)
                        dead.append(_DeadLetter(rec, "handler_db_error", f"{type(raw).__name__}: {raw}"))
                        return None
                except Exception as exc:  # noqa: BLE001 - a bug or bad data must not stop the loop
                    savepoint.rollback()
                    if attempt == self.max_attempts:
                        log.exception("handler failed %d times; dead-lettering", attempt,
                                      extra={"event_id": env.id, "event_type": env.type})
                        dead.append(_DeadLetter(rec, "handler_error", f"{type(exc).__name__}: {exc}"))
                        return None
                    time.sleep(0.01 * attempt)
            return None
        finally:
            correlation_id.reset(token)

    def _seen(self, session: Session, ids: list[str]) -> dict[str, tuple[str, str]]:
        """(payload digest, event type) of the ids already taken (see _same_event)."""
        if not ids:
            return {}
        rows = session.execute(select(self.inbox.c.event_id, self.inbox.c.digest, self.inbox.c.event_type)
                               .where(id_in(self.inbox.c.event_id, ids, session))).all()
        return {r.event_id: (r.digest, r.event_type) for r in rows}

    def _save_positions(self, session: Session, records: list,
                        after: Mapping[tuple[str, int], int]) -> tuple[list[tuple[str, int, int, int]], dict]:
        """Store each partition's next offset; returns (topic, partition, position, first offset read) of the
        partitions read past the position the database held (see shared.consumer_lag), and the offsets stored."""
        nxt: dict[tuple[str, int], int] = {}
        first: dict[tuple[str, int], int] = {}
        for r in records:
            key = (r.topic, r.partition)
            nxt[key] = max(nxt.get(key, 0), r.offset + 1, after.get(key, 0))
            first[key] = min(first.get(key, r.offset), r.offset)
        p = self.positions
        existing = {
            (row.topic, row.partition): row.next_offset
            for row in session.execute(
                select(p.c.topic, p.c.partition, p.c.next_offset).where(p.c.group_id == self.group_id)
            ).all()
        }
        jumps = [(t, part, existing[(t, part)], off) for (t, part), off in first.items()
                 if (t, part) in existing and off > existing[(t, part)]]
        ids = {topic: self._topic_id(topic) for topic, _ in nxt}
        for (topic, part), off in nxt.items():
            values = {"next_offset": off, **({"topic_id": ids[topic]} if ids[topic] else {})}
            if (topic, part) in existing:
                # Forward only: a member that stalled past its group's patience finishes its batch after another
                # took the partition on and stored a later position (its events are in the inbox by then, so the
                # batch applies nothing); written back, the older position made every restart read the partition
                # again and the lag gauge show lag there was not. A topic deleted and created again starts over.
                forward = p.c.next_offset < off
                if ids[topic]:
                    forward = forward | p.c.topic_id.is_(None) | (p.c.topic_id != ids[topic])
                session.execute(p.update().where(
                    (p.c.group_id == self.group_id) & (p.c.topic == topic) & (p.c.partition == part) & forward
                ).values(**values))
            else:
                session.execute(p.insert().values(group_id=self.group_id, topic=topic, partition=part, **values))
        return jumps, nxt

    def _store_positions_past_markers(self, consumer: KafkaConsumer) -> None:
        """An empty poll may still have moved the consumer past offsets that hold no record (a department's
        transaction marker fetched after its records, an aborted batch): store that, or the position stays short
        of the partition's end for good and the lag gauge shows it as lag (CountyPoolConsumerStalled pages).
        Every record below the consumer's position was returned by a poll that has committed (a failed one is
        retried until it commits, or the consumer is closed and seeks again to what the database says)."""
        moved = {key: pos for key, pos in _positions(consumer, consumer.assignment()).items()
                 if key in self._known_positions and pos > self._known_positions[key]}
        if not moved:
            return
        p = self.positions
        with self.db.sessions() as session, session.begin():
            for (topic, part), pos in moved.items():
                session.execute(p.update().where(
                    (p.c.group_id == self.group_id) & (p.c.topic == topic) & (p.c.partition == part)
                    & (p.c.next_offset < pos)).values(next_offset=pos))
        for (topic, part), pos in moved.items():
            # kafka-python also moves the position by itself, to the first offset left, when retention deleted
            # what the stored one named: the lag monitor must still see that jump (deleted unread); a marker or
            # an aborted batch leaves the first offset below the old position and is no finding
            self.lag.note_jump(topic, part, self._known_positions[(topic, part)], pos)
        self._known_positions.update(moved)
        self._uncommitted = True  # the group's offset in Kafka too

    def stored_positions(self) -> dict[tuple[str, int], int]:
        return {tp: offset for tp, (offset, _) in self.stored_positions_and_topics().items()}

    def stored_positions_and_topics(self) -> dict[tuple[str, int], tuple[int, str | None]]:
        """(topic, partition) -> (next offset, id of the topic it was written for, if known)."""
        p = self.positions
        with self.db.sessions() as s:
            rows = s.execute(select(p.c.topic, p.c.partition, p.c.next_offset, p.c.topic_id)
                             .where(p.c.group_id == self.group_id)).all()
        return {(r.topic, r.partition): (r.next_offset, r.topic_id) for r in rows}

    def _topic_id(self, topic: str) -> str | None:
        """The topic's id in the consumer's cached metadata (never fetched here: no waiting), or None when unknown
        (no metadata yet, a broker before Kafka 2.8)."""
        c = self._consumer
        tid = c._cluster.topic_id(topic) if c is not None else None  # noqa: SLF001 - kafka-python keeps ids there
        return str(tid) if tid is not None and tid.int != 0 else None

    def _send_dead_letters(self, dead: list[_DeadLetter]) -> None:
        if self._dlq_producer is None:
            self._dlq_producer = make_producer(self.bootstrap)
        futures = []
        for d in dead:
            rec = d.record
            # The letter is sent before the poll's commit, so one the producer refuses is refused on every retry
            # and stops the whole consumer: everything in it must be what kafka-python sends and Kafka takes.
            # The message's own headers travel with it (a redrive sends them on), our dlq-* ones after them; a
            # header without a value (None, which kafka-python's producer refuses) goes with an empty one.
            own = [(k, v or b"") for k, v in (rec.headers or ()) if not k.startswith("dlq-")]
            headers = [
                # "backslashreplace": a lone surrogate from the JSON ("\ud800") has no UTF-8 form
                ("dlq-reason", d.reason.encode(errors="backslashreplace")),
                ("dlq-error", d.message[:2000].encode(errors="backslashreplace")),
                ("dlq-original-topic", rec.topic.encode()),
                ("dlq-original-partition", str(rec.partition).encode()),
                ("dlq-original-offset", str(rec.offset).encode()),
                ("dlq-consumer-group", self.group_id.encode()),
            ]
            value, key = rec.value or b"", rec.key
            extra = len(key or b"") + sum(len(k.encode()) + len(v) for k, v in own + headers)
            if (d.reason == "message_too_large" or len(value) > DLQ_VALUE_LIMIT
                    or len(value) + extra > DLQ_LETTER_LIMIT):
                # it would not fit on the dead-letter topic (a compressed message grows back, the dlq-* headers
                # add to it): the headers say where the original stays, so the poll is not stuck on a send that
                # can never succeed
                headers.append(("dlq-value-omitted", str(len(value)).encode()))
                value = b""
                if extra > DLQ_LETTER_LIMIT:  # a key or headers that big on their own (an outsider's message)
                    headers.append(("dlq-key-and-headers-omitted", str(extra).encode()))
                    key, own = None, []
            headers = own + headers
            log.warning("dead-lettered %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, d.reason,
                        extra={"topic": rec.topic, "reason": d.reason})
            futures.append(self._dlq_producer.send(dlq(rec.topic), key=key, value=value, headers=headers))
        self._dlq_producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)

def _range_assignor_noting_gaps(owner: IdempotentConsumer) -> type[RangePartitionAssignor]:
    """kafka-python's range assignment (the same protocol name, so members of other versions agree on it)
    that tells its consumer which topics it had to leave out for want of their metadata."""

    class RangeNotingGaps(RangePartitionAssignor):
        @classmethod
        def assign(cls, cluster, members):
            topics = {t for m in members for t in m.metadata.topics}
            owner._assigned_without = {t for t in topics if cluster.partitions_for_topic(t) is None}
            return super().assign(cluster, members)

    return RangeNotingGaps


def _positions(consumer: KafkaConsumer, partitions) -> dict[tuple[str, int], int]:
    """The consumer's position on each of ``partitions`` that has one: the offset after what its polls returned, and
    after what it passed over that is no record (commit markers, aborted batches). Read from kafka-python's state:
    ``position()`` may fetch committed offsets over the network, which an idle loop must not wait for."""
    out: dict[tuple[str, int], int] = {}
    for tp in partitions:
        state = consumer._subscription.assignment.get(tp)  # noqa: SLF001 - no public non-blocking read
        if state is not None and state.position is not None:
            out[(tp.topic, tp.partition)] = state.position.offset
    return out


class _ResumeFromDatabase(ConsumerRebalanceListener):
    """On assignment, continue from the offsets the database recorded with the effects (once it has any: a partition
    it has none for, or whose topic was created again since, from its first offset)."""

    def __init__(self, owner: IdempotentConsumer):
        self.owner = owner

    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        stored = self.owner.stored_positions_and_topics()
        consumer = self.owner._consumer
        if consumer is None or not stored:
            # A group that has recorded nothing yet follows its offsets in Kafka (an operator may position a new
            # group there: ops/demo_platform.py does), or starts at the beginning.
            return
        for tp in assigned:
            found = stored.get((tp.topic, tp.partition))
            if found is None:
                # Nothing applied from it, as far as the database knows: from its start, whatever offset Kafka has
                # for the group (a database restored from a backup older than the partition's first use must not
                # resume where the lost one had committed).
                consumer.seek_to_beginning(TopicPartition(tp.topic, tp.partition))
                continue
            off, written_for = found
            now = self.owner._topic_id(tp.topic)
            if written_for and now and written_for != now:
                # Offsets of a topic created again start over: the stored one would skip as many of its messages.
                log.warning("%s: %s was created again (id %s, the position %d was of %s): reading %s[%d] from its "
                            "first offset; events already taken are recognised by their ids", self.owner.service,
                            tp.topic, now, off, written_for, tp.topic, tp.partition)
                consumer.seek_to_beginning(TopicPartition(tp.topic, tp.partition))
            else:
                consumer.seek(TopicPartition(tp.topic, tp.partition), off)
                self.owner._known_positions[(tp.topic, tp.partition)] = off
