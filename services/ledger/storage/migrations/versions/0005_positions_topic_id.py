"""ledger: consumer positions record their topic's id (a topic created again is read from its start)

Revision ID: 0005
Revises: 0004
"""
from alembic import op

from shared.migrations import positions_know_their_topic

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    positions_know_their_topic(op)
