"""quota: a project's class label holds 20 characters, as assessment's policies allow (it held 10: a longer label,
such as A类(优先发展)-重点扶持企业, failed the evaluation's insert on PostgreSQL, and a refused project kept its quota)

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    for table in ("projects", "quota_requests"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("project_class", existing_type=sa.String(10), type_=sa.String(20),
                               existing_nullable=True)


def downgrade() -> None:
    bind = op.get_bind()
    for table in ("projects", "quota_requests"):
        longer = bind.execute(sa.text(f"SELECT count(*) FROM {table} WHERE length(project_class) > 10")).scalar()
        if longer:
            # cutting a class label would change what the project was admitted as
            raise RuntimeError(f"quota 0008 downgrade refused: {longer} row(s) of {table} hold a project class longer "
                               "than 10 characters; restore the backup taken before the upgrade instead")
    for table in ("projects", "quota_requests"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("project_class", existing_type=sa.String(20), type_=sa.String(10),
                               existing_nullable=True)
