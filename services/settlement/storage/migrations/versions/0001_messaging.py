"""outbox, inbox and consumer positions

Revision ID: 0001
Revises:
"""
from alembic import op

from shared.migrations import create_messaging_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_messaging_tables(op)


def downgrade() -> None:
    for name in ("consumer_positions", "inbox", "outbox"):
        op.drop_table(name)
