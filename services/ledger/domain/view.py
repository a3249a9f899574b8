"""What the pure engine needs from storage: a read-only view of accounts, transfers and the journal head.

The storage layer implements this over its tables (loading/locking the touched rows first); tests use
``memory.MemoryLedger``. The engine never writes through the view: it returns an outcome to persist.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from .accounts import Account
    from .transfers import FailedTransfer, Transfer

GENESIS_HASH = "0" * 64


class JournalHead(NamedTuple):
    seq: int  # last appended seq, 0 when the journal is empty
    hash: str  # its hash, GENESIS_HASH when empty


EMPTY_HEAD = JournalHead(0, GENESIS_HASH)


class LedgerView(Protocol):
    def account(self, account_id: str) -> "Account | None": ...

    def transfer(self, transfer_id: str) -> "Transfer | FailedTransfer | None": ...

    def journal_head(self) -> JournalHead: ...
