"""settlement: receipts and statistics reports from the intake topic wait for their enterprise (they were
dead-lettered unknown_enterprise when they came before the register's EnterpriseRegistered, for good)

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "waiting_inputs",
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("input_id", sa.String(200), primary_key=True),
        sa.Column("enterprise", sa.String(18), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("event_id", sa.String(200), nullable=True),
        sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refused_reason", sa.String(60), nullable=True),
        sa.Column("refused_message", sa.Text, nullable=True),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_waiting_inputs_enterprise", "waiting_inputs", ["enterprise"])


def downgrade() -> None:
    op.drop_table("waiting_inputs")
