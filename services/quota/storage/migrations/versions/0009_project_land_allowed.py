"""quota: whether a project's class may be given construction land (ProjectEvaluated.land_quota_allowed, from
assessment's treatment table); NULL on rows written before, read as allowed, as they were

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("land_allowed", sa.Boolean, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("land_allowed")
