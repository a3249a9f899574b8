"""quota: lots and consumptions say whether they earn 腾退补偿 (upgrade savings and reclaimed land do not)

Rows already there keep earning it, as the events that announced them said (a replay reads the same).

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    for table in ("lots", "consumptions"):
        op.add_column(table, sa.Column("earns_compensation", sa.Boolean(), nullable=False, server_default=sa.true()))
