"""Pure domain of the settlement service: no I/O, no clock, no frameworks. Money is integer fen inside.

Modules: ``parties`` (who), ``periods`` (when), ``agreements`` (revenue-sharing terms and versions),
``receipts`` (tax receipts, statistics reports), ``proceeds`` (quota allocations, buy-backs, policy),
``history`` (what finalized statements settled; which statement takes an event), ``rounding`` (every rounding
rule, written once), ``lines`` and ``statement`` (compute, hash, finalize), ``export`` (rows, documents).
"""
from .agreements import CIT, VAT, AgreementBook, RevenueSharingAgreement, ScheduleStep
from .errors import (
    AgreementError,
    PartyError,
    PeriodError,
    ProceedsError,
    ReceiptError,
    SettlementDomainError,
    StatementError,
)
from .history import ClosedPeriod, SettledMonth, SettledStatistic, SettledTopup, SettlementHistory
from .lines import LineKind, PartyTotal, StatementLine, StatisticsTotal
from .parties import Party, PartyKind, ledger_account
from .periods import Period, PeriodKind, ensure_next_to_close, ensure_period_ended
from .proceeds import BuyBack, ConsumedLot, PolicyBook, QuotaAllocation, SettlementPolicy, split_proceeds
from .receipts import StatisticsReport, TaxReceipt, resolve_correction, validate_receipt, validate_statistics_report
from .statement import Posting, Statement, compute_statement, finalize

__all__ = [
    "CIT", "VAT", "AgreementBook", "RevenueSharingAgreement", "ScheduleStep",
    "AgreementError", "PartyError", "PeriodError", "ProceedsError", "ReceiptError", "SettlementDomainError",
    "StatementError",
    "ClosedPeriod", "SettledMonth", "SettledStatistic", "SettledTopup", "SettlementHistory",
    "LineKind", "PartyTotal", "StatementLine", "StatisticsTotal",
    "Party", "PartyKind", "ledger_account",
    "Period", "PeriodKind", "ensure_next_to_close", "ensure_period_ended",
    "BuyBack", "ConsumedLot", "PolicyBook", "QuotaAllocation", "SettlementPolicy", "split_proceeds",
    "StatisticsReport", "TaxReceipt", "resolve_correction", "validate_receipt", "validate_statistics_report",
    "Posting", "Statement", "compute_statement", "finalize",
]
