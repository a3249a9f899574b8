"""ledger: outbox rows written once; the relay keeps its place in outbox_relay

Revision ID: 0003
Revises: 0002
"""
from alembic import op

from shared.migrations import relay_keeps_its_place

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    relay_keeps_its_place(op)
