"""quota pool: counties and policies, projects and approvals, departed enterprises, releases,
reclamation projects, lots, requests and their lines, consumptions, allocations, rounds, ledger transfers

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

S, B, T, D, DT, I, BOOL = sa.String, sa.BigInteger, sa.Text, sa.Date, sa.DateTime(timezone=True), sa.Integer, sa.Boolean


def col(name, type_, nullable=False, **kw):
    return sa.Column(name, type_, nullable=nullable, **kw)


def upgrade() -> None:
    op.create_table(
        "counties",
        col("county_code", S(6), primary_key=True), col("policy", T), col("policy_version", I),
        col("updated_at", DT), col("updated_by", S(200)),
    )
    op.create_table(
        "projects",
        col("project_id", S(200), primary_key=True), col("county_code", S(6)), col("applicant_credit_code", S(18)),
        col("park_id", S(200), True), col("admitted", BOOL), col("project_class", S(10), True),
        col("tax_per_mu_fen", B, True), col("industry_code", S(20), True), col("failures", T), col("updated_at", DT),
    )
    op.create_table(
        "project_approvals",
        col("project_id", S(200), primary_key=True), col("kind", S(40), primary_key=True),
        col("document_ref", S(200)), col("granted_on", D), col("recorded_at", DT),
    )
    op.create_table(
        "departed_enterprises",
        col("credit_code", S(18), primary_key=True), col("county_code", S(6)), col("how", S(20)),
        col("effective_on", D), col("recorded_at", DT),
    )
    op.create_table(
        "releases",
        col("release_id", S(200), primary_key=True), col("department", S(40)), col("submitted_by", S(200)),
        col("enterprise_credit_code", S(18)), col("township_code", S(12)), col("county_code", S(6)),
        col("asset", S(20)), col("amount", B), col("reason", S(40)), col("basis", S(10)),
        col("buyback_price_fen", B, True), col("document_ref", S(200)), col("released_on", D),
        col("status", S(30)), col("status_reason", S(100)), col("digest", S(64)), col("received_at", DT),
        col("decided_at", DT, True),
    )
    op.create_index("ix_releases_enterprise", "releases", ["enterprise_credit_code"])
    op.create_index("ix_releases_county_status", "releases", ["county_code", "status"])
    op.create_table(
        "reclamation_projects",
        col("project_id", S(200), primary_key=True), col("county_code", S(6)), col("township_code", S(12)),
        col("area", B), col("registered_on", D), col("state", S(20)), col("accepted_on", D, True),
        col("accepted_area", B, True), col("document_ref", S(200)), col("digest", S(64)),
        col("registered_by", S(200)),
    )
    op.create_table(
        "lots",
        col("lot_id", S(220), primary_key=True), col("county_code", S(6)), col("asset", S(20)), col("amount", B),
        col("retired", B), col("remaining", B), col("source_kind", S(20)), col("source_ref", S(200)),
        col("township_code", S(12)), col("dated", D), col("basis", S(10)), col("buyback_price_fen", B, True),
        col("origin_id", S(200)), col("ledger_state", S(20)), col("created_at", DT),
    )
    op.create_index("ix_lots_county_asset", "lots", ["county_code", "asset", "ledger_state"])
    op.create_index("ix_lots_source", "lots", ["source_ref"])
    op.create_table(
        "quota_requests",
        col("request_id", S(200), primary_key=True), col("project_id", S(200)), col("county_code", S(6)),
        col("state", S(20)), col("requested_at", DT), col("deadline", DT), col("approvals", T),
        col("reserved_assets", T), col("reason", S(200), True), col("updated_at", DT),
        col("project_admitted", BOOL), col("project_class", S(10), True), col("tax_per_mu_fen", B, True),
        col("industry_code", S(20), True), col("park_id", S(200), True), col("digest", S(64)),
        col("requested_by", S(200)), col("reserved_at", DT, True),
    )
    op.create_index("ix_requests_state_deadline", "quota_requests", ["state", "deadline"])
    op.create_index("ix_requests_county_state", "quota_requests", ["county_code", "state"])
    op.create_index("ix_requests_project", "quota_requests", ["project_id"])
    op.create_table(
        "request_lines",
        col("request_id", S(200), primary_key=True), col("asset", S(20), primary_key=True),
        col("position", I), col("amount", B), col("approval_kind", S(40)),
    )
    op.create_table(
        "consumptions",
        col("id", B().with_variant(I, "sqlite"), primary_key=True, autoincrement=True),
        col("request_id", S(200)), col("project_id", S(200)), col("county_code", S(6)), col("lot_id", S(220)),
        col("asset", S(20)), col("source_kind", S(20)), col("source_ref", S(200)), col("township_code", S(12)),
        col("amount", B), col("amount_due_fen", B), col("allocated_at", DT),
    )
    op.create_index("ix_consumptions_lot", "consumptions", ["lot_id"])
    op.create_index("ix_consumptions_project", "consumptions", ["project_id"])
    op.create_index("ix_consumptions_request", "consumptions", ["request_id"])
    op.create_table(
        "allocations",
        col("request_id", S(200), primary_key=True), col("asset", S(20), primary_key=True),
        col("project_id", S(200)), col("county_code", S(6)), col("amount", B), col("price_fen_per_unit", B),
        col("amount_due_fen", B), col("allocated_on", D), col("allocated_at", DT),
    )
    op.create_index("ix_allocations_project", "allocations", ["project_id"])
    op.create_table(
        "rounds",
        col("round_id", S(100), primary_key=True), col("county_code", S(6)), col("seq", I), col("ran_at", DT),
        col("ran_by", S(200)), col("policy_version", I), col("inputs", T),
    )
    op.create_index("ix_rounds_county_seq", "rounds", ["county_code", "seq"], unique=True)
    op.create_table(
        "round_decisions",
        col("round_id", S(100), primary_key=True), col("rank", I, primary_key=True), col("request_id", S(200)),
        col("outcome", S(20)), col("reason", S(100)), col("ordered_by", T), col("shortfalls", T),
    )
    op.create_index("ix_round_decisions_request", "round_decisions", ["request_id"])
    op.create_table(
        "ledger_transfers",
        col("transfer_id", S(250), primary_key=True), col("purpose", S(20)), col("county_code", S(6)),
        col("asset", S(20)), col("amount", B), col("debit_account", S(200)), col("credit_account", S(200)),
        col("request_id", S(200), True), col("lot_id", S(220), True), col("state", S(20)),
        col("ledger_reason", S(100), True), col("asked_at", DT), col("answered_at", DT, True),
    )
    op.create_index("ix_ledger_transfers_request", "ledger_transfers", ["request_id"])
    op.create_index("ix_ledger_transfers_lot", "ledger_transfers", ["lot_id"])


def downgrade() -> None:
    for name in ("ledger_transfers", "round_decisions", "rounds", "allocations", "consumptions", "request_lines",
                 "quota_requests", "lots", "reclamation_projects", "releases", "departed_enterprises",
                 "project_approvals", "projects", "counties"):
        op.drop_table(name)
