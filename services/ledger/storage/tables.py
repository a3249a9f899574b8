"""Tables of the ledger. Only the ledger process writes them; other services send it events.

``journal`` is append-only (never updated or deleted); ``accounts`` and ``transfers`` are its current-state
projections, kept in the same transaction. Each journal row carries the balance deltas of its transfer as
columns, so a balance as of any seq or time is one indexed sum.
"""
from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text, text

from shared.messaging_tables import add_messaging_tables

metadata = MetaData()
_PENDING = {"postgresql_where": text("status = 'pending'"), "sqlite_where": text("status = 'pending'")}
messaging = add_messaging_tables(metadata)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("asset", String(20), nullable=False),
    Column("address", String(200), nullable=False),
    Column("debits_must_not_exceed_credits", Boolean, nullable=False),
    Column("credits_must_not_exceed_debits", Boolean, nullable=False),
    Column("closed", Boolean, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_seq", BigInteger, nullable=False),
    Index("ix_accounts_address", "address"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("debit_account_id", String(200), nullable=False),
    Column("credit_account_id", String(200), nullable=False),
    Column("asset", String(20), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("code", String(100), nullable=False),
    Column("pending", Boolean, nullable=False),
    Column("timeout_seconds", BigInteger, nullable=False),
    Column("post_pending_id", String(200), nullable=False),
    Column("void_pending_id", String(200), nullable=False),
    Column("linked", Boolean, nullable=False),
    Column("refs", Text, nullable=False),  # JSON list
    Column("metadata", Text, nullable=False),  # JSON object
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("posted_amount", BigInteger, nullable=False),
    Column("resolved_by", String(200), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    # Only pending transfers are looked up by account or due time: partial indexes leave the posted ones (nearly
    # all of them) out: a posted transfer writes its primary key only.
    Index("ix_transfers_pending_due", "expires_at", **_PENDING),
    Index("ix_transfers_pending_debit", "debit_account_id", **_PENDING),
    Index("ix_transfers_pending_credit", "credit_account_id", **_PENDING),
)

failed_transfers = Table(
    "failed_transfers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("result", String(60), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
)

journal = Table(
    "journal",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("kind", String(30), nullable=False),
    Column("transfer_id", String(200), nullable=False),
    Column("account_id", String(200), nullable=True),  # account_created only
    Column("debit_account_id", String(200), nullable=True),
    Column("credit_account_id", String(200), nullable=True),
    Column("d_debits_pending", BigInteger, nullable=False),
    Column("d_debits_posted", BigInteger, nullable=False),
    Column("d_credits_pending", BigInteger, nullable=False),
    Column("d_credits_posted", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),  # canonical JSON, covered by the hash
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_journal_debit", "debit_account_id", "seq"),
    Index("ix_journal_credit", "credit_account_id", "seq"),
    Index("ix_journal_recorded_at", "recorded_at"),
)

# One row: the journal's head. Locking it serializes appends to the single hash chain.
journal_head = Table(
    "journal_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)
