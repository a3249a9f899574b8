"""Errors of the settlement domain: every refusal carries a machine-readable ``reason``."""
from __future__ import annotations


class SettlementDomainError(ValueError):
    """Base of every refusal in this package. ``reason`` is stable (API/DLQ use it); the message is for people."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class PartyError(SettlementDomainError):
    pass


class PeriodError(SettlementDomainError):
    pass


class AgreementError(SettlementDomainError):
    pass


class ReceiptError(SettlementDomainError):
    pass


class ProceedsError(SettlementDomainError):
    pass


class StatementError(SettlementDomainError):
    pass
