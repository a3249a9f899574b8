"""Prometheus metrics every service exports, defined once. Labels stay low-cardinality."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "countypool_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "countypool_http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"]
)
EVENTS_PUBLISHED = Counter("countypool_events_published_total", "Events published from the outbox", ["service", "topic"])
EVENTS_CONSUMED = Counter(
    "countypool_events_consumed_total", "Events consumed, by outcome (applied, duplicate, dead_lettered)",
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
DB_RETRIES = Counter("countypool_db_retries_total", "Transactions retried after deadlock or serialization failure", ["service", "reason"])


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
