"""Accounts: who holds how much of one asset, with TigerBeetle-style balance flags checked at write time."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Iterable, Mapping, NamedTuple

from .assets import DEFAULT_ASSETS, Asset
from .journal import JournalEntry, chain_drafts, iso_utc
from .view import LedgerView

MAX_ID_LENGTH = 128

# address kind -> pattern of what follows "kind:"; every kind may add "/sub" segments (e.g. county:320612/pool)
_SEG = r"(?:/[^\s/:\x00-\x1f]+)*"
_ANY = r"[^\s/:\x00-\x1f]+"
_ADDRESS_BODY = {
    "county": re.compile(r"[0-9]{6}" + _SEG),
    "township": re.compile(r"[0-9]{9}(?:[0-9]{3})?" + _SEG),
    "park": re.compile(_ANY + _SEG),
    "enterprise": re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}" + _SEG),  # unified social credit code charset
    "project": re.compile(_ANY + _SEG),
    "retired": re.compile(_ANY + _SEG),
    "external": re.compile(_ANY + _SEG),
    "issuance": re.compile(_ANY + _SEG),
}
ADDRESS_KINDS = frozenset(_ADDRESS_BODY)
# Quota enters and money leaves the books through these: they are the only ones allowed to go negative.
UNCONSTRAINED_KINDS = frozenset({"external", "issuance"})
_ID = re.compile(r"[^\s\x00-\x1f\x7f]+")
# GET /v1/accounts/<id>/balance (/entries, /pending) would read an account whose id ends so as another's
# balance (entries, holds): such ids cannot be addressed, so they are not opened
ROUTE_SUFFIXES = ("/balance", "/entries", "/pending")


def address_kind(address: str) -> str | None:
    """'enterprise:91320612MA1W2B3C4M' -> 'enterprise'; None for a malformed address."""
    if not isinstance(address, str):
        return None
    kind, sep, body = address.partition(":")
    pattern = _ADDRESS_BODY.get(kind)
    if not sep or pattern is None or not pattern.fullmatch(body):
        return None
    return kind


@dataclass(frozen=True, slots=True)
class AccountFlags:
    debits_must_not_exceed_credits: bool = False  # the balance (credits - debits) never goes below zero
    credits_must_not_exceed_debits: bool = False  # the mirror, for accounts that hold debit balances
    closed: bool = False  # takes no new transfers

    def as_payload(self) -> dict[str, int]:
        return {
            "flags.debits_must_not_exceed_credits": int(self.debits_must_not_exceed_credits),
            "flags.credits_must_not_exceed_debits": int(self.credits_must_not_exceed_debits),
            "flags.closed": int(self.closed),
        }


NO_CONSTRAINT = AccountFlags()
NOT_NEGATIVE = AccountFlags(debits_must_not_exceed_credits=True)


def default_flags(address: str) -> AccountFlags:
    return NO_CONSTRAINT if address_kind(address) in UNCONSTRAINED_KINDS else NOT_NEGATIVE


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    asset: str
    address: str
    flags: AccountFlags
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    created_at: datetime | None = None

    @property
    def kind(self) -> str | None:
        return address_kind(self.address)

    @property
    def net_posted(self) -> int:
        """credits_posted - debits_posted: what a holder account holds."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What may still be debited from a debits_must_not_exceed_credits account (pending counted)."""
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(frozen=True, slots=True)
class NewAccount:
    id: str
    asset: str
    address: str
    flags: AccountFlags | None = None  # None: default_flags(address)


class AccountResult(StrEnum):
    ok = "ok"
    exists = "exists"
    exists_with_different_flags = "exists_with_different_flags"
    exists_with_different_asset = "exists_with_different_asset"
    exists_with_different_address = "exists_with_different_address"
    id_must_not_be_empty = "id_must_not_be_empty"
    id_invalid = "id_invalid"  # whitespace/control characters or longer than MAX_ID_LENGTH
    id_reserved_suffix = "id_reserved_suffix"  # ends with one of ROUTE_SUFFIXES
    asset_unknown = "asset_unknown"
    address_invalid = "address_invalid"
    flags_are_mutually_exclusive = "flags_are_mutually_exclusive"


class AccountOutcome(NamedTuple):
    index: int
    id: str
    result: AccountResult


@dataclass(slots=True)
class AccountBatchOutcome:
    results: list[AccountOutcome]
    accounts: list[Account]  # new accounts to insert, in order
    journal: list[JournalEntry]  # one account_created entry per new account

    @property
    def ok(self) -> bool:
        return all(r.result in (AccountResult.ok, AccountResult.exists) for r in self.results)


def _check_id(req: NewAccount) -> AccountResult | None:
    if not req.id:
        return AccountResult.id_must_not_be_empty
    if not isinstance(req.id, str) or len(req.id) > MAX_ID_LENGTH or not _ID.fullmatch(req.id):
        return AccountResult.id_invalid
    if req.id.endswith(ROUTE_SUFFIXES):
        return AccountResult.id_reserved_suffix
    return None


def _resolve(existing: Account, req: NewAccount) -> AccountResult:
    flags = req.flags if req.flags is not None else default_flags(req.address)
    if existing.flags != flags:
        return AccountResult.exists_with_different_flags
    if existing.asset != req.asset:
        return AccountResult.exists_with_different_asset
    if existing.address != req.address:
        return AccountResult.exists_with_different_address
    return AccountResult.exists


def create_accounts(
    view: LedgerView, requests: Iterable[NewAccount], now: datetime, assets: Mapping[str, Asset] = DEFAULT_ASSETS
) -> AccountBatchOutcome:
    """Create accounts idempotently by caller-chosen id. An existing id with identical fields is 'exists';
    a differing field is named. Each new account gets an account_created journal entry."""
    recorded_at = iso_utc(now)
    made: dict[str, Account] = {}
    results: list[AccountOutcome] = []
    drafts: list[tuple[str, str, dict]] = []
    for i, req in enumerate(requests):
        bad = _check_id(req)
        if bad is None:
            existing = made.get(req.id) or view.account(req.id)
            if existing is not None:
                bad = _resolve(existing, req)
            elif req.asset not in assets:
                bad = AccountResult.asset_unknown
            elif address_kind(req.address) is None:
                bad = AccountResult.address_invalid
            else:
                flags = req.flags if req.flags is not None else default_flags(req.address)
                if flags.debits_must_not_exceed_credits and flags.credits_must_not_exceed_debits:
                    bad = AccountResult.flags_are_mutually_exclusive
                else:
                    acct = Account(req.id, req.asset, req.address, flags, 0, 0, 0, 0, now)
                    made[req.id] = acct
                    payload = {"account_id": acct.id, "asset": acct.asset, "address": acct.address}
                    payload.update(flags.as_payload())
                    drafts.append(("account_created", "", payload))
        results.append(AccountOutcome(i, req.id, bad or AccountResult.ok))
    head = view.journal_head()
    return AccountBatchOutcome(results, list(made.values()), chain_drafts(head.hash, head.seq, drafts, recorded_at))


def create_account(
    view: LedgerView, request: NewAccount, now: datetime, assets: Mapping[str, Asset] = DEFAULT_ASSETS
) -> AccountBatchOutcome:
    return create_accounts(view, [request], now, assets)
