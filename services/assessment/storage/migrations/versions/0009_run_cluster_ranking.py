"""assessment: an evaluation run keeps its cluster ranking (computed from the run's inputs when it is made)

Runs made before keep null: their ranking is computed when read, from the figures of the day, as it was.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("evaluation_runs") as t:
        t.add_column(sa.Column("cluster_ranking", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluation_runs") as t:
        t.drop_column("cluster_ranking")
