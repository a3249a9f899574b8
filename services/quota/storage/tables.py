"""Tables of the quota service. Only this service's process reads or writes them; the ledger's books are
reached through events only. Amounts are integers of the asset's smallest unit, money in fen.
Keep in sync with migrations/versions (0002_pool spells these out for Alembic)."""
from sqlalchemy import (
    BigInteger, Boolean, Column, Date, DateTime, Index, Integer, MetaData, String, Table, Text, true,
)

from shared.messaging_tables import add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

# One row per county served: its pool policy (JSON) and, locked FOR UPDATE, the county's pool lock:
# every change of a county's pool figures runs under it, so rounds and allocations see a stable pool.
counties = Table(
    "counties",
    metadata,
    Column("county_code", String(6), primary_key=True),
    Column("policy", Text, nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

# What the assessment service told us about evaluated projects (ProjectEvaluated, latest wins).
projects = Table(
    "projects",
    metadata,
    Column("project_id", String(200), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("applicant_credit_code", String(18), nullable=False),
    Column("park_id", String(200), nullable=True),
    Column("admitted", Boolean, nullable=False),
    Column("project_class", String(20), nullable=True),  # assessment's class labels: 1-20
    Column("tax_per_mu_fen", BigInteger, nullable=True),
    Column("industry_code", String(20), nullable=True),
    Column("land_allowed", Boolean, nullable=True),  # ProjectEvaluated.land_quota_allowed; NULL: before it was kept
    Column("failures", Text, nullable=False),  # JSON list of failure codes
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Approvals (环评 / 能评 / 用地) seen per project, kept even before any request exists.
project_approvals = Table(
    "project_approvals",
    metadata,
    Column("project_id", String(200), primary_key=True),
    Column("kind", String(40), primary_key=True),
    Column("document_ref", String(200), nullable=False),
    Column("granted_on", Date, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

# Enterprises the assessment service saw exit or relocate: their held releases may enter the pool.
departed_enterprises = Table(
    "departed_enterprises",
    metadata,
    Column("credit_code", String(18), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("how", String(20), nullable=False),  # exited | relocated
    Column("effective_on", Date, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

releases = Table(
    "releases",
    metadata,
    Column("release_id", String(200), primary_key=True),
    Column("department", String(40), nullable=False),
    Column("submitted_by", String(200), nullable=False),
    Column("enterprise_credit_code", String(18), nullable=False),
    Column("township_code", String(12), nullable=False),
    Column("county_code", String(6), nullable=False),
    Column("asset", String(20), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", String(40), nullable=False),
    Column("basis", String(10), nullable=False),
    Column("buyback_price_fen", BigInteger, nullable=True),
    Column("document_ref", String(200), nullable=False),
    Column("released_on", Date, nullable=False),
    Column("status", String(30), nullable=False),  # accepted | pending_verification | rejected
    Column("status_reason", String(100), nullable=False),
    Column("digest", String(64), nullable=False),  # of the submitted body: same id, other body = 409
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Index("ix_releases_enterprise", "enterprise_credit_code"),
    Index("ix_releases_county_status", "county_code", "status"),
)

reclamation_projects = Table(
    "reclamation_projects",
    metadata,
    Column("project_id", String(200), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("township_code", String(12), nullable=False),
    Column("area", BigInteger, nullable=False),
    Column("registered_on", Date, nullable=False),
    Column("state", String(20), nullable=False),
    Column("accepted_on", Date, nullable=True),
    Column("accepted_area", BigInteger, nullable=True),
    Column("document_ref", String(200), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("registered_by", String(200), nullable=False),
)

lots = Table(
    "lots",
    metadata,
    Column("lot_id", String(220), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("asset", String(20), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("retired", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("source_kind", String(20), nullable=False),
    Column("source_ref", String(200), nullable=False),
    Column("township_code", String(12), nullable=False),
    Column("dated", Date, nullable=False),
    Column("basis", String(10), nullable=False),
    Column("buyback_price_fen", BigInteger, nullable=True),
    Column("origin_id", String(200), nullable=False),
    Column("earns_compensation", Boolean, nullable=False, server_default=true()),
    # awaiting: intake sent to the ledger; booked: the ledger posted it (only booked lots are granted);
    # refused: the ledger refused the intake (a fault reconciliation shows).
    Column("ledger_state", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_lots_county_asset", "county_code", "asset", "ledger_state"),
    Index("ix_lots_source", "source_ref"),
)

quota_requests = Table(
    "quota_requests",
    metadata,
    Column("request_id", String(200), primary_key=True),
    Column("project_id", String(200), nullable=False),
    Column("county_code", String(6), nullable=False),
    Column("state", String(20), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("approvals", Text, nullable=False),  # JSON list of kinds received
    Column("reserved_assets", Text, nullable=False),  # JSON list of lines the ledger confirmed
    Column("reason", String(200), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # the project's facts at arrival: the allocation order uses these
    Column("project_admitted", Boolean, nullable=False),
    Column("project_class", String(20), nullable=True),  # assessment's class labels: 1-20
    Column("tax_per_mu_fen", BigInteger, nullable=True),
    Column("industry_code", String(20), nullable=True),
    Column("park_id", String(200), nullable=True),
    Column("digest", String(64), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("reserved_at", DateTime(timezone=True), nullable=True),  # for the request -> reserved latency
    Index("ix_requests_state_deadline", "state", "deadline"),
    Index("ix_requests_county_state", "county_code", "state"),
    Index("ix_requests_project", "project_id"),
)

request_lines = Table(
    "request_lines",
    metadata,
    Column("request_id", String(200), primary_key=True),
    Column("asset", String(20), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("approval_kind", String(40), nullable=False),
)

# Which lot each allocated unit came from (provenance; settlement compensates by it).
consumptions = Table(
    "consumptions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(200), nullable=False),
    Column("project_id", String(200), nullable=False),
    Column("county_code", String(6), nullable=False),
    Column("lot_id", String(220), nullable=False),
    Column("asset", String(20), nullable=False),
    Column("source_kind", String(20), nullable=False),
    Column("source_ref", String(200), nullable=False),
    Column("township_code", String(12), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("amount_due_fen", BigInteger, nullable=False),
    Column("allocated_at", DateTime(timezone=True), nullable=False),
    Column("earns_compensation", Boolean, nullable=False, server_default=true()),
    Index("ix_consumptions_lot", "lot_id"),
    Index("ix_consumptions_project", "project_id"),
    Index("ix_consumptions_request", "request_id"),
)

allocations = Table(
    "allocations",
    metadata,
    Column("request_id", String(200), primary_key=True),
    Column("asset", String(20), primary_key=True),
    Column("project_id", String(200), nullable=False),
    Column("county_code", String(6), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("price_fen_per_unit", BigInteger, nullable=False),
    Column("amount_due_fen", BigInteger, nullable=False),
    Column("allocated_on", Date, nullable=False),
    Column("allocated_at", DateTime(timezone=True), nullable=False),
    Index("ix_allocations_project", "project_id"),
)

# An allocation round: its inputs (so it can be re-run and give the same decisions) and its decisions.
rounds = Table(
    "rounds",
    metadata,
    Column("round_id", String(100), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("ran_at", DateTime(timezone=True), nullable=False),
    Column("ran_by", String(200), nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("inputs", Text, nullable=False),  # JSON: available per asset, the requests' facts, the priority
    Index("ix_rounds_county_seq", "county_code", "seq", unique=True),
)

round_decisions = Table(
    "round_decisions",
    metadata,
    Column("round_id", String(100), primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("request_id", String(200), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("reason", String(100), nullable=False),
    Column("ordered_by", Text, nullable=False),  # JSON [[key, value], ...]
    Column("shortfalls", Text, nullable=False),  # JSON [{asset, requested, available}]
    Index("ix_round_decisions_request", "request_id"),
)

# Every transfer we asked the ledger for, and what it answered: the saga's memory of the other side.
ledger_transfers = Table(
    "ledger_transfers",
    metadata,
    Column("transfer_id", String(250), primary_key=True),
    Column("purpose", String(20), nullable=False),  # intake | retire | reserve | post | void
    Column("county_code", String(6), nullable=False),
    Column("asset", String(20), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("debit_account", String(200), nullable=False),
    Column("credit_account", String(200), nullable=False),
    Column("request_id", String(200), nullable=True),
    Column("lot_id", String(220), nullable=True),
    Column("state", String(20), nullable=False),  # asked | pending | posted | voided | expired | rejected
    Column("ledger_reason", String(100), nullable=True),
    Column("asked_at", DateTime(timezone=True), nullable=False),
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Index("ix_ledger_transfers_request", "request_id"),
    Index("ix_ledger_transfers_lot", "lot_id"),
)
