"""Transactional outbox: events are written in the same transaction as the state they describe, and a relay
publishes them to Kafka afterwards. Nothing is published for a rolled-back transaction, nothing is lost
while Kafka is down, and rows committed late are delayed, never skipped (the relay follows transaction ids,
not "everything after the largest position seen"; see OutboxRelay)."""
from __future__ import annotations

import logging
import threading
import time
import zlib
from datetime import datetime, timezone
from operator import itemgetter
from typing import Callable, Iterator

from kafka import KafkaProducer
from sqlalchemy import Connection, Table, select, text
from sqlalchemy.orm import Session

from shared.bulk import bulk_insert, insert_rows, insert_tuples, is_pg
from shared.db import Database
from shared.envelope import Envelope, Event, new_envelope
from shared.kafka_security import kafka_python_options, librdkafka_options
from shared.logs import correlation_id
from shared.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG, RELAY_ERRORS

log = logging.getLogger(__name__)

# The largest message value (UTF-8 bytes of the envelope JSON) any of our producers sends: the outbox refuses a
# bigger event when it is written (Outbox.add/add_many/add_rows), and a dead letter above it goes without its
# value (shared.consumer.DLQ_VALUE_LIMIT). Kafka would refuse it anyway, but only when the relay sends it, and the
# relay sends in commit order: the row would stay first in line forever and every later event of the service
# would wait behind it. 900 KiB = 921,600 bytes is below the relay producer's limit (librdkafka
# message.max.bytes, 1,000,000 by default: key, value and headers together), kafka-python's max_request_size
# (1 MiB) and the broker's message.max.bytes (1 MiB + 12 by default), with ~78 kB left for the key (the
# aggregate id), headers and the record's framing. Consumers take events up to this size from other services'
# event topics; on intake and command topics, where outsiders publish, they keep their own cap
# (ServiceSettings.consumer_max_message_bytes, 256 KiB by default, 1 MiB for the ledger's commands): what they
# refuse is dead-lettered, not stuck, so a service sending big commands splits them by size itself
# (services/settlement/ledger_postings.py).
MAX_EVENT_BYTES = 900 * 1024

# CloudEvents' Kafka binding, structured mode: the content-type header names the event format, so that a
# partner's CloudEvents SDK reads the value as a whole envelope (without it, it tries binary mode and fails).
CLOUDEVENTS_HEADERS = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


class EventTooLarge(ValueError):
    """An event whose serialized envelope is above MAX_EVENT_BYTES: refused before anything of it is written (the
    writer's transaction is left to its caller, who rolls it back)."""

    def __init__(self, event_type: str, key: str, size: int, limit: int, event_id: str | None = None):
        self.event_type, self.key, self.size, self.limit, self.event_id = event_type, key, size, limit, event_id
        super().__init__(f"event {event_type} (key {key!r}{f', id {event_id}' if event_id else ''}) is {size:,} "
                         f"bytes serialized, above the outbox's limit of {limit:,} (Kafka could never deliver it)")


def _utf8_len(value: str | bytes) -> int:
    return len(value.encode()) if isinstance(value, str) else len(value)


class Outbox:
    """Writes events of one service into its outbox table. An event above ``max_event_bytes`` serialized raises
    EventTooLarge before any row of the call is written."""

    max_event_bytes = MAX_EVENT_BYTES

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
        rows = [self._row(session, env, topic) for env, topic in items]  # each checked: none is written if one is too big
        bulk_insert(session, self.table, rows)

    # up to this many rows, add_rows sends INSERTs (which a psycopg pipeline sends along with the rest of the
    # transaction) rather than COPY (two round trips of its own, and not allowed in a pipeline)
    SMALL = 64

    # the columns an event's row gives, in the order of add_tuples' tuples (position and tx_id are the database's)
    ROW_COLUMNS = ("event_id", "event_type", "topic", "key", "envelope", "created_at")

    def add_rows(self, session: Session, rows: list[dict]) -> None:
        """Events a service serialized itself: dicts of ROW_COLUMNS (envelope: the envelope's JSON text, as
        Envelope.to_json gives it). See add_tuples."""
        if rows:
            self.add_tuples(session, list(map(itemgetter(*self.ROW_COLUMNS), rows)))

    def add_tuples(self, session: Session, rows: list[tuple]) -> None:
        """Events a service serialized itself, as tuples in ROW_COLUMNS order: the hot paths (thousands per
        transaction), written as the driver takes them fastest (COPY, or a few INSERTs that a psycopg pipeline
        sends with the rest of the transaction; SQLite's own executemany). Refused whole (EventTooLarge) if
        any envelope is above the limit."""
        if not rows:
            return
        self.check_rows(rows)
        if is_pg(session) and len(rows) <= self.SMALL:
            insert_rows(session, self.table, self.ROW_COLUMNS, rows)
        else:
            insert_tuples(session, self.table, self.ROW_COLUMNS, rows)

    def check_rows(self, rows: list[tuple]) -> None:
        """Raise EventTooLarge for the first row (tuples in ROW_COLUMNS order) whose envelope is above the limit.
        A ``len`` per row in C (the hot path writes tens of thousands a second); only text long enough that its
        UTF-8 form might be above the limit (more than a quarter of it in characters) is encoded to be sure."""
        limit = self.max_event_bytes
        if max(map(len, map(itemgetter(4), rows))) * 4 <= limit:
            return
        for event_id, event_type, _topic, key, text_, _at in rows:
            if len(text_) * 4 > limit and (size := _utf8_len(text_)) > limit:
                raise EventTooLarge(event_type, key, size, limit, event_id)

    def _row(self, session: Session, env: Envelope, topic: str) -> dict:
        data = env.to_json()
        if len(data) > self.max_event_bytes:
            raise EventTooLarge(env.type, env.subject, len(data), self.max_event_bytes, env.id)
        row = {
            "event_id": env.id,
            "event_type": env.type,
            "topic": topic,
            "key": env.subject,
            "envelope": data.decode(),
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
    cfg.update(kafka_python_options())
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
            # a failed message with a later one of its partition delivered would reorder a key when the batch is
            # sent again: librdkafka fails the producer instead, and the relay starts a new one from its place
            "enable.gapless.guarantee": True,
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
        cfg.update(librdkafka_options())
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
                    produce(topic, value=value, key=key, headers=CLOUDEVENTS_HEADERS, on_delivery=delivered)
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


# Which transactions had ended when it was taken: every id below xmax except those listed as running
# ("xmin:xmax:xip,..."). Other databases' transactions are listed too; they have no rows here.
_SNAPSHOT = "SELECT pg_current_snapshot()::text"

# The rows of an epoch: of the transactions that had ended by its snapshot and not by the one before
# (arguments: before.below, epoch.below, before.running, epoch.running, epoch.below). Its two ranges are read
# through the tx_id index when {tx} is the bare column.
_EPOCH = ("(({tx} >= %b AND {tx} < %b) OR {tx} = ANY(%b::bigint[])) "
          "AND {tx} <> ALL(%b::bigint[]) AND {tx} < %b")

Report = Callable[[str, object], None]  # ("published", (topic, n)) | ("backlog", n) | ("error", message)


class Snapshot(tuple):
    """(below, running): the transactions with an id below ``below`` that are not in ``running`` (sorted) had
    ended; every row they wrote is in the outbox for good."""

    __slots__ = ()

    def __new__(cls, below: int, running=()):
        return super().__new__(cls, (below, tuple(sorted(running))))

    @property
    def below(self) -> int:
        return self[0]

    @property
    def running(self) -> tuple[int, ...]:
        return self[1]

    @classmethod
    def parse(cls, text_: str) -> "Snapshot":
        _xmin, xmax, xip = text_.split(":")
        return cls(int(xmax), (int(x) for x in xip.split(",") if x))

    @classmethod
    def stored(cls, below: int, running: str | None) -> "Snapshot":
        return cls(below, (int(x) for x in (running or "").split(",") if x))

    def running_text(self) -> str | None:
        return ",".join(map(str, self.running)) or None


_PLACE = "SELECT published_below, published_running, epoch_below, epoch_running, position FROM {table}_relay WHERE id = 1"


def _place_from(row) -> tuple[Snapshot, Snapshot, int]:
    """(published, epoch, position) from the relay's row (None: nothing published yet)."""
    if row is None:
        return Snapshot(0), Snapshot(0), 0
    pb, pr, eb, er, pos = row
    return Snapshot.stored(pb, pr), Snapshot.stored(eb, er), pos


def _place_of(bind, table: str) -> tuple[Snapshot, Snapshot, int]:
    return _place_from(bind.execute(text(_PLACE.format(table=table))).first())


def _unpublished_where(done: Snapshot, epoch: Snapshot, pos: int) -> tuple[str, dict]:
    """The rows the relay has not published, by its place (PostgreSQL)."""
    return ("(tx_id >= :db OR tx_id = ANY(CAST(:dr AS bigint[]))) "
            "AND NOT (tx_id < :eb AND tx_id <> ALL(CAST(:er AS bigint[])) AND position <= :pos)",
            {"db": done.below, "dr": list(done.running), "eb": epoch.below, "er": list(epoch.running), "pos": pos})


def rebase_after_restore(conn: Connection, table: str = "outbox") -> int | None:
    """PostgreSQL, at start-up, before the service writes: if the relay's place lies ahead of this server's
    transaction ids, the database was restored logically (pg_dump / pg_restore) into another server, whose ids
    started again from a few hundred (or a row's transaction id lies ahead of the server's). Read by the place as
    it stands, every row written from now on would count as published and never be sent. So the rows the new place
    would misread are rewritten once, as the old place said: this transaction's id for the unpublished ones, 0
    for published ones at or above it, and the place set to this transaction (its rows are the next epoch).
    Returns how many rows are left to publish, or None when the place and the server agree (the same server, or a
    physical or point-in-time restore, which keeps the ids)."""
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": f"{table}_relay"}).scalar() is None:
        return None
    done, epoch, pos = _place_of(conn, table)
    next_id = conn.execute(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")).scalar_one()
    # a row of a transaction this server has not begun yet is as sure a sign (the relay was behind when the dump
    # was taken, and the new server's ids lie between its place and those rows)
    ahead = conn.execute(text(f'SELECT EXISTS (SELECT 1 FROM "{table}" WHERE tx_id >= :n)'), {"n": next_id}).scalar()
    if max(done.below, epoch.below) <= next_id and not ahead:
        return None
    me = conn.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
    where, args = _unpublished_where(done, epoch, pos)
    left = conn.execute(text(f'SELECT count(*) FROM "{table}" WHERE {where}'), args).scalar_one()
    # only the rows the new place would misread: the unpublished ones, and published ones at or above it
    conn.execute(text(f'UPDATE "{table}" SET tx_id = CASE WHEN {where} THEN :me ELSE 0 END '
                      f"WHERE ({where}) OR tx_id >= :me"), {**args, "me": me})
    conn.execute(text(f"UPDATE {table}_relay SET published_below = :me, published_running = NULL, epoch_below = :me, "
                      "epoch_running = NULL, position = 0, updated_at = now() WHERE id = 1"), {"me": me})
    log.warning("the outbox relay's place (transaction %d) or its rows lay ahead of this server's transaction ids "
                "(next %d): the database was restored into another server; place rebased, %d rows to publish",
                max(done.below, epoch.below), next_id, left)
    return left


def unpublished_count(bind: Session | Connection, table: str = "outbox") -> int:
    """How many rows the relay has not published yet (see the outbox_relay table's comment). Two statements:
    the place is read first so that the count is planned for its values (index ranges over the newest
    transactions and those that were running), not for unknown ones (a scan of the whole outbox)."""
    done, epoch, pos = _place_of(bind, table)
    dialect = bind.dialect.name if isinstance(bind, Connection) else bind.get_bind().dialect.name
    if dialect != "postgresql":
        return bind.execute(text(f'SELECT count(*) FROM "{table}" WHERE position > :pos'), {"pos": pos}).scalar_one()
    where, args = _unpublished_where(done, epoch, pos)
    return bind.execute(text(f'SELECT count(*) FROM "{table}" WHERE {where}'), args).scalar_one()


def mark_all_published(session: Session, table: str = "outbox") -> None:
    """Tell the relay that every row now in the outbox is published (a bench that writes a million synthetic
    events a relay must not send). Only while nothing else writes to the outbox."""
    snap = Snapshot.parse(session.execute(text(_SNAPSHOT)).scalar_one()) if is_pg(session) else Snapshot(0)
    last = session.execute(text(f'SELECT coalesce(max(position), 0) FROM "{table}"')).scalar_one()
    session.execute(text(f"DELETE FROM {table}_relay"))
    session.execute(text(f"INSERT INTO {table}_relay (id, published_below, published_running, epoch_below, "
                         f"epoch_running, position, updated_at) VALUES (1, :b, :r, :b, :r, :pos, :now)"),
                    {"b": snap.below, "r": snap.running_text(), "pos": last, "now": datetime.now(timezone.utc)})


BUSY_BACKLOG_SECONDS = 5.0  # how often the backlog is counted while the relay publishes or fails


class OutboxRelay:
    """Publishes outbox rows and records how far it got.

    Rows are never updated: the relay keeps its place in the one-row ``<outbox>_relay`` table. On SQLite,
    writers commit one after another in position order, and the place is the last position published.

    On PostgreSQL, positions are taken at insert but rows become visible at commit, so a row with a lower
    position can appear after higher ones were published. The relay therefore works in epochs between
    snapshots of which transactions had ended: an epoch holds the rows of the transactions that had ended by
    one snapshot but not by the one before, so its rows are final; they are published in position order,
    then the next epoch is taken from a fresh snapshot. A transaction still running holds back only its own
    rows, which are delayed, never skipped. Epochs follow commits: a transaction that committed before
    another ended is in the same epoch or an earlier one, whatever their ids (taken at each one's first
    write). So events written under the same lock (one aggregate's, one key's) arrive in the order of their
    commits, which is also their positions' order inside an epoch.

    One relay per service database is active at a time (PostgreSQL advisory lock), so order holds when a
    service runs several replicas. While Kafka is down it retries with backoff; commits keep succeeding.
    Publishing is at least once: a crash between Kafka's acknowledgement and the commit of the new place
    sends the batch again, and consumers drop the repeats by event id. ``report``, if given, hears what the
    relay's metrics count (a relay in a child process tells its parent, whose /metrics Prometheus scrapes).
    """

    def __init__(self, db: Database, table: Table, bootstrap: str, *, batch_size: int = 500, idle_seconds: float = 0.05,
                 report: Report | None = None):
        self.db = db
        self.table = table
        self.state_table = f"{table.name}_relay"
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.service = db.service
        self.report = report
        self._lock_key = zlib.crc32(f"countypool-outbox-{db.service}".encode())
        self._producer: RelaySender | None = None
        self._backlog_at = float("-inf")  # when the backlog gauge was last counted
        self._done_epoch: tuple | None = None  # the place last found with nothing left in its epoch
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
                else:
                    self._recount_if_due()
            except Exception as exc:  # noqa: BLE001 - the relay must survive Kafka or DB outages
                RELAY_ERRORS.labels(self.service).inc()
                self._recount_if_due()
                if self.report is not None:
                    self.report("error", str(exc)[:500])
                log.warning("outbox relay failed, retrying in %.1fs: %s", backoff, exc)
                self._drop_producer()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    # -- one step ----------------------------------------------------------------------------------
    def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were published."""
        rows = self._publish_pg() if self.db.is_postgres else self._publish_sqlite()
        by_topic: dict[str, int] = {}
        for r in rows:
            by_topic[r[1]] = by_topic.get(r[1], 0) + 1
        for topic, n in by_topic.items():
            EVENTS_PUBLISHED.labels(self.service, topic).inc(n)
            if self.report is not None:
                self.report("published", (topic, n))
        return len(rows)

    def _publish_pg(self) -> list[tuple[int, str, bytes, bytes]]:
        with self.db.sessions() as session, session.begin():
            raw = session.connection().connection.driver_connection
            with raw.cursor(binary=True) as cur:
                found = self._next_pg(cur)
            if found is None:
                self._idle(session)  # another replica's relay holds the lock: the backlog is still ours to show
                return []
            rows, place = found
            if not rows:
                self._idle(session)
                return []
            # raises unless every message is acknowledged: then the place stays where it was
            self._ensure_producer().send([(topic, key, value) for _, topic, key, value in rows])
            self._save_place(session, *place, rows[-1][0])
        return rows

    def _publish_sqlite(self) -> list[tuple[int, str, bytes, bytes]]:
        # SQLite has one write lock for the whole file, which every writing transaction takes at its start (BEGIN
        # IMMEDIATE, shared.db): held through the send, as the PostgreSQL path holds its transaction, it stopped
        # every commit of the service while Kafka was slow or down, and failed them after SQLite's busy timeout.
        # So the rows are read in a read snapshot, sent, and only then is the place written, in a short
        # transaction of its own. Writers commit in position order, so a row committed meanwhile comes after
        # these; the place only moves forward (a second relay on the file publishes again, never skips).
        with self.db.read_snapshot() as session:
            rows, _ = self._next(session)
            if not rows:
                self._idle(session)
                return []
        # raises unless every message is acknowledged: then the place stays where it was
        self._ensure_producer().send([(topic, key, value) for _, topic, key, value in rows])
        with self.db.sessions() as session, session.begin():
            place = session.execute(text(f"SELECT position FROM {self.state_table} WHERE id = 1")).scalar()
            if place is None or place < rows[-1][0]:
                self._save_place(session, Snapshot(0), Snapshot(0), rows[-1][0])
        return rows

    def _idle(self, session: Session) -> None:
        if time.monotonic() - self._backlog_at >= 1.0:  # a count per idle poll would cost more than it says
            self._update_backlog(session)

    def _next_pg(self, cur) -> tuple[list[tuple[int, str, bytes, bytes]], tuple[Snapshot, Snapshot]] | None:
        """The next rows as (position, topic, key, envelope) and their epoch, or None without the relay's lock.
        Through the transaction's psycopg connection with binary results: key and envelope arrive as the bytes
        Kafka takes (no decoding and encoding again), and no SQLAlchemy row per event."""
        if not cur.execute("SELECT pg_try_advisory_xact_lock(%b)", [self._lock_key]).fetchone()[0]:
            return None
        place = done, epoch, position = _place_from(cur.execute(_PLACE.format(table=self.table.name)).fetchone())
        # an epoch's rows are final: once it is found done, the rows after its place need not be read again
        if place != self._done_epoch:
            rows = self._epoch_rows_pg(cur, done, epoch, position)
            if rows:
                return rows, (done, epoch)
            self._done_epoch = place
        # the epoch is done: the next one runs up to a fresh snapshot, from its lowest position
        now = Snapshot.parse(cur.execute(_SNAPSHOT).fetchone()[0])
        if now == epoch:
            return [], (done, epoch)
        # "position + 0": not min() by walking the position index from the start and filtering (what the
        # planner picks when it takes the epoch's rows for evenly spread), but through the tx_id index
        first = cur.execute(
            f'SELECT min(position + 0) FROM "{self.table.name}" WHERE {_EPOCH.format(tx="tx_id")}',
            self._epoch_args(epoch, now)).fetchone()[0]
        if first is None:  # no rows in it; nothing worth writing down either (the next look covers it again)
            return [], (done, epoch)
        return self._epoch_rows_pg(cur, epoch, now, first - 1), (epoch, now)

    @staticmethod
    def _epoch_args(done: Snapshot, epoch: Snapshot) -> list:
        return [done.below, epoch.below, list(done.running), list(epoch.running), epoch.below]

    def _epoch_rows_pg(self, cur, done: Snapshot, epoch: Snapshot, after: int) -> list[tuple[int, str, bytes, bytes]]:
        if done == epoch:
            return []
        # "tx_id + 0" keeps the planner on the position index (an epoch's rows lie after `after`, mostly
        # together): sorting the whole epoch for each batch would make a big backlog quadratic
        return cur.execute(
            f"SELECT position, topic, convert_to(key, 'UTF8'), convert_to(envelope, 'UTF8') "
            f'FROM "{self.table.name}" WHERE position > %b AND {_EPOCH.format(tx="tx_id + 0")} '
            f"ORDER BY position LIMIT %b", [after, *self._epoch_args(done, epoch), self.batch_size]).fetchall()

    def _next(self, session: Session) -> tuple[list[tuple[int, str, bytes, bytes]], tuple[Snapshot, Snapshot]]:
        t = self.table
        after = session.execute(text(f"SELECT position FROM {self.state_table} WHERE id = 1")).scalar() or 0
        rows = session.execute(select(t.c.position, t.c.topic, t.c.key, t.c.envelope).where(t.c.position > after)
                               .order_by(t.c.position).limit(self.batch_size)).all()
        return [(r.position, r.topic, r.key.encode(), r.envelope.encode()) for r in rows], (Snapshot(0), Snapshot(0))

    def _save_place(self, session: Session, done: Snapshot, epoch: Snapshot, position: int) -> None:
        values = {"pb": done.below, "pr": done.running_text(), "eb": epoch.below, "er": epoch.running_text(),
                  "pos": position, "now": datetime.now(timezone.utc)}
        updated = session.execute(text(
            f"UPDATE {self.state_table} SET published_below = :pb, published_running = :pr, epoch_below = :eb, "
            f"epoch_running = :er, position = :pos, updated_at = :now WHERE id = 1"), values)
        if updated.rowcount == 0:
            session.execute(text(
                f"INSERT INTO {self.state_table} (id, published_below, published_running, epoch_below, epoch_running, "
                f"position, updated_at) VALUES (1, :pb, :pr, :eb, :er, :pos, :now)"), values)

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

    def _recount_if_due(self) -> None:
        """The backlog gauge while busy or failing: counted only when idle, it kept its last (low) figure through a
        long backlog or a Kafka outage, and the backlog alerts never fired."""
        if time.monotonic() - self._backlog_at < BUSY_BACKLOG_SECONDS:
            return
        try:
            self.backlog()
        except Exception as exc:  # noqa: BLE001 - the database may be what is failing; the next round counts
            log.debug("backlog not counted: %s", exc)

    def _update_backlog(self, session: Session) -> int:
        n = unpublished_count(session, self.table.name)
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
