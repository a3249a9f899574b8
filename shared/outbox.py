"""Transactional outbox: events are written in the same transaction as the state they describe, and a relay
publishes them to Kafka afterwards. Nothing is published for a rolled-back transaction, nothing is lost
while Kafka is down, and rows committed late are delayed, never skipped (the relay reads unpublished rows,
not "everything after the largest id seen")."""
from __future__ import annotations

import logging
import threading
import time
import zlib
from datetime import datetime, timezone
from typing import Callable, Iterator

from kafka import KafkaProducer
from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from shared.bulk import bulk_insert, copy_binary, insert_rows, is_pg
from shared.db import Database
from shared.envelope import Envelope, Event, new_envelope
from shared.logs import correlation_id
from shared.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG, RELAY_ERRORS

log = logging.getLogger(__name__)


class Outbox:
    """Writes events of one service into its outbox table."""

    def __init__(self, table: Table, service: str):
        self.table = table
        self.service = service
        self.source = f"/countypool/{service}"

    def add(
        self,
        session: Session,
        event: Event,
        *,
        subject: str,
        aggregate_version: int = 0,
        causation_id: str | None = None,
        correlation: str | None = None,
        event_id: str | None = None,
        topic: str | None = None,
    ) -> Envelope:
        env = new_envelope(
            event,
            subject=subject,
            source=self.source,
            producer=self.service,
            aggregate_version=aggregate_version,
            correlation_id=correlation or correlation_id.get(),
            causation_id=causation_id,
            event_id=event_id,
        )
        self.add_envelope(session, env, topic or event.topic)
        return env

    def add_envelope(self, session: Session, env: Envelope, topic: str) -> None:
        session.execute(self.table.insert().values(**self._row(session, env, topic)))

    def add_many(self, session: Session, items: list[tuple[Envelope, str]]) -> None:
        bulk_insert(session, self.table, [self._row(session, env, topic) for env, topic in items])

    # up to this many rows, add_rows sends INSERTs (which a psycopg pipeline sends along with the rest of the
    # transaction) rather than COPY (two round trips of its own, and not allowed in a pipeline)
    SMALL = 64

    def add_rows(self, session: Session, rows: list[dict]) -> None:
        """Events a service serialized itself (a hot path with thousands per transaction): dicts with event_id,
        event_type, topic, key, envelope (the envelope's JSON text, as Envelope.to_json gives it) and
        created_at, all with the same keys."""
        if not rows:
            return
        if not is_pg(session):
            bulk_insert(session, self.table, rows)
            return
        cols = tuple(rows[0])
        values = [[r[c] for c in cols] for r in rows]
        if len(rows) <= self.SMALL:
            insert_rows(session, self.table, cols, values)
        else:
            copy_binary(session, self.table, cols, values)

    @staticmethod
    def _row(session: Session, env: Envelope, topic: str) -> dict:
        row = {
            "event_id": env.id,
            "event_type": env.type,
            "topic": topic,
            "key": env.subject,
            "envelope": env.to_json().decode(),
            "created_at": env.recordedat or datetime.now(timezone.utc),
        }
        return row  # tx_id comes from the column's server default on PostgreSQL

    def read_events(self, session: Session, *, after: int = 0, batch: int = 1000) -> Iterator[tuple[int, str]]:
        """The service's own event store, in order: (position, envelope JSON). Used for replay."""
        while True:
            rows = session.execute(
                select(self.table.c.position, self.table.c.envelope)
                .where(self.table.c.position > after)
                .order_by(self.table.c.position)
                .limit(batch)
            ).all()
            if not rows:
                return
            yield from ((r.position, r.envelope) for r in rows)
            after = rows[-1].position


def make_producer(bootstrap: str, **extra) -> KafkaProducer:
    """The one producer configuration: idempotent, acks=all, ordered per partition."""
    cfg = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_in_flight_requests_per_connection=5,
        retries=2**31 - 1,
        linger_ms=5,
        batch_size=256 * 1024,
        compression_type=None,
        request_timeout_ms=15000,
        max_block_ms=10000,
        client_id="countypool",
    )
    cfg.update(extra)
    return KafkaProducer(**cfg)


def close_producer(producer: KafkaProducer, timeout: float = 1) -> None:
    """Close, and stop its sender thread even when Kafka is unreachable: kafka-python's close() flushes
    first, and a flush that times out raises before the sender is force-closed, leaving the thread behind."""
    try:
        producer.close(timeout=timeout)
    except Exception:  # noqa: BLE001 - a producer being dropped has nothing left to report
        sender = getattr(producer, "_sender", None)
        if sender is not None and sender.is_alive():
            sender.force_close()
            sender.join(timeout)


class RelaySender:
    """The relay's Kafka producer: librdkafka (confluent-kafka), whose batching, compression and checksums run
    in C threads outside the GIL (several times kafka-python's rate at a fraction of its CPU). The same
    guarantees as make_producer: idempotent, acks=all, at most 5 requests in flight (so ordered per
    partition), and the Java client's key hashing (murmur2), so a key keeps its partition whichever client
    wrote it before. ``send`` returns only when every message is acknowledged, and raises otherwise."""

    def __init__(self, bootstrap: str, *, timeout: float = 30, **extra):
        from confluent_kafka import Producer

        cfg = {
            "bootstrap.servers": bootstrap,
            "client.id": "countypool",
            "enable.idempotence": True,
            "acks": "all",
            "max.in.flight.requests.per.connection": 5,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "batch.size": 1024 * 1024,
            "compression.type": "none",
            "queue.buffering.max.messages": 200_000,
            "message.timeout.ms": int(timeout * 1000),
            # only failures call back into Python; flush() still waits for every acknowledgement
            "delivery.report.only.error": True,
            "socket.timeout.ms": 15_000,
        }
        cfg.update(extra)
        self.timeout = timeout
        self._producer = Producer(cfg)

    def send(self, messages: list[tuple[str, bytes, bytes]]) -> None:
        """(topic, key, value) of each message, in order; raises unless Kafka acknowledged every one."""
        failed: list = []

        def delivered(err, _msg) -> None:
            if err is not None:
                failed.append(err)

        produce = self._producer.produce
        for topic, key, value in messages:
            while True:
                try:
                    produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries make room
                    self._producer.poll(0.05)
        left = self._producer.flush(self.timeout + 5)
        if left or failed:
            raise RuntimeError(f"{len(failed) + left} of {len(messages)} messages not acknowledged"
                               + (f": {failed[0]}" if failed else " in time"))

    def partitions_for(self, topic: str) -> set[int]:
        md = self._producer.list_topics(topic, timeout=10).topics.get(topic)
        return set(md.partitions) if md is not None and md.error is None else set()

    def close(self, timeout: float = 5) -> None:
        """Stop; messages not yet acknowledged are dropped (their rows stay unpublished and are sent again)."""
        try:
            self._producer.purge()
            self._producer.flush(min(timeout, 1))
        finally:
            close = getattr(self._producer, "close", None)
            if close is not None:
                close()


# The oldest transaction id that may still write rows here: the smallest in-progress transaction of the
# snapshot, leaving out those positively seen running in another database (each service has its own, often
# on one shared server, where a long report or replay elsewhere would otherwise hold every relay back);
# without one, the snapshot's xmax. A transaction whose database is not visible counts as ours.
_HORIZON = (
    "WITH snap AS (SELECT pg_current_snapshot() AS s) "
    "SELECT coalesce((SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x "
    "                 WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a "
    "                                   WHERE a.datname IS NOT NULL AND a.datname <> current_database() "
    "                                     AND a.backend_xid::text::bigint = mod(x::text::bigint, 4294967296))), "
    "                (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap))")

Report = Callable[[str, object], None]  # ("published", (topic, n)) | ("backlog", n) | ("error", message)


class OutboxRelay:
    """Publishes unpublished outbox rows in position order and marks them published.

    One relay per service database is active at a time (PostgreSQL advisory lock), so order holds when a
    service runs several replicas. While Kafka is down it retries with backoff; commits keep succeeding.
    ``report``, if given, hears what the relay's metrics count (a relay in a child process tells its parent,
    whose /metrics Prometheus scrapes).
    """

    def __init__(self, db: Database, table: Table, bootstrap: str, *, batch_size: int = 500, idle_seconds: float = 0.05,
                 report: Report | None = None):
        self.db = db
        self.table = table
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.service = db.service
        self.report = report
        self._lock_key = zlib.crc32(f"countypool-outbox-{db.service}".encode())
        self._producer: RelaySender | None = None
        self._backlog_at = float("-inf")  # when the backlog gauge was last counted
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"{self.service}-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        if self._producer:
            self._producer.close(timeout=5)
            self._producer = None

    def run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                sent = self.publish_batch()
                backoff = 0.1
                if sent == 0:
                    self._stop.wait(self.idle_seconds)
            except Exception as exc:  # noqa: BLE001 - the relay must survive Kafka or DB outages
                RELAY_ERRORS.labels(self.service).inc()
                if self.report is not None:
                    self.report("error", str(exc)[:500])
                log.warning("outbox relay failed, retrying in %.1fs: %s", backoff, exc)
                self._drop_producer()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    # -- one step ----------------------------------------------------------------------------------
    def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were published."""
        with self.db.sessions() as session, session.begin():
            rows = self._unpublished_pg(session) if self.db.is_postgres else self._unpublished(session)
            if rows is None:
                return 0  # another replica's relay holds the lock
            if not rows:
                if time.monotonic() - self._backlog_at >= 1.0:  # a count per idle poll would cost more than it says
                    self._update_backlog(session)
                return 0
            # raises unless every message is acknowledged: then the batch stays unpublished
            self._ensure_producer().send([(topic, key, value) for _, topic, key, value in rows])
            self._mark_published(session, [r[0] for r in rows])
            by_topic: dict[str, int] = {}
            for r in rows:
                by_topic[r[1]] = by_topic.get(r[1], 0) + 1
        for topic, n in by_topic.items():
            EVENTS_PUBLISHED.labels(self.service, topic).inc(n)
            if self.report is not None:
                self.report("published", (topic, n))
        return len(rows)

    def _unpublished(self, session: Session) -> list[tuple[int, str, bytes, bytes]]:
        t = self.table
        rows = session.execute(select(t.c.position, t.c.topic, t.c.key, t.c.envelope).where(t.c.published_at.is_(None))
                               .order_by(t.c.position).limit(self.batch_size)).all()
        return [(r.position, r.topic, r.key.encode(), r.envelope.encode()) for r in rows]

    def _unpublished_pg(self, session: Session) -> list[tuple[int, str, bytes, bytes]] | None:
        """(position, topic, key, envelope) of the next rows, or None without the relay's lock. Through the
        transaction's psycopg connection with binary results: key and envelope arrive as the bytes Kafka takes
        (no decoding and encoding again), and no SQLAlchemy row per event."""
        raw = session.connection().connection.driver_connection
        with raw.cursor(binary=True) as cur:
            if not cur.execute("SELECT pg_try_advisory_xact_lock(%b)", [self._lock_key]).fetchone()[0]:
                return None
            # rows of transactions that began before the oldest one still running here wait for it
            cur.execute(f'SELECT position, topic, convert_to(key, \'UTF8\'), convert_to(envelope, \'UTF8\') '
                        f'FROM "{self.table.name}" WHERE published_at IS NULL AND tx_id < ({_HORIZON}) '
                        f'ORDER BY position LIMIT %b', [self.batch_size])
            return cur.fetchall()

    def _mark_published(self, session: Session, positions: list[int]) -> None:
        t = self.table
        now = datetime.now(timezone.utc)
        if self.db.is_postgres:  # one array parameter, not a bound parameter per row
            raw = session.connection().connection.driver_connection
            raw.execute(f'UPDATE "{t.name}" SET published_at = %b WHERE position = ANY(%b)', [now, positions])
        else:
            session.execute(update(t).where(t.c.position.in_(positions)).values(published_at=now))

    def drain(self, timeout: float = 30) -> None:
        """Publish everything now (tests, replays, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.publish_batch() == 0 and self.backlog() == 0:
                return
        raise TimeoutError("outbox not drained")

    def backlog(self) -> int:
        with self.db.sessions() as session:
            return self._update_backlog(session)

    def _update_backlog(self, session: Session) -> int:
        n = session.execute(select(func.count()).select_from(self.table).where(self.table.c.published_at.is_(None))).scalar_one()
        self._backlog_at = time.monotonic()
        OUTBOX_BACKLOG.labels(self.service).set(n)
        if self.report is not None:
            self.report("backlog", n)
        return n

    def _ensure_producer(self) -> RelaySender:
        if self._producer is None:
            self._producer = RelaySender(self.bootstrap)
        return self._producer

    def _drop_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception:  # noqa: BLE001 - a producer being dropped has nothing left to report
                pass
            self._producer = None
