"""settlement: consumer positions record their topic's id (a topic created again is read from its start)

Revision ID: 0008
Revises: 0007
"""
from alembic import op

from shared.migrations import positions_know_their_topic

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    positions_know_their_topic(op)
