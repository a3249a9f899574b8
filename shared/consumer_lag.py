"""The consumer lag gauge: the group's lag per topic, measured by every replica in a thread of its own.

Each partition's end offset is set against the next offset the database recorded with the effects (one
table for all of a service's replicas; a partition never consumed counts from its first offset). So every
replica reports the whole group's lag, and partitions nobody owns (a group stuck rebalancing, a replica
without partitions) count instead of reading 0; dashboards and alerts take the max over replicas. The
broker is asked with short timeouts from this thread, never from the poll loop: a broker away delays the
gauge, not the consumer."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from shared.kafka_security import librdkafka_options
from shared.metrics import CONSUMER_LAG

log = logging.getLogger(__name__)


class GroupLag:
    def __init__(self, *, service: str, bootstrap: str, group_id: str, topics: list[str],
                 stored_positions: Callable[[], dict[tuple[str, int], int]], interval: float = 5.0,
                 timeout: float = 2.0):
        self.service = service
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = topics
        self.stored_positions = stored_positions
        self.interval = interval
        self.timeout = timeout
        self._client = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.service}-consumer-lag", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        self._thread = None
        self._close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.report()
            except Exception as exc:  # noqa: BLE001 - a gauge missed now is measured next time
                log.debug("consumer lag not measured: %s", exc)
                self._close()

    def report(self) -> dict[str, int]:
        lag = self.measure()
        for topic, n in lag.items():
            CONSUMER_LAG.labels(self.service, topic).set(n)
        return lag

    def measure(self) -> dict[str, int]:
        from confluent_kafka import TopicPartition

        client = self._ensure_client()
        stored = self.stored_positions()
        lag: dict[str, int] = {}
        for topic in self.topics:
            md = client.list_topics(topic, timeout=self.timeout).topics.get(topic)
            if md is None or md.error is not None:
                raise RuntimeError(f"no metadata for {topic}: {md.error if md else 'missing'}")
            total = 0
            for partition in md.partitions:
                first, end = client.get_watermark_offsets(TopicPartition(topic, partition), timeout=self.timeout,
                                                          cached=False)
                total += max(0, end - stored.get((topic, partition), first))
            lag[topic] = total
        return lag

    def _ensure_client(self):
        if self._client is None:
            from confluent_kafka import Consumer

            # librdkafka wants a group id; this client never subscribes or commits, so it never joins it
            self._client = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{self.group_id}-lag-probe",
                                     "enable.auto.commit": False, "client.id": f"countypool-{self.service}-lag",
                                     "socket.timeout.ms": int(self.timeout * 1000), **librdkafka_options()})
        return self._client

    def _close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - a client being dropped has nothing left to report
                pass
            self._client = None
