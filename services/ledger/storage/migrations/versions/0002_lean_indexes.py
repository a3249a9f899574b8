"""ledger: the transfers' account and due-time indexes cover pending transfers only; no outbox key index

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from shared.migrations import drop_outbox_key_index

revision = "0002"
down_revision = "0001"

PENDING = {"postgresql_where": sa.text("status = 'pending'"), "sqlite_where": sa.text("status = 'pending'")}


def upgrade() -> None:
    drop_outbox_key_index(op)
    for name in ("ix_transfers_pending_due", "ix_transfers_debit", "ix_transfers_credit"):
        op.drop_index(name, table_name="transfers")
    op.create_index("ix_transfers_pending_due", "transfers", ["expires_at"], **PENDING)
    op.create_index("ix_transfers_pending_debit", "transfers", ["debit_account_id"], **PENDING)
    op.create_index("ix_transfers_pending_credit", "transfers", ["credit_account_id"], **PENDING)
