"""Tables of the settlement service. Only this service's process reads or writes them.

Inputs (agreements, policies, receipts, statistics, quota proceeds) are append-only facts with the time
settlement learnt of them (``received_at``): that time, against each finalized statement's cut-off, decides which
statement takes a fact, so a re-run gives the same statement. Statements keep their lines and party totals; a
finalized one is never updated. ``settled_months`` / ``settled_topups`` / ``settled_statistics`` are the history the
next statement needs to turn late receipts into adjustments and late statistics reports into differences of the
recomputed split. Money is integer fen (BigInteger) everywhere.
"""
from sqlalchemy import BigInteger, Column, Date, DateTime, Index, Integer, MetaData, String, Table, Text

from shared.messaging_tables import add_messaging_tables

metadata = MetaData()
messaging = add_messaging_tables(metadata)

# -- inputs ------------------------------------------------------------------------------------------------

enterprises = Table(  # who may have tax receipts: the register (assessment), agreements and quota lots
    "enterprises",
    metadata,
    Column("credit_code", String(18), primary_key=True),
    Column("county_code", String(6), nullable=True),
    Column("name", String(200), nullable=True),
    Column("known_from", String(40), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

agreement_versions = Table(
    "agreement_versions",
    metadata,
    Column("agreement_id", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("enterprise", String(18), nullable=False),
    Column("project_id", String(200), nullable=True),
    Column("origin", String(200), nullable=False),
    Column("destination", String(200), nullable=False),
    Column("remainder_to", String(200), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("local_shares", Text, nullable=False),  # JSON {"VAT": 5000, ...} basis points
    Column("schedule", Text, nullable=False),  # JSON [[first_year, last_year|null, origin_w, destination_w], ...]
    Column("guaranteed_minimum_fen", BigInteger, nullable=True),
    Column("minimum_payer", String(200), nullable=True),
    Column("statistics_origin_weight", Integer, nullable=True),
    Column("statistics_destination_weight", Integer, nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("recorded_by", String(200), nullable=False),
    Index("ix_agreement_versions_county", "county_code", "enterprise"),
    Index("ix_agreement_versions_enterprise", "enterprise"),
)

settlement_policies = Table(
    "settlement_policies",
    metadata,
    Column("county_code", String(6), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("policy_id", String(200), nullable=False),
    Column("compensation_bp", Integer, nullable=False),
    Column("township_weight", Integer, nullable=False),
    Column("park_weight", Integer, nullable=False),
    Column("fund_weight", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("recorded_by", String(200), nullable=False),
    # the 1st of the first month whose allocations the version splits; NULL: from the beginning (migration 0007)
    Column("effective_from", Date, nullable=True),
)

tax_receipts = Table(
    "tax_receipts",
    metadata,
    Column("receipt_id", String(200), primary_key=True),
    Column("enterprise", String(18), nullable=False),
    Column("month", String(7), nullable=False),  # YYYY-MM, the tax period
    Column("month_start", Date, nullable=False),
    Column("tax_kind", String(40), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("corrects", String(200), nullable=True),
    Column("replaced_amount_fen", BigInteger, nullable=True),
    Column("corrected_by", String(200), nullable=True),  # set once: a receipt is corrected at most once
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("channel", String(20), nullable=False),  # http | import | kafka
    Column("event_id", String(200), nullable=True),
    Index("ix_tax_receipts_enterprise_month", "enterprise", "month_start"),
    Index("ix_tax_receipts_received", "received_at"),
)

statistics_reports = Table(
    "statistics_reports",
    metadata,
    Column("report_id", String(200), primary_key=True),
    Column("enterprise", String(18), nullable=False),
    Column("month", String(7), nullable=False),
    Column("month_start", Date, nullable=False),
    Column("measure", String(40), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("channel", String(20), nullable=False),
    Index("ix_statistics_reports_enterprise_month", "enterprise", "month_start"),
)

waiting_inputs = Table(  # receipts and statistics from the intake topic whose enterprise was not known yet
    "waiting_inputs",
    metadata,
    Column("kind", String(20), primary_key=True),  # tax_receipt | statistics_report
    Column("input_id", String(200), primary_key=True),
    Column("enterprise", String(18), nullable=False),
    Column("payload", Text, nullable=False),  # the event's data as it came, applied when the enterprise is known
    Column("event_id", String(200), nullable=True),
    Column("waiting_since", DateTime(timezone=True), nullable=False),
    Column("refused_reason", String(60), nullable=True),  # set if applying it failed once the enterprise was known
    Column("refused_message", Text, nullable=True),
    Column("refused_at", DateTime(timezone=True), nullable=True),
    Index("ix_waiting_inputs_enterprise", "enterprise"),
)

quota_lots = Table(  # provenance of pool lots (LotCreated), for reference and the enterprise register
    "quota_lots",
    metadata,
    Column("lot_id", String(200), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("asset", String(20), nullable=False),
    Column("source_kind", String(20), nullable=False),
    Column("source_ref", String(200), nullable=False),
    Column("township_code", String(12), nullable=False),
    Column("dated", Date, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

quota_allocations = Table(
    "quota_allocations",
    metadata,
    Column("allocation_id", String(200), primary_key=True),  # <request id>:<asset>
    Column("county_code", String(6), nullable=False),
    Column("request_id", String(200), nullable=False),
    Column("project_id", String(200), nullable=False),
    Column("asset", String(20), nullable=False),
    Column("amount_units", BigInteger, nullable=False),  # at ALLOCATION_UNIT_SCALE
    Column("price", String(40), nullable=False),
    Column("amount_due_fen", BigInteger, nullable=False),
    Column("destination", String(200), nullable=True),
    Column("allocated_on", Date, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(200), nullable=False),
    Index("ix_quota_allocations_county_on", "county_code", "allocated_on"),
)

allocation_lots = Table(
    "allocation_lots",
    metadata,
    Column("allocation_id", String(200), primary_key=True),
    Column("lot_id", String(200), primary_key=True),
    Column("enterprise", String(18), nullable=True),  # None: the lot earns no compensation (reclaimed land, an upgrade's savings)
    Column("township", String(200), nullable=False),
    Column("units", BigInteger, nullable=False),
)

buybacks = Table(
    "buybacks",
    metadata,
    Column("buyback_id", String(200), primary_key=True),  # buyback:<lot id>: a paid lot is bought back once
    Column("county_code", String(6), nullable=False),
    Column("enterprise", String(18), nullable=False),
    Column("lot_id", String(200), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("agreed_on", Date, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(200), nullable=False),
    Index("ix_buybacks_county_on", "county_code", "agreed_on"),
)

# -- statements --------------------------------------------------------------------------------------------

statements = Table(
    "statements",
    metadata,
    Column("county_code", String(6), primary_key=True),
    Column("period", String(7), primary_key=True),  # 2026-03 | 2026-Q1 | 2026
    Column("period_kind", String(10), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("status", String(10), nullable=False),  # draft | finalized
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("finalized_at", DateTime(timezone=True), nullable=True),
    Column("content_hash", String(64), nullable=False),
    Column("policy_id", String(200), nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("money_total_fen", BigInteger, nullable=False),
    Column("unmatched_receipts", Integer, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("computed_by", String(200), nullable=False),
    Index("ix_statements_county_start", "county_code", "period_start"),
)

statement_lines = Table(
    "statement_lines",
    metadata,
    Column("county_code", String(6), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("payer", String(200), nullable=False),
    Column("payee", String(200), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("agreement_id", String(200), nullable=True),
    Column("agreement_version", Integer, nullable=True),
    Column("tax_kind", String(40), nullable=True),
    Column("month", String(7), nullable=True),
    Column("agreement_year", Integer, nullable=True),
    Column("adjusts", String(40), nullable=True),
    Column("measure", String(40), nullable=True),
    Column("allocation_id", String(200), nullable=True),
    Column("sources", Text, nullable=False),  # JSON list (capped; count and digest cover all)
    Column("source_count", Integer, nullable=False),
    Column("sources_digest", String(64), nullable=False),
    # Few indexes: a county-year statement writes 500,000+ lines. Filters by kind or agreement scan one statement
    # in line order (the primary key); a party filter uses these two; the second also finds an enterprise's
    # compensation across counties.
    Index("ix_statement_lines_payer", "county_code", "period", "payer"),
    Index("ix_statement_lines_payee_kind", "payee", "kind"),
)

statement_totals = Table(
    "statement_totals",
    metadata,
    Column("county_code", String(6), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("party", String(200), primary_key=True),
    Column("receivable_fen", BigInteger, nullable=False),
    Column("payable_fen", BigInteger, nullable=False),
    Index("ix_statement_totals_party", "county_code", "party"),
)

statement_statistics = Table(
    "statement_statistics",
    metadata,
    Column("county_code", String(6), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("party", String(200), primary_key=True),
    Column("measure", String(40), primary_key=True),
    Column("gained", BigInteger, nullable=False),
    Column("ceded", BigInteger, nullable=False),
)

settled_months = Table(
    "settled_months",
    metadata,
    Column("agreement_id", String(200), primary_key=True),
    Column("tax_kind", String(40), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("tax_fen", BigInteger, nullable=False),
    Column("origin_share_fen", BigInteger, nullable=False),
    Column("settled_in", String(7), nullable=False),  # the period of the statement that settled it last
    Index("ix_settled_months_county", "county_code"),
)

# Statistics (value added, output: not money) as settled so far per agreement, measure and month: the month's
# figure and the origin's part of it, so a late report changes the part by the difference (rounding rule 6).
settled_statistics = Table(
    "settled_statistics",
    metadata,
    Column("agreement_id", String(200), primary_key=True),
    Column("measure", String(40), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("origin_part", BigInteger, nullable=False),
    Column("settled_in", String(7), nullable=False),  # the period of the statement that settled it last
    Index("ix_settled_statistics_county", "county_code"),
)

settled_topups = Table(
    "settled_topups",
    metadata,
    Column("agreement_id", String(200), primary_key=True),
    Column("agreement_year", Integer, primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("payer", String(200)),  # who paid it to whom (NULL: settled before these were kept)
    Column("payee", String(200)),
    Column("settled_in", String(7), nullable=False),
    Index("ix_settled_topups_county", "county_code"),
)

ledger_postings = Table(  # what finalization asked the ledger to post, and what the ledger answered
    "ledger_postings",
    metadata,
    Column("transfer_id", String(200), primary_key=True),
    Column("county_code", String(6), nullable=False),
    Column("period", String(7), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("debit_account", String(200), nullable=False),
    Column("credit_account", String(200), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),  # requested | posted | rejected
    Column("reason", String(100), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_ledger_postings_statement", "county_code", "period", "status"),
)
