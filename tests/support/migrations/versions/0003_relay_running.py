"""the machinery: the relay's epochs run between snapshots of ended transactions (commit order per key)

Revision ID: 0003
Revises: 0002
"""
from alembic import op

from shared.migrations import relay_remembers_running

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    relay_remembers_running(op)
