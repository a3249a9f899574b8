"""ledger: the relay's epochs run between snapshots of ended transactions (commit order per key)

Revision ID: 0004
Revises: 0003
"""
from alembic import op

from shared.migrations import relay_remembers_running

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    relay_remembers_running(op)
