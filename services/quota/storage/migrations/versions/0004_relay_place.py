"""quota: outbox rows written once; the relay keeps its place in outbox_relay

Revision ID: 0004
Revises: 0003
"""
from alembic import op

from shared.migrations import relay_keeps_its_place

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    relay_keeps_its_place(op)
