"""ledger: messaging tables, accounts, transfers, failed ids, journal and its head

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from shared.migrations import create_messaging_tables

revision = "0001"
down_revision = None

GENESIS = "0" * 64


def upgrade() -> None:
    create_messaging_tables(op)
    big = sa.BigInteger
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("asset", sa.String(20), nullable=False),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("debits_must_not_exceed_credits", sa.Boolean, nullable=False),
        sa.Column("credits_must_not_exceed_debits", sa.Boolean, nullable=False),
        sa.Column("closed", sa.Boolean, nullable=False),
        sa.Column("debits_pending", big, nullable=False),
        sa.Column("debits_posted", big, nullable=False),
        sa.Column("credits_pending", big, nullable=False),
        sa.Column("credits_posted", big, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_seq", big, nullable=False),
    )
    op.create_index("ix_accounts_address", "accounts", ["address"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("debit_account_id", sa.String(200), nullable=False),
        sa.Column("credit_account_id", sa.String(200), nullable=False),
        sa.Column("asset", sa.String(20), nullable=False),
        sa.Column("amount", big, nullable=False),
        sa.Column("code", sa.String(100), nullable=False),
        sa.Column("pending", sa.Boolean, nullable=False),
        sa.Column("timeout_seconds", big, nullable=False),
        sa.Column("post_pending_id", sa.String(200), nullable=False),
        sa.Column("void_pending_id", sa.String(200), nullable=False),
        sa.Column("linked", sa.Boolean, nullable=False),
        sa.Column("refs", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("posted_amount", big, nullable=False),
        sa.Column("resolved_by", sa.String(200), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_transfers_pending_due", "transfers", ["status", "expires_at"])
    op.create_index("ix_transfers_debit", "transfers", ["debit_account_id"])
    op.create_index("ix_transfers_credit", "transfers", ["credit_account_id"])
    op.create_table(
        "failed_transfers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("result", sa.String(60), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "journal",
        sa.Column("seq", big().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("transfer_id", sa.String(200), nullable=False),
        sa.Column("account_id", sa.String(200), nullable=True),
        sa.Column("debit_account_id", sa.String(200), nullable=True),
        sa.Column("credit_account_id", sa.String(200), nullable=True),
        sa.Column("d_debits_pending", big, nullable=False),
        sa.Column("d_debits_posted", big, nullable=False),
        sa.Column("d_credits_pending", big, nullable=False),
        sa.Column("d_credits_posted", big, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_journal_debit", "journal", ["debit_account_id", "seq"])
    op.create_index("ix_journal_credit", "journal", ["credit_account_id", "seq"])
    op.create_index("ix_journal_recorded_at", "journal", ["recorded_at"])
    head = op.create_table(
        "journal_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", big, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])


def downgrade() -> None:
    for t in ("journal_head", "journal", "failed_transfers", "transfers", "accounts", "consumer_positions", "inbox", "outbox"):
        op.drop_table(t)
