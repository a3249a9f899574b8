"""What every service process is made of: its database (migrated at start), outbox and relay, the
idempotent consumer, authentication, and the HTTP server. A service's ``main.py`` builds one of these."""
from __future__ import annotations

import gc
import logging
import multiprocessing
import signal
import threading
from pathlib import Path
from typing import Callable

import uvicorn
from fastapi import FastAPI
from sqlalchemy import MetaData

from shared import migrations
from shared.auth import Authenticator
from shared.consumer import Authorizer, BatchHandler, Handler, IdempotentConsumer
from shared.contracts import topics as topic_names
from shared.db import Database
from shared.kafka_admin import KafkaProbe, ensure_topics
from shared.kafka_security import kafka_security
from shared.logs import configure_logging
from shared.messaging_tables import add_messaging_tables
from shared.metrics import CHILD_PROCESSES, EVENTS_PUBLISHED, OUTBOX_BACKLOG, RELAY_ERRORS
from shared.outbox import Outbox, OutboxRelay
from shared.settings import ServiceSettings
from shared.unit_of_work import T, UnitOfWork, transactional

log = logging.getLogger(__name__)
# Topics where only the consuming service's own event types belong (see IdempotentConsumer.strict_topics).
# Where departments publish: their messages are signed (COUNTYPOOL_INTAKE_SIGNATURES, shared.auth).
INTAKE_TOPICS = {topic_names.INTAKE_ASSESSMENT, topic_names.INTAKE_QUOTA, topic_names.INTAKE_SETTLEMENT}
STRICT_TOPICS = INTAKE_TOPICS | {topic_names.LEDGER_COMMANDS}


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        metadata: MetaData,
        migrations_dir: Path,
        *,
        topics: list[str] | None = None,
        handler: Handler | None = None,
        handled_types: set[str] | None = None,
        authorize: Authorizer | None = None,
        batch_handler: BatchHandler | None = None,
        intake_topics: set[str] = frozenset(),
    ):
        self.settings = settings
        self.name = settings.service
        self.migrations_dir = migrations_dir
        self.db = Database(settings.resolved_database_url(), self.name)
        self.tables = {n: metadata.tables[n] for n in ("outbox", "inbox", "consumer_positions")}
        self.outbox = Outbox(self.tables["outbox"], self.name)
        self.authenticator = Authenticator.from_settings(settings.auth_tokens_file, settings.auth_jwt_secret,
                                                        audience=settings.auth_jwt_audience,
                                                        issuer=settings.auth_jwt_issuer,
                                                        intake_signatures=settings.intake_signatures)
        kafka_security()  # unusable TLS/SASL settings stop the service here, not silently in its readiness probe
        self.kafka = KafkaProbe(settings.kafka_bootstrap_servers)
        self.relay = OutboxRelay(
            self.db, self.tables["outbox"], settings.kafka_bootstrap_servers,
            batch_size=settings.relay_batch_size, idle_seconds=settings.relay_idle_seconds,
        )
        # serve() runs the relay in a child process when the service's settings say relay_process=True (see
        # RelayProcess); start_background() alone keeps it on a thread (tests drive it in-process)
        self.relay_process: RelayProcess | None = None
        self.consumer: IdempotentConsumer | None = None
        if topics and handler:
            self.consumer = IdempotentConsumer(
                db=self.db, tables=self.tables, outbox=self.outbox, bootstrap=settings.kafka_bootstrap_servers,
                group_id=settings.consumer_group, topics=topics, handler=handler, authorize=authorize,
                max_records=settings.consumer_max_records, max_attempts=settings.consumer_max_attempts,
                handled_types=handled_types, batch_handler=batch_handler, wants=getattr(handler, "wants", None),
                strict_topics=(set(topics) & STRICT_TOPICS) | set(intake_topics), max_message_bytes=settings.consumer_max_message_bytes,
                signed_topics=(set(topics) & INTAKE_TOPICS) | set(intake_topics),
                check_signature=None if self.authenticator.intake_signatures == "off" else self.authenticator.check_signature,
            )
        # Extra periodic work of a service (e.g. the ledger expiring pending transfers): objects with
        # start() and stop(), run alongside the relay and the consumer.
        self.background: list = []
        # stop_background may come while the topics thread is still starting the consumer: that thread then
        # leaves it stopped, and neither ever sees it half started
        self._lifecycle = threading.Lock()
        self._stopping = threading.Event()

    # -- transactions ------------------------------------------------------------------------------
    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.db, self.outbox)

    def transaction(self, fn: Callable[[UnitOfWork], T]) -> T:
        return transactional(self.db, self.outbox, fn)

    # -- lifecycle ---------------------------------------------------------------------------------
    def migrate(self) -> None:
        migrations.upgrade(self.db, self.migrations_dir)

    def ready_checks(self) -> dict[str, Callable[[], bool]]:
        return {"database": self.db.ping, "kafka": self.kafka.reachable}

    def start_background(self, *, relay_process: bool = False) -> None:
        self._stopping.clear()
        if self.settings.relay_enabled and relay_process:
            self.relay_process = RelayProcess(self.settings, self.db.url)
            self.relay_process.start()
        elif self.settings.relay_enabled:
            self.relay.start()
        # The consumer subscribes once its topics exist (joining before them can leave it without
        # partitions); that must not block start-up while Kafka is down, so it happens on a thread.
        threading.Thread(target=self._topics_then_consumer, name=f"{self.name}-topics", daemon=True).start()
        for b in self.background:
            b.start()

    def _topics_then_consumer(self) -> None:
        for attempt in range(10):
            try:
                # the platform's topics, and those this service reads under other names (a second instance's
                # intake topic, say) with their dead-letter topics
                own = [t for t in (self.consumer.topics if self.consumer else []) if t not in topic_names.ALL]
                ensure_topics(self.settings.kafka_bootstrap_servers,
                              [*topic_names.ALL, *map(topic_names.dlq, topic_names.ALL),
                               *own, *map(topic_names.dlq, own)],
                              partitions=self.settings.topic_partitions,
                              replication=self.settings.topic_replication_factor)
                break
            except Exception as exc:  # noqa: BLE001 - Kafka down: the consumer retries on its own anyway
                log.warning("could not ensure topics yet (attempt %d): %s", attempt + 1, exc)
                if self._stopping.wait(min(5.0, 0.5 * 2**attempt)):
                    return
        with self._lifecycle:
            if self.consumer is not None and self.settings.consumer_enabled and not self._stopping.is_set():
                self.consumer.start()

    def stop_background(self) -> None:
        with self._lifecycle:
            self._stopping.set()
        for b in self.background:
            b.stop()
        if self.consumer is not None:
            self.consumer.stop()
        self.relay.stop()
        if self.relay_process is not None:
            self.relay_process.stop()
            self.relay_process = None

    def serve(self, app: FastAPI) -> None:
        """Run until SIGINT/SIGTERM: migrate, start relay and consumer, serve HTTP, then stop cleanly."""
        configure_logging(self.name, self.settings.log_level, self.settings.log_json)
        self.migrate()
        self.start_background(relay_process=bool(getattr(self.settings, "relay_process", False)))
        tune_gc()
        log.info("%s listening on http://%s:%d (database %s)", self.name, self.settings.host, self.settings.port,
                 self.db.engine.url.render_as_string(hide_password=True))
        # uvicorn re-raises SIGTERM after its own shutdown, which would kill the process before the consumer
        # leaves its group; turning it into SystemExit lets the finally below stop everything cleanly.
        signal.signal(signal.SIGTERM, lambda signum, _frame: (_ for _ in ()).throw(SystemExit(128 + signum)))
        try:
            uvicorn.run(app, host=self.settings.host, port=self.settings.port, log_level="warning", access_log=False)
        except SystemExit:
            pass
        finally:
            self.stop_background()
            self.db.dispose()


def tune_gc() -> None:
    """Once a service has started: move everything alive (modules, the app, pools) out of the collector's view
    and collect the youngest generation less often. A request that builds thousands of short-lived objects
    otherwise triggers full collections that walk the whole start-up heap each time (measured on the ledger:
    ~40% more transfers per CPU-second). Cycles are still collected."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 10_000), gen1, gen2)


class RelayProcess:
    """The outbox relay in a child process, so publishing does not take the service's CPU (its GIL) while it
    answers requests. The child is the same OutboxRelay (advisory lock, order, marking only after every
    acknowledgement); it reports what it counts through a pipe, and the parent sets its own metrics, which
    Prometheus scrapes as before. The child exits when the parent goes (even after SIGKILL) and is started
    again if it dies; Ctrl-C reaching the whole process group is left to the parent, which stops it."""

    def __init__(self, settings: ServiceSettings, database_url: str):
        self.service = settings.service
        self.args = (database_url, settings.service, settings.kafka_bootstrap_servers, settings.relay_batch_size,
                     settings.relay_idle_seconds, settings.log_level, settings.log_json)
        self._ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or sockets inherited
        self._proc = None
        self._conn = None
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._spawn()
        CHILD_PROCESSES.watch(self.service, "relay", lambda: self.pid)
        self._monitor = threading.Thread(target=self._watch, name=f"{self.service}-relay-monitor", daemon=True)
        self._monitor.start()

    def _spawn(self) -> None:
        receiver, sender = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_relay_child, args=(*self.args, sender), name=f"{self.service}-relay",
                                 daemon=True)
        proc.start()
        sender.close()  # the child holds the writing end: its exit ends our reads
        self._proc, self._conn = proc, receiver

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                if self._conn.poll(0.5):
                    self._apply(*self._conn.recv())
                    backoff = 1.0
                continue
            except (EOFError, OSError):
                pass  # the child is gone
            if self._stopping.is_set():
                return
            self._proc.join(1)
            log.warning("the %s relay process exited (code %s); starting it again in %.0fs",
                        self.service, self._proc.exitcode, backoff)
            RELAY_ERRORS.labels(self.service).inc()
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 30.0)
            self.restarts += 1
            self._spawn()

    def _apply(self, kind: str, value) -> None:
        if kind == "published":
            topic, n = value
            EVENTS_PUBLISHED.labels(self.service, topic).inc(n)
        elif kind == "backlog":
            OUTBOX_BACKLOG.labels(self.service).set(value)
        elif kind == "error":
            RELAY_ERRORS.labels(self.service).inc()

    def stop(self, timeout: float = 15) -> None:
        self._stopping.set()
        CHILD_PROCESSES.forget(self.service, "relay")
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.terminate()  # SIGTERM: the child finishes its batch and leaves
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if self._monitor is not None:
            self._monitor.join(5)
        if self._conn is not None:
            self._conn.close()


def _relay_child(database_url: str, service: str, bootstrap: str, batch_size: int, idle_seconds: float,
                 log_level: str, log_json: bool, conn) -> None:
    """The relay process's main: publish until SIGTERM or until the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    configure_logging(service, log_level, log_json)
    parent = multiprocessing.parent_process()
    if parent is not None:  # its sentinel closes when it exits, however it exits
        threading.Thread(target=lambda: (parent.join(), stop.set()), name="parent-watch", daemon=True).start()

    def report(kind: str, value) -> None:
        try:
            conn.send((kind, value))
        except OSError:
            stop.set()  # nobody listens any more

    db = Database(database_url, service)
    relay = OutboxRelay(db, add_messaging_tables(MetaData())["outbox"], bootstrap, batch_size=batch_size,
                        idle_seconds=idle_seconds, report=report)
    tune_gc()
    relay.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        relay.stop()
        db.dispose()
