"""settlement: a settled top-up keeps who paid it to whom (an amendment may change who tops a year up; what the
earlier payer paid goes back to it)

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.add_column("settled_topups", sa.Column("payer", sa.String(200), nullable=True))
    op.add_column("settled_topups", sa.Column("payee", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("settled_topups") as batch:
        batch.drop_column("payee")
        batch.drop_column("payer")
