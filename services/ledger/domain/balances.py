"""Balances from the journal alone: every transfer entry carries its per-account deltas, so the balance of
any account as of journal seq N (or time T) is the sum of the deltas of entries up to N (or T)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, NamedTuple

from .journal import JournalEntry

# Payload keys of a transfer entry. The debit deltas apply to payload["debit_account_id"], the credit
# deltas to payload["credit_account_id"] (a transfer never touches the other side of either account).
DEBIT_ACCOUNT = "debit_account_id"
CREDIT_ACCOUNT = "credit_account_id"
D_PENDING = "delta.debits_pending"
D_POSTED = "delta.debits_posted"
C_PENDING = "delta.credits_pending"
C_POSTED = "delta.credits_posted"


class UnknownAccountError(LookupError):
    """Asked for the balance of an account that did not exist at that point: an error, never zero."""


@dataclass(frozen=True, slots=True)
class Balance:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def net_posted(self) -> int:
        return self.credits_posted - self.debits_posted


class AccountDelta(NamedTuple):
    account_id: str
    seq: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


def entry_deltas(entry: JournalEntry) -> tuple[AccountDelta, ...]:
    """The balance changes one entry makes (empty for account_created). Storage may keep these as rows."""
    p = entry.payload
    if entry.kind == "account_created":
        return ()
    return (
        AccountDelta(p[DEBIT_ACCOUNT], entry.seq, p[D_PENDING], p[D_POSTED], 0, 0),
        AccountDelta(p[CREDIT_ACCOUNT], entry.seq, 0, 0, p[C_PENDING], p[C_POSTED]),
    )


def _included(entry: JournalEntry, upto_seq: int | None, as_of: datetime | None) -> bool:
    if upto_seq is not None and entry.seq > upto_seq:
        return False
    if as_of is not None and datetime.fromisoformat(entry.recorded_at) > as_of:
        return False
    return True


def balances_as_of(
    entries: Iterable[JournalEntry], *, upto_seq: int | None = None, as_of: datetime | None = None
) -> dict[str, Balance]:
    """Every account's balance after the entries with seq <= upto_seq and recorded_at <= as_of."""
    sums: dict[str, list[int]] = {}
    for e in entries:
        if not _included(e, upto_seq, as_of):
            continue
        if e.kind == "account_created":
            sums.setdefault(e.payload["account_id"], [0, 0, 0, 0])
            continue
        p = e.payload
        d = sums.setdefault(p[DEBIT_ACCOUNT], [0, 0, 0, 0])
        d[0] += p[D_PENDING]
        d[1] += p[D_POSTED]
        c = sums.setdefault(p[CREDIT_ACCOUNT], [0, 0, 0, 0])
        c[2] += p[C_PENDING]
        c[3] += p[C_POSTED]
    return {k: Balance(*v) for k, v in sums.items()}


def balance_as_of(
    entries: Iterable[JournalEntry], account_id: str, *, upto_seq: int | None = None, as_of: datetime | None = None
) -> Balance:
    """One account's balance as of seq/time. ``entries`` may be all entries or just the account's own
    (its account_created entry included); raises UnknownAccountError if it was not created by then."""
    created = False
    dp = dpo = cp = cpo = 0
    for e in entries:
        if not _included(e, upto_seq, as_of):
            continue
        p = e.payload
        if e.kind == "account_created":
            created = created or p["account_id"] == account_id
            continue
        if p[DEBIT_ACCOUNT] == account_id:
            dp += p[D_PENDING]
            dpo += p[D_POSTED]
        if p[CREDIT_ACCOUNT] == account_id:
            cp += p[C_PENDING]
            cpo += p[C_POSTED]
    if not created:
        raise UnknownAccountError(f"account {account_id!r} did not exist at that point")
    return Balance(dp, dpo, cp, cpo)
