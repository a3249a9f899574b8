"""messaging tables and a widgets table for the machinery tests

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from shared.migrations import create_messaging_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_messaging_tables(op)
    op.create_table("widgets", sa.Column("id", sa.String(100), primary_key=True), sa.Column("count", sa.Integer, nullable=False))


def downgrade() -> None:
    pass
