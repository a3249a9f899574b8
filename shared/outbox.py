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
from typing import Iterator

from kafka import KafkaProducer
from sqlalchemy import Table, func, select, text, update
from sqlalchemy.orm import Session

from shared.bulk import bulk_insert
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


class OutboxRelay:
    """Publishes unpublished outbox rows in position order and marks them published.

    One relay per service database is active at a time (PostgreSQL advisory lock), so order holds when a
    service runs several replicas. While Kafka is down it retries with backoff; commits keep succeeding.
    """

    def __init__(self, db: Database, table: Table, bootstrap: str, *, batch_size: int = 500, idle_seconds: float = 0.05):
        self.db = db
        self.table = table
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.service = db.service
        self._lock_key = zlib.crc32(f"countypool-outbox-{db.service}".encode())
        self._producer: KafkaProducer | None = None
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
                log.warning("outbox relay failed, retrying in %.1fs: %s", backoff, exc)
                self._drop_producer()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    # -- one step ----------------------------------------------------------------------------------
    def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were published."""
        t = self.table
        with self.db.sessions() as session, session.begin():
            pg = self.db.is_postgres
            if pg and not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": self._lock_key}).scalar():
                return 0
            q = select(t.c.position, t.c.topic, t.c.key, t.c.envelope).where(t.c.published_at.is_(None))
            if pg:
                # Rows of transactions that began before the oldest one still running wait for it.
                q = q.where(t.c.tx_id < text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))
            rows = session.execute(q.order_by(t.c.position).limit(self.batch_size)).all()
            if not rows:
                self._update_backlog(session)
                return 0
            producer = self._ensure_producer()
            futures = [producer.send(r.topic, key=r.key.encode(), value=r.envelope.encode()) for r in rows]
            producer.flush(timeout=30)
            for f in futures:
                f.get(timeout=30)  # raises if any send failed: the batch stays unpublished
            session.execute(
                update(t).where(t.c.position.in_([r.position for r in rows])).values(published_at=datetime.now(timezone.utc))
            )
            by_topic: dict[str, int] = {}
            for r in rows:
                by_topic[r.topic] = by_topic.get(r.topic, 0) + 1
        for topic, n in by_topic.items():
            EVENTS_PUBLISHED.labels(self.service, topic).inc(n)
        return len(rows)

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
        OUTBOX_BACKLOG.labels(self.service).set(n)
        return n

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = make_producer(self.bootstrap)
        return self._producer

    def _drop_producer(self) -> None:
        if self._producer is not None:
            close_producer(self._producer)
            self._producer = None
