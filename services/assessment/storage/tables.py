"""Tables of the assessment service. Only this service's process reads or writes them.

Figures are integers of their smallest unit inside JSON columns (see domain/enterprise.py); a policy, a
result breakdown or a project answer is stored as the canonical JSON it was hashed from, so what the API
shows years later is exactly what was decided on. Keep in sync with migrations/versions/0002_assessment.py.
"""
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from shared.messaging_tables import add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

# The register (企业台账): one row per enterprise, its current state; every change is an event.
enterprises = Table(
    "enterprises",
    metadata,
    Column("credit_code", String(18), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("county_code", String(6), nullable=False),
    Column("township_code", String(12), nullable=False),
    Column("in_park", Boolean, nullable=False),
    Column("park_id", String(100), nullable=True),
    Column("industry_code", String(10), nullable=False),
    Column("flags", Text, nullable=False),  # JSON list of the flags set, named and extra, sorted
    Column("scale", String(4), nullable=True),
    Column("status", String(20), nullable=False),  # active | exited
    Column("revision", Integer, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200), nullable=False),
    Index("ix_enterprises_county", "county_code", "credit_code"),
)

# What each department said about an enterprise and year (its latest correction).
indicator_parts = Table(
    "indicator_parts",
    metadata,
    Column("credit_code", String(18), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("department", String(200), primary_key=True),
    Column("figures", Text, nullable=False),  # JSON {field: integer units}, emissions as 'emissions.<P>'
    Column("received_via", String(20), nullable=False),  # api | kafka | import
    Column("received_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The parts merged (domain merge_indicators): what an evaluation reads.
indicators = Table(
    "indicators",
    metadata,
    Column("credit_code", String(18), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("figures", Text, nullable=False),
    Column("sources", Text, nullable=False),  # JSON {field: department}
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_indicators_year", "year"),
)

policies = Table(
    "policies",
    metadata,
    Column("county_code", String(6), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("body", Text, nullable=False),  # canonical JSON of the AssessmentPolicy
    Column("policy_hash", String(64), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=False),
)

evaluation_runs = Table(
    "evaluation_runs",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("year", Integer, nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("inputs_hash", String(64), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("enterprise_count", Integer, nullable=False),
    Column("without_data", Integer, nullable=False),  # registered, active, no figures for the year
    Column("class_counts", Text, nullable=False),
    Column("benchmarks", Text, nullable=False),
    Column("averages", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # a re-run with the same content makes no new run; it makes this one the county-year's current run
    Column("last_requested_at", DateTime(timezone=True), nullable=False),
    # the parks' and clusters' ranking over the run's own inputs (JSON; evaluations.ranking_doc), kept so a past
    # year's ranking reads as it was; null for runs made before it was kept
    Column("cluster_ranking", Text, nullable=True),
    UniqueConstraint("county_code", "year", "content_hash", name="uq_runs_content"),
    Index("ix_runs_county_year", "county_code", "year", "last_requested_at"),
)

enterprise_results = Table(
    "enterprise_results",
    metadata,
    Column("run_id", String(100), primary_key=True),
    Column("credit_code", String(18), primary_key=True),
    Column("group_name", String(10), nullable=False),
    Column("class_label", String(20), nullable=False),
    Column("score", String(40), nullable=True),
    Column("rank", Integer, nullable=True),
    Column("recommendation", String(10), nullable=False),
    Column("breakdown", Text, nullable=False),  # canonical JSON of the domain EnterpriseResult
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("credit_code", String(18), nullable=False),
    Column("year", Integer, nullable=False),
    Column("county_code", String(6), nullable=False),
    Column("run_id", String(100), nullable=False),
    Column("recommended", String(10), nullable=False),
    Column("decided", String(10), nullable=False),
    Column("overridden", Boolean, nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("recorded_by", String(200), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(20), nullable=False),  # decided | superseded | executed
    Column("executed_at", DateTime(timezone=True), nullable=True),
    Column("executed_by", String(200), nullable=True),
    Column("effective_on", Date, nullable=True),
    Column("to_park_id", String(100), nullable=True),
    Column("execution_note", Text, nullable=True),
    # a relocation: where the enterprise stood before it (migration 0006; NULL for those carried out earlier)
    Column("prior_in_park", Boolean, nullable=True),
    Column("prior_park_id", String(100), nullable=True),
    Index("ix_decisions_enterprise", "credit_code", "year", "id"),
)

rectification_tasks = Table(
    "rectification_tasks",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("credit_code", String(18), nullable=False),
    Column("county_code", String(6), nullable=False),
    Column("year", Integer, nullable=True),
    Column("decision_id", BigInteger, nullable=True),
    Column("disposition", String(10), nullable=False),
    Column("deadline", Date, nullable=False),
    Column("status", String(20), nullable=False),  # open | done | cancelled
    Column("closed_on", Date, nullable=True),
    Column("note", Text, nullable=False),
    Column("closing_note", Text, nullable=False, server_default=""),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_tasks_due", "status", "deadline"),
    Index("ix_tasks_enterprise", "credit_code"),
)

projects = Table(
    "projects",
    metadata,
    Column("project_id", String(200), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("year", Integer, nullable=False),
    Column("applicant_credit_code", String(18), nullable=False),
    Column("request_digest", String(64), nullable=False),  # same id, other body = 409
    Column("application", Text, nullable=False),  # JSON, integer units
    Column("admitted", Boolean, nullable=False),
    Column("result", Text, nullable=False),  # JSON of the admission answer
    Column("policy_version", Integer, nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("evaluated_by", String(200), nullable=False),
    Column("evaluated_at", DateTime(timezone=True), nullable=False),
)
