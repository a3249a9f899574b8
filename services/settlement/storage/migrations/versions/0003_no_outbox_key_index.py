"""settlement: no outbox key index (nothing reads the outbox by key)

Revision ID: 0003
Revises: 0002
"""
from alembic import op

from shared.migrations import drop_outbox_key_index

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    drop_outbox_key_index(op)
