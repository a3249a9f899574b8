"""settlement: statistics settled so far per agreement, measure and month (late reports change the origin's
part by the difference of the recomputed split, as late receipts do for tax)

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "settled_statistics",
        sa.Column("agreement_id", sa.String(200), primary_key=True),
        sa.Column("measure", sa.String(40), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("origin_part", sa.BigInteger, nullable=False),
        sa.Column("settled_in", sa.String(7), nullable=False),
    )
    op.create_index("ix_settled_statistics_county", "settled_statistics", ["county_code"])


def downgrade() -> None:
    op.drop_table("settled_statistics")
