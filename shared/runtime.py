"""What every service process is made of: its database (migrated at start), outbox and relay, the
idempotent consumer, authentication, and the HTTP server. A service's ``main.py`` builds one of these."""
from __future__ import annotations

import logging
import signal
import threading
import time
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
from shared.logs import configure_logging
from shared.outbox import Outbox, OutboxRelay
from shared.settings import ServiceSettings
from shared.unit_of_work import T, UnitOfWork, transactional

log = logging.getLogger(__name__)
# Topics where only the consuming service's own event types belong (see IdempotentConsumer.strict_topics).
STRICT_TOPICS = {topic_names.INTAKE_ASSESSMENT, topic_names.INTAKE_QUOTA, topic_names.INTAKE_SETTLEMENT,
                 topic_names.LEDGER_COMMANDS}


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
        self.authenticator = Authenticator.from_settings(settings.auth_tokens_file, settings.auth_jwt_secret)
        self.kafka = KafkaProbe(settings.kafka_bootstrap_servers)
        self.relay = OutboxRelay(
            self.db, self.tables["outbox"], settings.kafka_bootstrap_servers,
            batch_size=settings.relay_batch_size, idle_seconds=settings.relay_idle_seconds,
        )
        self.consumer: IdempotentConsumer | None = None
        if topics and handler:
            self.consumer = IdempotentConsumer(
                db=self.db, tables=self.tables, outbox=self.outbox, bootstrap=settings.kafka_bootstrap_servers,
                group_id=settings.consumer_group, topics=topics, handler=handler, authorize=authorize,
                max_records=settings.consumer_max_records, max_attempts=settings.consumer_max_attempts,
                handled_types=handled_types, batch_handler=batch_handler,
                strict_topics=(set(topics) & STRICT_TOPICS) | set(intake_topics), max_message_bytes=settings.consumer_max_message_bytes,
            )
        # Extra periodic work of a service (e.g. the ledger expiring pending transfers): objects with
        # start() and stop(), run alongside the relay and the consumer.
        self.background: list = []

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

    def start_background(self) -> None:
        if self.settings.relay_enabled:
            self.relay.start()
        # The consumer subscribes once its topics exist (joining before them can leave it without
        # partitions); that must not block start-up while Kafka is down, so it happens on a thread.
        threading.Thread(target=self._topics_then_consumer, name=f"{self.name}-topics", daemon=True).start()
        for b in self.background:
            b.start()

    def _topics_then_consumer(self) -> None:
        for attempt in range(10):
            try:
                ensure_topics(self.settings.kafka_bootstrap_servers, partitions=self.settings.topic_partitions,
                              replication=self.settings.topic_replication_factor)
                break
            except Exception as exc:  # noqa: BLE001 - Kafka down: the consumer retries on its own anyway
                log.warning("could not ensure topics yet (attempt %d): %s", attempt + 1, exc)
                time.sleep(min(5.0, 0.5 * 2**attempt))
        if self.consumer is not None and self.settings.consumer_enabled:
            self.consumer.start()

    def stop_background(self) -> None:
        for b in self.background:
            b.stop()
        if self.consumer is not None:
            self.consumer.stop()
        self.relay.stop()

    def serve(self, app: FastAPI) -> None:
        """Run until SIGINT/SIGTERM: migrate, start relay and consumer, serve HTTP, then stop cleanly."""
        configure_logging(self.name, self.settings.log_level, self.settings.log_json)
        self.migrate()
        self.start_background()
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
