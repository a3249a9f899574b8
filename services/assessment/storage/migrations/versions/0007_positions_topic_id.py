"""assessment: consumer positions record their topic's id (a topic created again is read from its start)

Revision ID: 0007
Revises: 0006
"""
from alembic import op

from shared.migrations import positions_know_their_topic

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    positions_know_their_topic(op)
