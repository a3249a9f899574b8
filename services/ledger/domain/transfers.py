"""Transfers: requests, stored records, and every outcome a request can have (TigerBeetle's names, adapted)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from hashlib import sha256
from typing import Mapping, NamedTuple


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """One debit and one credit of the same exact amount, or the second phase of a pending transfer.

    - ``pending``: reserve now (counted against balance limits), post or void later; ``timeout_seconds``
      > 0 makes it expire (0 = never).
    - ``post_pending_id``: post that pending transfer; ``amount`` 0 = its full amount, less = partial
      (the rest is released). ``void_pending_id``: release it (amount 0 or its full amount).
      For both, the account ids and code may be "" (taken from the pending transfer).
    - ``linked``: this and the next request succeed or fail together; a chain ends with linked=False.
    - ``asset``: the asset the caller means (its amount is in that asset's units); it must be the accounts'
      (for a post/void, the pending transfer's). "" = not stated: the API always states it.
    """

    id: str
    debit_account_id: str = ""
    credit_account_id: str = ""
    amount: int = 0
    code: str = ""  # why: e.g. "release", "allocation", "retirement"
    pending: bool = False
    timeout_seconds: int = 0
    post_pending_id: str = ""
    void_pending_id: str = ""
    linked: bool = False
    refs: tuple[str, ...] = ()  # event / document ids behind it
    metadata: Mapping[str, str] = field(default_factory=dict)
    asset: str = ""


class TransferStatus(StrEnum):
    posted = "posted"  # a single-phase transfer, or the record of a post (second phase)
    pending = "pending"  # reserved, awaiting post / void / expiry
    posted_pending = "posted_pending"  # a pending transfer that was posted (posted_amount says how much)
    voided = "voided"  # a pending transfer that was voided, or the record of a void (second phase)
    expired = "expired"  # a pending transfer whose timeout passed


class Transfer(NamedTuple):
    """What is stored for an accepted request (immutable; a NamedTuple because the engine makes one per
    transfer and a frozen dataclass costs ~6x more to build; use ``_replace`` / ``_asdict``).

    ``amount`` is the effective amount (a post with amount 0 stores the pending amount); accounts and code
    of a second phase are the pending transfer's when the request left them empty."""

    id: str
    debit_account_id: str
    credit_account_id: str
    asset: str
    amount: int
    code: str
    pending: bool
    timeout_seconds: int
    post_pending_id: str
    void_pending_id: str
    linked: bool
    refs: tuple[str, ...]
    metadata: Mapping[str, str]
    timestamp: datetime
    status: TransferStatus
    expires_at: datetime | None = None  # pending with a timeout only
    posted_amount: int = 0  # pending only: how much its post posted (0 when voided/expired)
    resolved_by: str = ""  # pending only: id of the post/void transfer ("" while pending or when expired)
    resolved_at: datetime | None = None


class TransferResult(StrEnum):
    ok = "ok"
    exists = "exists"
    exists_with_different_flags = "exists_with_different_flags"  # pending / linked / post / void
    exists_with_different_pending_id = "exists_with_different_pending_id"
    exists_with_different_debit_account_id = "exists_with_different_debit_account_id"
    exists_with_different_credit_account_id = "exists_with_different_credit_account_id"
    exists_with_different_asset = "exists_with_different_asset"
    exists_with_different_amount = "exists_with_different_amount"
    exists_with_different_timeout = "exists_with_different_timeout"
    exists_with_different_code = "exists_with_different_code"
    exists_with_different_refs = "exists_with_different_refs"
    exists_with_different_metadata = "exists_with_different_metadata"
    id_must_not_be_empty = "id_must_not_be_empty"
    flags_are_mutually_exclusive = "flags_are_mutually_exclusive"  # pending / post / void: at most one
    timeout_must_not_be_negative = "timeout_must_not_be_negative"
    timeout_reserved_for_pending_transfer = "timeout_reserved_for_pending_transfer"
    amount_must_not_be_negative = "amount_must_not_be_negative"
    amount_must_not_be_zero = "amount_must_not_be_zero"  # single-phase and pending (not post/void)
    accounts_must_be_different = "accounts_must_be_different"
    debit_account_not_found = "debit_account_not_found"
    credit_account_not_found = "credit_account_not_found"
    accounts_must_have_the_same_asset = "accounts_must_have_the_same_asset"
    asset_differs_from_accounts = "asset_differs_from_accounts"  # the stated asset is not the accounts' (post/void: the pending's)
    debit_account_closed = "debit_account_closed"
    credit_account_closed = "credit_account_closed"
    overflows_debits = "overflows_debits"  # debits_pending + debits_posted would pass MAX_BALANCE
    overflows_credits = "overflows_credits"
    exceeds_credits = "exceeds_credits"
    exceeds_debits = "exceeds_debits"
    pending_transfer_not_found = "pending_transfer_not_found"
    pending_transfer_not_pending = "pending_transfer_not_pending"
    pending_transfer_has_different_accounts = "pending_transfer_has_different_accounts"
    pending_transfer_already_posted = "pending_transfer_already_posted"
    pending_transfer_already_voided = "pending_transfer_already_voided"
    pending_transfer_expired = "pending_transfer_expired"
    exceeds_pending_transfer_amount = "exceeds_pending_transfer_amount"
    pending_transfer_has_different_amount = "pending_transfer_has_different_amount"  # void with a partial amount
    linked_event_failed = "linked_event_failed"
    linked_event_chain_open = "linked_event_chain_open"


# Balances fit a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT).
MAX_BALANCE = 2**63 - 1

SUCCESS = frozenset({TransferResult.ok, TransferResult.exists})
# Outcomes that do not reserve the id as failed: it belongs to an existing transfer, was empty, or the
# failure was the chain's, not this request's.
NOT_RECORDED = frozenset(
    {r for r in TransferResult if r.name.startswith("exists")}
    | {TransferResult.ok, TransferResult.id_must_not_be_empty, TransferResult.linked_event_failed,
       TransferResult.linked_event_chain_open}
)


def request_fingerprint(req: TransferRequest) -> str:
    """sha256 of the request's canonical JSON: tells a retried body from a different one."""
    doc = {
        "id": req.id,
        "debit_account_id": req.debit_account_id,
        "credit_account_id": req.credit_account_id,
        "amount": req.amount,
        "code": req.code,
        "pending": req.pending,
        "timeout_seconds": req.timeout_seconds,
        "post_pending_id": req.post_pending_id,
        "void_pending_id": req.void_pending_id,
        "linked": req.linked,
        "refs": list(req.refs),
        "metadata": dict(req.metadata),
        "asset": req.asset,
    }
    return sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class FailedTransfer:
    """An id whose first attempt failed: it stays failed with the same result, whatever is resubmitted."""

    id: str
    fingerprint: str
    result: TransferResult
    timestamp: datetime


class TransferOutcome(NamedTuple):
    index: int
    id: str
    result: TransferResult
