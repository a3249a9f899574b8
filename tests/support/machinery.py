"""A minimal 'service' for testing the shared machinery: widgets counted by events."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import sqlalchemy as sa
from kafka import KafkaConsumer
from sqlalchemy import Column, Integer, MetaData, String, Table

from shared import migrations
from shared.consumer import MessageContext
from shared.db import Database
from shared.envelope import Event, register
from shared.messaging_tables import add_messaging_tables
from shared.outbox import Outbox

MIGRATIONS = Path(__file__).parent / "migrations"

metadata = MetaData()
messaging = add_messaging_tables(metadata)
widgets = Table("widgets", metadata, Column("id", String(100), primary_key=True), Column("count", Integer, nullable=False))


@register
class WidgetAdded(Event):
    name = "TestWidgetAdded"
    topic = "test.widgets"
    aggregate_type = "widget"

    widget_id: str
    seq: int


def make_db(url: str, service: str = "machinery") -> tuple[Database, Outbox]:
    db = Database(url, service)
    migrations.upgrade(db, MIGRATIONS)
    return db, Outbox(messaging["outbox"], service)


def count_widget(ctx: MessageContext) -> None:
    ev = ctx.event
    s = ctx.session
    current = s.execute(sa.select(widgets.c.count).where(widgets.c.id == ev.widget_id)).scalar()
    if current is None:
        s.execute(widgets.insert().values(id=ev.widget_id, count=1))
    else:
        s.execute(widgets.update().where(widgets.c.id == ev.widget_id).values(count=current + 1))


def widget_counts(db: Database) -> dict[str, int]:
    with db.sessions() as s:
        return {r.id: r.count for r in s.execute(sa.select(widgets)).all()}


def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 30, until=None) -> list:
    """Every record of a topic, from the beginning, until ``expect`` are seen (or ``until(records)`` holds)
    or the time runs out."""
    import time

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"reader-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", enable_auto_commit=False)
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(out) < expect and not (until and until(out)):
            for recs in c.poll(timeout_ms=500).values():
                out.extend(recs)
        # a little longer, to catch duplicates beyond the expected count
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            for recs in c.poll(timeout_ms=200).values():
                out.extend(recs)
    finally:
        c.close()
    return out


def envelope_of(record) -> dict:
    return json.loads(record.value)


def drain(consumer, until, timeout: float = 40) -> None:
    """Poll ``consumer`` until ``until()`` holds; a poll that raises raises here (the loop would retry it for ever)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll_once(timeout_ms=300)
        if until():
            return
    raise AssertionError(f"condition not reached; stats={consumer.stats}")
