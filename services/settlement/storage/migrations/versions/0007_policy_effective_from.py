"""settlement: a period of validity for settlement policy versions (effective_from, the 1st of the first month
whose allocations a version splits). Existing versions get NULL — in force from the beginning — so they keep
meaning what they meant: the latest of them splits every allocation, as statements used it so far.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.add_column("settlement_policies", sa.Column("effective_from", sa.Date, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("settlement_policies") as batch:
        batch.drop_column("effective_from")
