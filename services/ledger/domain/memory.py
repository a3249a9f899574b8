"""An in-memory ledger: the LedgerView the tests use, and the reference for how storage persists outcomes."""
from __future__ import annotations

from datetime import datetime

from .accounts import Account, AccountBatchOutcome
from .engine import BatchOutcome, ExpiryOutcome
from .journal import JournalEntry
from .transfers import FailedTransfer, Transfer, TransferStatus
from .view import EMPTY_HEAD, JournalHead


class MemoryLedger:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.transfers: dict[str, Transfer | FailedTransfer] = {}
        self.journal: list[JournalEntry] = []
        self._head = EMPTY_HEAD

    # LedgerView
    def account(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)

    def transfer(self, transfer_id: str) -> Transfer | FailedTransfer | None:
        return self.transfers.get(transfer_id)

    def journal_head(self) -> JournalHead:
        return self._head

    # persisting an outcome: what a storage unit of work does in one transaction
    def apply(self, outcome: BatchOutcome | AccountBatchOutcome | ExpiryOutcome) -> None:
        self._append(outcome.journal)
        if isinstance(outcome, AccountBatchOutcome):
            for a in outcome.accounts:
                self.accounts[a.id] = a
            return
        if isinstance(outcome, BatchOutcome):
            for t in outcome.transfers:
                self.transfers[t.id] = t
            for f in outcome.failures:
                self.transfers[f.id] = f
            for t in outcome.updated_transfers:
                self.transfers[t.id] = t
        else:
            for t in outcome.expired:
                self.transfers[t.id] = t
        for a in outcome.accounts:
            self.accounts[a.id] = a

    def _append(self, entries: list[JournalEntry]) -> None:
        if not entries:
            return
        first = entries[0]
        if first.seq != self._head.seq + 1 or first.prev_hash != self._head.hash:
            raise ValueError("journal entries do not continue the head: outcome computed on a stale view")
        self.journal.extend(entries)
        self._head = JournalHead(entries[-1].seq, entries[-1].hash)

    def due_pending(self, now: datetime) -> list[Transfer]:
        """Pending transfers whose timeout has passed (what storage selects for expire_pending)."""
        return [
            t
            for t in self.transfers.values()
            if type(t) is Transfer and t.status is TransferStatus.pending and t.expires_at is not None
            and t.expires_at <= now
        ]
