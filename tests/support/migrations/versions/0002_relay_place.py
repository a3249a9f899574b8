"""the machinery's outbox as every service has it now

Revision ID: 0002
Revises: 0001
"""
from alembic import op

from shared.migrations import drop_outbox_key_index, relay_keeps_its_place

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    drop_outbox_key_index(op)
    relay_keeps_its_place(op)
