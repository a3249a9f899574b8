"""test machinery: consumer positions record their topic's id

Revision ID: 0004
Revises: 0003
"""
from alembic import op

from shared.migrations import positions_know_their_topic

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    positions_know_their_topic(op)
