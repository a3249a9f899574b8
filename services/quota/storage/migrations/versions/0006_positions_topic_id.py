"""quota: consumer positions record their topic's id (a topic created again is read from its start)

Revision ID: 0006
Revises: 0005
"""
from alembic import op

from shared.migrations import positions_know_their_topic

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    positions_know_their_topic(op)
