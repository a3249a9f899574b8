"""assessment: an executed relocation remembers where the enterprise was (in a park or not, which park), so that a
re-run of a year before it evaluates the enterprise where it stood that year

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    # NULL on relocations carried out before this migration: where they stood was not kept (their past years
    # keep reading today's park, as before)
    with op.batch_alter_table("decisions") as t:
        t.add_column(sa.Column("prior_in_park", sa.Boolean(), nullable=True))
        t.add_column(sa.Column("prior_park_id", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as t:
        t.drop_column("prior_park_id")
        t.drop_column("prior_in_park")
