"""assessment: a rectification task keeps what it ordered when it is closed; how it was closed goes beside it

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    # tasks closed before this migration had their order's note replaced by the closing one: it stays in note
    with op.batch_alter_table("rectification_tasks") as t:
        t.add_column(sa.Column("closing_note", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("rectification_tasks") as t:
        t.drop_column("closing_note")
