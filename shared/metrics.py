"""Prometheus metrics every service exports, defined once. Labels stay low-cardinality."""
from __future__ import annotations

import os
import threading
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import event
from sqlalchemy.orm import Session

HTTP_REQUESTS = Counter(
    "countypool_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "countypool_http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"]
)
EVENTS_PUBLISHED = Counter("countypool_events_published_total", "Events published from the outbox", ["service", "topic"])
EVENTS_CONSUMED = Counter(
    "countypool_events_consumed_total", "Events consumed, by outcome (applied, duplicate, ignored, dead_lettered)",
    ["service", "topic", "outcome"],
)
EVENTS_DEAD_LETTERED = Counter(
    "countypool_events_dead_lettered_total", "Messages sent to a dead-letter topic", ["service", "topic", "reason"]
)
CONSUMER_LATENCY = Histogram(
    "countypool_consumer_batch_duration_seconds", "Time to apply one polled batch", ["service"]
)
OUTBOX_BACKLOG = Gauge("countypool_outbox_backlog", "Outbox rows not yet published", ["service"])
CONSUMER_LAG = Gauge("countypool_consumer_lag", "Messages behind the end of the topic", ["service", "topic"])
CONSUMER_OFFSETS_SKIPPED = Counter(
    "countypool_consumer_offsets_skipped_total",
    "Offsets deleted by a topic's retention before the group read them (their effects are missing)",
    ["service", "topic"],
)
RELAY_ERRORS = Counter("countypool_relay_errors_total", "Failed attempts to publish the outbox", ["service"])
DB_RETRIES = Counter("countypool_db_retries_total", "Transactions run again after a deadlock, a serialization failure or another writer taking the same new key", ["service", "reason"])


class ChildProcesses:
    """CPU seconds and resident memory of a service's child processes (the outbox relay), read from /proc when
    Prometheus scrapes: process_cpu_seconds_total and process_resident_memory_bytes count only the process that
    serves /metrics, so a relay publishing in its own process would be invisible on the dashboards. A child started
    again counts from zero (a counter reset, which rate() handles). Elsewhere than Linux: no samples."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[tuple[str, str], Callable[[], int | None]] = {}

    def watch(self, service: str, process: str, pid_of: Callable[[], int | None]) -> None:
        with self._lock:
            self._watched[(service, process)] = pid_of

    def forget(self, service: str, process: str) -> None:
        with self._lock:
            self._watched.pop((service, process), None)

    def collect(self):
        cpu = CounterMetricFamily("countypool_child_process_cpu_seconds",
                                  "CPU seconds (user + system) of a service's child process", labels=["service", "process"])
        rss = GaugeMetricFamily("countypool_child_process_resident_memory_bytes",
                                "Resident memory of a service's child process", labels=["service", "process"])
        with self._lock:
            watched = list(self._watched.items())
        for labels, pid_of in watched:
            usage = process_usage(pid_of())
            if usage is not None:
                cpu.add_metric(labels, usage[0])
                rss.add_metric(labels, usage[1])
        yield cpu
        yield rss


def process_usage(pid: int | None) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of a live process from /proc/<pid>/stat, or None (gone, not Linux)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()  # the command name may hold spaces: fields follow its ')'
        ticks = int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of proc(5))
        return ticks / _CLOCK_TICKS, int(fields[21]) * _PAGE_SIZE  # rss (field 24), in pages
    except (OSError, ValueError, IndexError):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CHILD_PROCESSES = ChildProcesses()
REGISTRY.register(CHILD_PROCESSES)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


def when_committed(session: Session, count: Callable[[], None]) -> None:
    """Run ``count`` (a metric's update for work done in ``session``) once the session's outermost transaction
    commits, and never if the transaction or savepoint it was done in rolls back: a retried batch, a message's
    savepoint refused, a merged run refused whole. SQLAlchemy also calls after_commit when a savepoint is
    released, so counting then would count work a later rollback undoes."""
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _count_pending)
        event.listen(session, "after_soft_rollback", _drop_rolled_back)
    pending.append((session.get_nested_transaction() or session.get_transaction(), count))


_PENDING = "countypool_uncommitted_counts"


def _count_pending(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: its counts wait for the outermost commit
        return
    pending, session.info[_PENDING] = session.info[_PENDING], []
    for _tx, count in pending:
        count()


def _drop_rolled_back(session: Session, rolled_back) -> None:
    def inside(tx) -> bool:
        while tx is not None:
            if tx is rolled_back:
                return True
            tx = tx.parent
        return False

    session.info[_PENDING] = [p for p in session.info.get(_PENDING, []) if not inside(p[0])]
