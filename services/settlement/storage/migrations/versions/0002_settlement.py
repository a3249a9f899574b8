"""settlement: inputs (agreements, policies, receipts, statistics, quota proceeds), statements, history, postings

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TABLES = ['agreement_versions', 'allocation_lots', 'buybacks', 'enterprises', 'ledger_postings', 'quota_allocations', 'quota_lots', 'settled_months', 'settled_topups', 'settlement_policies', 'statement_lines', 'statement_statistics', 'statement_totals', 'statements', 'statistics_reports', 'tax_receipts']


def upgrade() -> None:
    op.create_table(
        "agreement_versions",
        sa.Column("agreement_id", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("effective_from", sa.Date, nullable=False),
        sa.Column("enterprise", sa.String(18), nullable=False),
        sa.Column("project_id", sa.String(200), nullable=True),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("destination", sa.String(200), nullable=False),
        sa.Column("remainder_to", sa.String(200), nullable=False),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("ends_on", sa.Date, nullable=False),
        sa.Column("local_shares", sa.Text, nullable=False),
        sa.Column("schedule", sa.Text, nullable=False),
        sa.Column("guaranteed_minimum_fen", sa.BigInteger, nullable=True),
        sa.Column("minimum_payer", sa.String(200), nullable=True),
        sa.Column("statistics_origin_weight", sa.Integer, nullable=True),
        sa.Column("statistics_destination_weight", sa.Integer, nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_agreement_versions_county", "agreement_versions", ["county_code", "enterprise"])
    op.create_index("ix_agreement_versions_enterprise", "agreement_versions", ["enterprise"])
    op.create_table(
        "allocation_lots",
        sa.Column("allocation_id", sa.String(200), primary_key=True),
        sa.Column("lot_id", sa.String(200), primary_key=True),
        sa.Column("enterprise", sa.String(18), nullable=True),
        sa.Column("township", sa.String(200), nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "buybacks",
        sa.Column("buyback_id", sa.String(200), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("enterprise", sa.String(18), nullable=False),
        sa.Column("lot_id", sa.String(200), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("agreed_on", sa.Date, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
    )
    op.create_index("ix_buybacks_county_on", "buybacks", ["county_code", "agreed_on"])
    op.create_table(
        "enterprises",
        sa.Column("credit_code", sa.String(18), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("known_from", sa.String(40), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_postings",
        sa.Column("transfer_id", sa.String(200), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("debit_account", sa.String(200), nullable=False),
        sa.Column("credit_account", sa.String(200), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ledger_postings_statement", "ledger_postings", ["county_code", "period", "status"])
    op.create_table(
        "quota_allocations",
        sa.Column("allocation_id", sa.String(200), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("project_id", sa.String(200), nullable=False),
        sa.Column("asset", sa.String(20), nullable=False),
        sa.Column("amount_units", sa.BigInteger, nullable=False),
        sa.Column("price", sa.String(40), nullable=False),
        sa.Column("amount_due_fen", sa.BigInteger, nullable=False),
        sa.Column("destination", sa.String(200), nullable=True),
        sa.Column("allocated_on", sa.Date, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
    )
    op.create_index("ix_quota_allocations_county_on", "quota_allocations", ["county_code", "allocated_on"])
    op.create_table(
        "quota_lots",
        sa.Column("lot_id", sa.String(200), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("asset", sa.String(20), nullable=False),
        sa.Column("source_kind", sa.String(20), nullable=False),
        sa.Column("source_ref", sa.String(200), nullable=False),
        sa.Column("township_code", sa.String(12), nullable=False),
        sa.Column("dated", sa.Date, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "settled_months",
        sa.Column("agreement_id", sa.String(200), primary_key=True),
        sa.Column("tax_kind", sa.String(40), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("tax_fen", sa.BigInteger, nullable=False),
        sa.Column("origin_share_fen", sa.BigInteger, nullable=False),
        sa.Column("settled_in", sa.String(7), nullable=False),
    )
    op.create_index("ix_settled_months_county", "settled_months", ["county_code"])
    op.create_table(
        "settled_topups",
        sa.Column("agreement_id", sa.String(200), primary_key=True),
        sa.Column("agreement_year", sa.Integer, primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("settled_in", sa.String(7), nullable=False),
    )
    op.create_index("ix_settled_topups_county", "settled_topups", ["county_code"])
    op.create_table(
        "settlement_policies",
        sa.Column("county_code", sa.String(6), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("policy_id", sa.String(200), nullable=False),
        sa.Column("compensation_bp", sa.Integer, nullable=False),
        sa.Column("township_weight", sa.Integer, nullable=False),
        sa.Column("park_weight", sa.Integer, nullable=False),
        sa.Column("fund_weight", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "statement_lines",
        sa.Column("county_code", sa.String(6), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("payer", sa.String(200), nullable=False),
        sa.Column("payee", sa.String(200), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("agreement_id", sa.String(200), nullable=True),
        sa.Column("agreement_version", sa.Integer, nullable=True),
        sa.Column("tax_kind", sa.String(40), nullable=True),
        sa.Column("month", sa.String(7), nullable=True),
        sa.Column("agreement_year", sa.Integer, nullable=True),
        sa.Column("adjusts", sa.String(40), nullable=True),
        sa.Column("measure", sa.String(40), nullable=True),
        sa.Column("allocation_id", sa.String(200), nullable=True),
        sa.Column("sources", sa.Text, nullable=False),
        sa.Column("source_count", sa.Integer, nullable=False),
        sa.Column("sources_digest", sa.String(64), nullable=False),
    )
    op.create_index("ix_statement_lines_payee_kind", "statement_lines", ["payee", "kind"])
    op.create_index("ix_statement_lines_payer", "statement_lines", ["county_code", "period", "payer"])
    op.create_table(
        "statement_statistics",
        sa.Column("county_code", sa.String(6), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("party", sa.String(200), primary_key=True),
        sa.Column("measure", sa.String(40), primary_key=True),
        sa.Column("gained", sa.BigInteger, nullable=False),
        sa.Column("ceded", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "statement_totals",
        sa.Column("county_code", sa.String(6), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("party", sa.String(200), primary_key=True),
        sa.Column("receivable_fen", sa.BigInteger, nullable=False),
        sa.Column("payable_fen", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_statement_totals_party", "statement_totals", ["county_code", "party"])
    op.create_table(
        "statements",
        sa.Column("county_code", sa.String(6), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("period_kind", sa.String(10), nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("policy_id", sa.String(200), nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("line_count", sa.Integer, nullable=False),
        sa.Column("money_total_fen", sa.BigInteger, nullable=False),
        sa.Column("unmatched_receipts", sa.Integer, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_statements_county_start", "statements", ["county_code", "period_start"])
    op.create_table(
        "statistics_reports",
        sa.Column("report_id", sa.String(200), primary_key=True),
        sa.Column("enterprise", sa.String(18), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("month_start", sa.Date, nullable=False),
        sa.Column("measure", sa.String(40), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
    )
    op.create_index("ix_statistics_reports_enterprise_month", "statistics_reports", ["enterprise", "month_start"])
    op.create_table(
        "tax_receipts",
        sa.Column("receipt_id", sa.String(200), primary_key=True),
        sa.Column("enterprise", sa.String(18), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("month_start", sa.Date, nullable=False),
        sa.Column("tax_kind", sa.String(40), nullable=False),
        sa.Column("amount_fen", sa.BigInteger, nullable=False),
        sa.Column("corrects", sa.String(200), nullable=True),
        sa.Column("replaced_amount_fen", sa.BigInteger, nullable=True),
        sa.Column("corrected_by", sa.String(200), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=True),
    )
    op.create_index("ix_tax_receipts_enterprise_month", "tax_receipts", ["enterprise", "month_start"])
    op.create_index("ix_tax_receipts_received", "tax_receipts", ["received_at"])


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
