"""The tables every service has besides its own: the outbox (which is also the service's event store, read
back for replay) and the consumer's inbox and positions. Each service adds them to its metadata."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text, text


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
        Column("published_at", DateTime(timezone=True), nullable=True),
        Index("ix_outbox_unpublished", "position", postgresql_where=text("published_at IS NULL"),
              sqlite_where=text("published_at IS NULL")),
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
    )
    return {"outbox": outbox, "inbox": inbox, "consumer_positions": positions}
