"""Tax receipts (from 税务局) and statistics reports, the facts revenue sharing is computed from.

A correction is a new receipt naming the receipt it replaces (``corrects``); its amount is the new full amount.
What a statement needs is the delta, so the correction also carries ``replaced_amount_fen`` — the amount of the
receipt it replaces. The service fills it at intake with ``resolve_correction`` (it has the original in its
database); that is what lets a statement be computed in one streaming pass without remembering every receipt.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Collection

from shared.china_time import cst_date

from .agreements import check_tax_kind
from .errors import AgreementError, ReceiptError
from .limits import implausible
from .periods import Period, PeriodKind

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]*$")


def _plausible(what: str, fen: int) -> None:
    if (problem := implausible(what, fen)) is not None:
        raise ReceiptError("amount_implausible", problem)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True, kw_only=True, slots=True)
class TaxReceipt:
    receipt_id: str
    enterprise: str  # credit code
    month: Period  # the tax period the tax belongs to (a month), not the day it was paid
    tax_kind: str
    amount_fen: int
    received_at: datetime  # when settlement learnt of it (timezone-aware); decides which statement takes it
    corrects: str | None = None
    replaced_amount_fen: int | None = None  # amount of the receipt named by ``corrects``

    @property
    def delta_fen(self) -> int:
        """What this receipt changes in its month's total."""
        return self.amount_fen - (self.replaced_amount_fen or 0)

    @property
    def is_correction(self) -> bool:
        return self.corrects is not None


@dataclass(frozen=True, kw_only=True)
class StatisticsReport:
    """A statistic (value added, output, in fen) of one enterprise for one month; shared like tax but not money."""

    report_id: str
    enterprise: str
    month: Period
    measure: str  # "value_added" | "output"
    amount_fen: int
    received_at: datetime


MEASURES = ("value_added", "output")


def _check_common(kind: str, ident: str, enterprise: str, month: Period, received_at: datetime,
                  now: datetime, known_enterprises: Collection[str] | None) -> None:
    if not isinstance(ident, str) or not _ID_RE.match(ident):
        raise ReceiptError("invalid_id", f"{kind} id {ident!r} is not a valid id")
    if not isinstance(month, Period) or month.kind is not PeriodKind.MONTH:
        raise ReceiptError("period_not_a_month", f"{kind} {ident}: the tax period must be a month")
    if not isinstance(received_at, datetime) or received_at.tzinfo is None:
        raise ReceiptError("received_at_not_timezone_aware", f"{kind} {ident}: received_at must be timezone-aware")
    if now.tzinfo is None:
        raise ReceiptError("now_not_timezone_aware", "now must be timezone-aware")
    if month.start > cst_date(now):
        raise ReceiptError("period_in_future", f"{kind} {ident}: period {month.label} has not started yet ({cst_date(now)})")
    if received_at > now:
        raise ReceiptError("received_in_future", f"{kind} {ident}: received_at {received_at} is after now {now}")
    if known_enterprises is not None and enterprise not in known_enterprises:
        raise ReceiptError("unknown_enterprise", f"{kind} {ident}: enterprise {enterprise!r} is not known")


def validate_receipt(receipt: TaxReceipt, *, now: datetime, known_enterprises: Collection[str] | None = None) -> TaxReceipt:
    """Refuse a receipt that cannot be settled; returns it unchanged when it is fine. ``now`` is passed in."""
    _check_common("receipt", receipt.receipt_id, receipt.enterprise, receipt.month, receipt.received_at, now,
                  known_enterprises)
    try:
        check_tax_kind(receipt.tax_kind)
    except AgreementError as exc:
        raise ReceiptError(exc.reason, f"receipt {receipt.receipt_id}: {exc}") from None
    if not _is_int(receipt.amount_fen):
        raise ReceiptError("amount_not_integer_fen", f"receipt {receipt.receipt_id}: amount must be integer fen")
    if receipt.amount_fen < 0:
        raise ReceiptError("negative_tax", f"receipt {receipt.receipt_id}: tax amount {receipt.amount_fen} is negative")
    _plausible(f"receipt {receipt.receipt_id}", receipt.amount_fen)
    if receipt.corrects is None:
        if receipt.amount_fen == 0:  # a correction may bring a receipt to zero; an original of zero means nothing
            raise ReceiptError("zero_tax", f"receipt {receipt.receipt_id}: tax amount is zero")
        if receipt.replaced_amount_fen is not None:
            raise ReceiptError("replaced_amount_without_correction", f"receipt {receipt.receipt_id} corrects nothing")
    else:
        if receipt.corrects == receipt.receipt_id:
            raise ReceiptError("correction_of_itself", f"receipt {receipt.receipt_id} corrects itself")
        if not _is_int(receipt.replaced_amount_fen) or receipt.replaced_amount_fen < 0:
            raise ReceiptError(
                "correction_not_resolved",
                f"receipt {receipt.receipt_id}: a correction needs the replaced amount (use resolve_correction)",
            )
    return receipt


def resolve_correction(correction: TaxReceipt, original: TaxReceipt, *, already_corrected: bool = False) -> TaxReceipt:
    """Fill ``replaced_amount_fen`` from the receipt being replaced, after checking they are about the same tax.

    ``original`` is the latest receipt of the chain (a correction may correct a correction); a receipt already
    corrected by another one cannot be corrected again (correct the newest instead)."""
    rid = correction.receipt_id
    if correction.corrects != original.receipt_id:
        raise ReceiptError("correction_target_mismatch", f"receipt {rid} corrects {correction.corrects}, not {original.receipt_id}")
    if already_corrected:
        raise ReceiptError("already_corrected", f"receipt {original.receipt_id} was already corrected; correct the newest receipt")
    for name in ("enterprise", "month", "tax_kind"):
        if getattr(correction, name) != getattr(original, name):
            raise ReceiptError("correction_mismatch", f"receipt {rid} differs from {original.receipt_id} in {name}")
    if correction.received_at < original.received_at:
        raise ReceiptError("correction_before_original", f"receipt {rid} was received before the receipt it corrects")
    return replace(correction, replaced_amount_fen=original.amount_fen)


def validate_statistics_report(report: StatisticsReport, *, now: datetime,
                               known_enterprises: Collection[str] | None = None) -> StatisticsReport:
    _check_common("statistics report", report.report_id, report.enterprise, report.month, report.received_at, now,
                  known_enterprises)
    if report.measure not in MEASURES:
        raise ReceiptError("unknown_measure", f"statistics report {report.report_id}: measure must be one of {MEASURES}")
    if not _is_int(report.amount_fen) or report.amount_fen < 0:
        raise ReceiptError("negative_statistic", f"statistics report {report.report_id}: amount must be integer fen >= 0")
    _plausible(f"statistics report {report.report_id}", report.amount_fen)
    return report
