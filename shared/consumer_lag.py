"""The consumer lag gauge: the group's lag per topic, measured by every replica in a thread of its own.

Each partition's end offset is set against the next offset the database recorded with the effects (one
table for all of a service's replicas; a partition never consumed counts from its first offset). So every
replica reports the whole group's lag, and partitions nobody owns (a group stuck rebalancing, a replica
without partitions) count instead of reading 0; dashboards and alerts take the max over replicas. The
broker is asked with short timeouts from this thread, never from the poll loop: a broker away delays the
gauge, not the consumer.

The same watermarks show messages that were deleted by a topic's retention before the group read them: a
database position below a partition's first offset (a service down longer than the retention, a database
restored from an old backup), or a poll that resumed past the position the database held (the consumer,
finding its offset gone, starts again at the first one left: kafka-python's reset). Those messages' effects
are missing for good unless their senders publish them again: logged as an error and counted in
countypool_consumer_offsets_skipped_total, once per gap. Not taken for a loss: a jump with the partition's first
offset still at or below the position; a gap of a single offset (a transaction's commit marker, which takes an
offset and is never delivered, so a position can stop on it; a deleted segment holds more than one message); and
a position below the first offset that moves within ``confirm_seconds`` (the consumer held those records, fetched
before retention deleted them, and has applied them since)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from shared.kafka_security import librdkafka_options
from shared.metrics import CONSUMER_LAG, CONSUMER_OFFSETS_SKIPPED

log = logging.getLogger(__name__)


class GroupLag:
    def __init__(self, *, service: str, bootstrap: str, group_id: str, topics: list[str],
                 stored_positions: Callable[[], dict[tuple[str, int], int]], interval: float = 5.0,
                 timeout: float = 2.0, confirm_seconds: float = 30.0):
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
        self._jumps_lock = threading.Lock()
        self._jumps: dict[tuple[str, int], tuple[int, int]] = {}  # (topic, partition) -> (position, offset read)
        self._reported: set[tuple[str, int, int]] = set()  # (topic, partition, position) of gaps already told
        self._beyond_end: set[tuple[str, int, int]] = set()
        self.confirm_seconds = confirm_seconds
        self._below_first: dict[tuple[str, int], tuple[int, float]] = {}  # position below the first offset, since
        self.skipped: dict[str, int] = {}  # offsets found deleted unread, per topic, since this process started

    def note_jump(self, topic: str, partition: int, position: int, offset: int) -> None:
        """The consumer applied ``offset`` of a partition whose database position was ``position`` (< offset):
        checked against the partition's first offset by the next measure."""
        with self._jumps_lock:
            self._jumps.setdefault((topic, partition), (position, offset))

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
        with self._jumps_lock:
            jumps, self._jumps = self._jumps, {}
        try:
            return self._measure(jumps)
        finally:  # a measure that failed part-way leaves the jumps it had not checked to the next one
            with self._jumps_lock:
                for key, jump in jumps.items():
                    self._jumps.setdefault(key, jump)

    def _measure(self, jumps: dict[tuple[str, int], tuple[int, int]]) -> dict[str, int]:
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
                position = stored.get((topic, partition))
                jump = jumps.pop((topic, partition), None)
                if jump is not None and first > jump[0]:
                    self._deleted_unread(topic, partition, jump[0], min(jump[1], first))
                if position is not None and position < first:
                    seen = self._below_first.get((topic, partition))
                    if seen is None or seen[0] != position:
                        seen = self._below_first[(topic, partition)] = (position, time.monotonic())
                    if time.monotonic() - seen[1] >= self.confirm_seconds:
                        self._deleted_unread(topic, partition, position, first)
                else:
                    self._below_first.pop((topic, partition), None)
                if position is not None and position > end:
                    self._past_the_end(topic, partition, position, end)
                # what can still be read: deleted messages are not lag
                total += max(0, end - max(first, position if position is not None else first))
            lag[topic] = total
        return lag

    def _deleted_unread(self, topic: str, partition: int, position: int, first: int) -> None:
        key = (topic, partition, position)
        if key in self._reported or first <= position + 1:  # one offset: a commit marker (see the module's doc)
            return
        self._reported.add(key)
        n = first - position
        self.skipped[topic] = self.skipped.get(topic, 0) + n
        CONSUMER_OFFSETS_SKIPPED.labels(self.service, topic).inc(n)
        log.error("%s: offsets %d..%d of %s[%d] were deleted by the topic's retention before group %s read them: "
                  "their effects are missing; have their senders publish them again", self.service, position,
                  first - 1, topic, partition, self.group_id)

    def _past_the_end(self, topic: str, partition: int, position: int, end: int) -> None:
        key = (topic, partition, position)
        if key in self._beyond_end:
            return
        self._beyond_end.add(key)
        log.warning("%s: the database position %d of %s[%d] is past the partition's end (%d): the topic was recreated "
                    "or the cluster replaced; it is read from its first offset (events already taken are recognised "
                    "by their ids)", self.service, position, topic, partition, end)

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
