"""The ledger's pure domain: TigerBeetle-style accounts and transfers, a hash-chained journal, and balances
as of any journal seq. No I/O, no clock: storage passes a view and a time in and persists what comes out."""
from .accounts import (
    ADDRESS_KINDS,
    UNCONSTRAINED_KINDS,
    Account,
    AccountBatchOutcome,
    AccountFlags,
    AccountOutcome,
    AccountResult,
    NewAccount,
    address_kind,
    create_account,
    create_accounts,
    default_flags,
)
from .assets import DEFAULT_ASSETS, Asset
from .balances import AccountDelta, Balance, UnknownAccountError, balance_as_of, balances_as_of, entry_deltas
from .engine import BatchOutcome, ExpiryOutcome, apply_batch, expire_pending, referenced_ids
from .journal import (
    GENESIS, KINDS, JournalEntry, VerifyResult, canonical_json, canonical_problem, chain, entry_hash, iso_utc, verify,
)
from .memory import MemoryLedger
from .transfers import (
    MAX_BALANCE,
    FailedTransfer,
    Transfer,
    TransferOutcome,
    TransferRequest,
    TransferResult,
    TransferStatus,
    request_fingerprint,
)
from .view import EMPTY_HEAD, GENESIS_HASH, JournalHead, LedgerView

__all__ = [name for name in dir() if not name.startswith("_")]
