"""assessment: register, indicator parts, policies, evaluation runs and results, decisions, tasks, projects

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "enterprises",
        sa.Column("credit_code", sa.String(18), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("township_code", sa.String(12), nullable=False),
        sa.Column("in_park", sa.Boolean, nullable=False),
        sa.Column("park_id", sa.String(100), nullable=True),
        sa.Column("industry_code", sa.String(10), nullable=False),
        sa.Column("flags", sa.Text, nullable=False),
        sa.Column("scale", sa.String(4), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("registered_at", tz, nullable=False),
        sa.Column("updated_at", tz, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_enterprises_county", "enterprises", ["county_code", "credit_code"])
    op.create_table(
        "indicator_parts",
        sa.Column("credit_code", sa.String(18), primary_key=True),
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("department", sa.String(200), primary_key=True),
        sa.Column("figures", sa.Text, nullable=False),
        sa.Column("received_via", sa.String(20), nullable=False),
        sa.Column("received_by", sa.String(200), nullable=False),
        sa.Column("updated_at", tz, nullable=False),
    )
    op.create_table(
        "indicators",
        sa.Column("credit_code", sa.String(18), primary_key=True),
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("figures", sa.Text, nullable=False),
        sa.Column("sources", sa.Text, nullable=False),
        sa.Column("updated_at", tz, nullable=False),
    )
    op.create_index("ix_indicators_year", "indicators", ["year"])
    op.create_table(
        "policies",
        sa.Column("county_code", sa.String(6), primary_key=True),
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_table(
        "evaluation_runs",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("inputs_hash", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("enterprise_count", sa.Integer, nullable=False),
        sa.Column("without_data", sa.Integer, nullable=False),
        sa.Column("class_counts", sa.Text, nullable=False),
        sa.Column("benchmarks", sa.Text, nullable=False),
        sa.Column("averages", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("last_requested_at", tz, nullable=False),
        sa.UniqueConstraint("county_code", "year", "content_hash", name="uq_runs_content"),
    )
    op.create_index("ix_runs_county_year", "evaluation_runs", ["county_code", "year", "last_requested_at"])
    op.create_table(
        "enterprise_results",
        sa.Column("run_id", sa.String(100), primary_key=True),
        sa.Column("credit_code", sa.String(18), primary_key=True),
        sa.Column("group_name", sa.String(10), nullable=False),
        sa.Column("class_label", sa.String(20), nullable=False),
        sa.Column("score", sa.String(40), nullable=True),
        sa.Column("rank", sa.Integer, nullable=True),
        sa.Column("recommendation", sa.String(10), nullable=False),
        sa.Column("breakdown", sa.Text, nullable=False),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("run_id", sa.String(100), nullable=False),
        sa.Column("recommended", sa.String(10), nullable=False),
        sa.Column("decided", sa.String(10), nullable=False),
        sa.Column("overridden", sa.Boolean, nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("decided_at", tz, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("executed_at", tz, nullable=True),
        sa.Column("executed_by", sa.String(200), nullable=True),
        sa.Column("effective_on", sa.Date, nullable=True),
        sa.Column("to_park_id", sa.String(100), nullable=True),
        sa.Column("execution_note", sa.Text, nullable=True),
    )
    op.create_index("ix_decisions_enterprise", "decisions", ["credit_code", "year", "id"])
    op.create_table(
        "rectification_tasks",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("year", sa.Integer, nullable=True),
        sa.Column("decision_id", sa.BigInteger, nullable=True),
        sa.Column("disposition", sa.String(10), nullable=False),
        sa.Column("deadline", sa.Date, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("closed_on", sa.Date, nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_index("ix_tasks_due", "rectification_tasks", ["status", "deadline"])
    op.create_index("ix_tasks_enterprise", "rectification_tasks", ["credit_code"])
    op.create_table(
        "projects",
        sa.Column("project_id", sa.String(200), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("applicant_credit_code", sa.String(18), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("application", sa.Text, nullable=False),
        sa.Column("admitted", sa.Boolean, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("evaluated_by", sa.String(200), nullable=False),
        sa.Column("evaluated_at", tz, nullable=False),
    )


def downgrade() -> None:
    for t in ("projects", "rectification_tasks", "decisions", "enterprise_results", "evaluation_runs", "policies",
              "indicators", "indicator_parts", "enterprises"):
        op.drop_table(t)
