"""Alembic, run from code: every service upgrades its own database to head at start-up.

Each service keeps its revisions in ``services/<name>/storage/migrations/versions``; its ``env.py`` is two
lines calling :func:`run_env`. The messaging tables are created by :func:`create_messaging_tables` from the
service's first revision, spelled out (not generated from today's models) so old revisions stay fixed.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from shared.db import Database
from shared.outbox import rebase_after_restore


def upgrade(db: Database, script_location: str | Path, revision: str = "head") -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    with db.engine.begin() as conn:
        if db.is_postgres:
            # Replicas starting together must not migrate twice.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(f"migrate-{db.service}".encode())})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        if db.is_postgres:
            # a logical restore into another server leaves the relay's place ahead of its transaction ids
            rebase_after_restore(conn)


def run_env() -> None:
    from alembic import context

    conn = context.config.attributes["connection"]
    context.configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def create_messaging_tables(op) -> None:
    """Revision 1 of the outbox, inbox and consumer positions (see shared/messaging_tables.py)."""
    bigint = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    op.create_table(
        "outbox",
        sa.Column("position", bigint, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tx_id", sa.BigInteger, nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["position"],
                    postgresql_where=sa.text("published_at IS NULL"), sqlite_where=sa.text("published_at IS NULL"))
    op.create_index("ix_outbox_key", "outbox", ["key"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE outbox ALTER COLUMN tx_id SET DEFAULT pg_current_xact_id()::text::bigint")
    op.create_table(
        "inbox",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "consumer_positions",
        sa.Column("group_id", sa.String(200), primary_key=True),
        sa.Column("topic", sa.String(200), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
    )


def drop_outbox_key_index(op) -> None:
    """Revision of every service: nothing reads the outbox by key, and the index cost each event a write."""
    op.drop_index("ix_outbox_key", table_name="outbox")


def relay_keeps_its_place(op) -> None:
    """Revision of every service: outbox rows are no longer marked published; the relay keeps its place in
    outbox_relay (see shared/outbox.py). The place starts before the oldest unpublished row, so nothing
    unpublished is skipped; rows already published after it are sent again, which consumers drop by id."""
    op.create_table(
        "outbox_relay",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("published_below", sa.BigInteger, nullable=False),
        sa.Column("epoch_below", sa.BigInteger, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # every transaction below the oldest one still running (on the whole server: the safe side) has ended
        op.execute("INSERT INTO outbox_relay (id, published_below, epoch_below, position, updated_at) "
                   "SELECT 1, b, b, 0, now() FROM (SELECT least(min(tx_id) FILTER (WHERE published_at IS NULL), "
                   "pg_snapshot_xmin(pg_current_snapshot())::text::bigint) AS b FROM outbox) AS x")
    else:
        op.execute("INSERT INTO outbox_relay (id, published_below, epoch_below, position, updated_at) "
                   "SELECT 1, 0, 0, coalesce(min(CASE WHEN published_at IS NULL THEN position END), "
                   "max(position) + 1, 1) - 1, CURRENT_TIMESTAMP FROM outbox")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("published_at")
    op.create_index("ix_outbox_tx", "outbox", ["tx_id"])


def relay_remembers_running(op) -> None:
    """Revision of every service: the relay's epochs run between snapshots of which transactions had ended
    (ids below a bound, minus those then running), so that a transaction with an older id committing after
    newer ones cannot put its events ahead of theirs. A place written before is the same place with none
    running."""
    with op.batch_alter_table("outbox_relay") as batch:
        batch.add_column(sa.Column("published_running", sa.Text, nullable=True))
        batch.add_column(sa.Column("epoch_running", sa.Text, nullable=True))


def positions_know_their_topic(op) -> None:
    """Revision of every service: a consumer position records the id of the topic it is an offset of, so that a
    topic created again under the same name (a rebuilt cluster) is read from its start, not from an offset of
    the one before. Positions written before have none and are trusted as they were."""
    with op.batch_alter_table("consumer_positions") as batch:
        batch.add_column(sa.Column("topic_id", sa.String(36), nullable=True))
