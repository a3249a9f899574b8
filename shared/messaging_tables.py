"""The tables every service has besides its own: the outbox (which is also the service's event store, read
back for replay) with its relay's progress, and the consumer's inbox and positions. Each service adds them
to its metadata."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text


def add_messaging_tables(metadata: MetaData) -> dict[str, Table]:
    outbox = Table(
        "outbox",
        metadata,
        Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("event_id", String(200), nullable=False, unique=True),
        Column("event_type", String(200), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("envelope", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        # PostgreSQL: the writing transaction's id, so the relay can hold back rows while an older
        # transaction is still in flight (commit order, no skipped late rows). NULL on SQLite.
        Column("tx_id", BigInteger, nullable=True),
        Index("ix_outbox_tx", "tx_id"),
    )
    # Where the relay is, so outbox rows are written once and never updated (marking each row published
    # rewrote the whole row: on PostgreSQL, three quarters of the relay's database time and twice the table).
    # PostgreSQL: every row of a transaction below published_below and not in published_running (ids of a
    # snapshot's running transactions, comma-separated) is published; of the transactions that had ended by
    # the snapshot (epoch_below, epoch_running) and not before, the rows up to `position`. SQLite, whose
    # writers commit in position order: the rows up to `position`. One row (id 1); missing means nothing
    # published yet.
    relay = Table(
        "outbox_relay",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("published_below", BigInteger, nullable=False),
        Column("published_running", Text, nullable=True),
        Column("epoch_below", BigInteger, nullable=False),
        Column("epoch_running", Text, nullable=True),
        Column("position", BigInteger, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("event_id", String(200), primary_key=True),
        Column("event_type", String(200), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("digest", String(64), nullable=False),  # sha256 of the payload: same id, other body = refused
        Column("outcome", String(40), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )
    positions = Table(
        "consumer_positions",
        metadata,
        Column("group_id", String(200), primary_key=True),
        Column("topic", String(200), primary_key=True),
        Column("partition", Integer, primary_key=True),
        Column("next_offset", BigInteger, nullable=False),
        # the topic's id (Kafka >= 2.8) when the position was written: a topic deleted and created again under
        # the same name has another, and its offsets start over
        Column("topic_id", String(36), nullable=True),
    )
    return {"outbox": outbox, "outbox_relay": relay, "inbox": inbox, "consumer_positions": positions}
