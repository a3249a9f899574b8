"""settlement: the relay's epochs run between snapshots of ended transactions (commit order per key)

Revision ID: 0005
Revises: 0004
"""
from alembic import op

from shared.migrations import relay_remembers_running

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    relay_remembers_running(op)
