"""The pure ledger core: apply a batch of transfer requests to a view, return what to persist.

Nothing here reads a clock, a database or the network. The caller (storage) loads a consistent view, calls
``apply_batch`` / ``expire_pending``, and persists the outcome atomically (new records, failed ids, updated
pending records, account balances, journal entries chained after the view's journal head). Because the
entries are chained to that head, outcomes must be computed and committed one at a time per journal
(hold the journal-head lock across compute + commit). Datetimes from the view must be timezone-aware.

Order of checks for one request (the first failing check is its result):
  id empty -> id seen before (stored failure is returned again; a stored transfer gives exists or the
  first differing field) -> flags exclusive -> timeout -> amount sign -> then either
  second phase: pending found / is pending / same accounts / stated asset is the pending's / still pending /
  not expired / amount
  or single phase/pending: amount zero / same account / accounts found / same asset / stated asset is theirs /
  closed / overflow / exceeds_credits (debit side) / exceeds_debits (credit side).
A request's asset "" is not stated: neither checked nor compared on a resubmission.
Linked chains: the first failing member keeps its result, every other member gets linked_event_failed
(but a linked last request of the batch is linked_event_chain_open, broken chain or not) and none of the
chain takes effect; 'exists' counts as success inside a chain (a retried chain is all
'exists'). Every failed id except the NOT_RECORDED outcomes is stored as a FailedTransfer.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from .accounts import Account
from .balances import C_PENDING, C_POSTED, CREDIT_ACCOUNT, D_PENDING, D_POSTED, DEBIT_ACCOUNT
from .journal import JournalEntry, chain_drafts, iso_utc, posted_payload_json
from .transfers import (
    MAX_BALANCE,
    NOT_RECORDED,
    FailedTransfer,
    Transfer,
    TransferOutcome,
    TransferRequest,
    TransferResult as R,
    TransferStatus as S,
    request_fingerprint,
)
from .view import LedgerView

_MISSING = object()
_OK = R.ok
_EXISTS = R.exists


@dataclass(slots=True)
class BatchOutcome:
    results: list[TransferOutcome]  # one per request, in request order
    transfers: list[Transfer]  # new records (a pending created and resolved in this batch: final state)
    failures: list[FailedTransfer]  # ids to reserve as failed
    updated_transfers: list[Transfer]  # existing pending records whose status changed
    accounts: list[Account]  # accounts whose balances changed (new full values)
    journal: list[JournalEntry]  # to append after the view's journal head, in order

    @property
    def ok(self) -> bool:
        return all(o.result is _OK or o.result is _EXISTS for o in self.results)


@dataclass(slots=True)
class ExpiryOutcome:
    expired: list[Transfer]  # pending records now status=expired
    accounts: list[Account]
    journal: list[JournalEntry]


def _payload(fields: dict, refs, metadata) -> dict:
    # refs and metadata flattened into the canonical str->str|int payload
    if refs:
        for i, r in enumerate(refs):
            if type(r) is not str:
                raise TypeError("refs must be str")
            fields[f"ref.{i}"] = r
    if metadata:
        for k, v in metadata.items():
            if type(k) is not str or type(v) is not str:
                raise TypeError("metadata keys and values must be str")
            fields["meta." + k] = v
    return fields


def _differs(req: TransferRequest, t: Transfer, lookup=None) -> R:
    """exists, or the first field in which a resubmission differs from what was stored. ``lookup`` finds the
    pending transfer a stored post resolved (a retried post of amount 0 means its full amount)."""
    second = bool(req.post_pending_id or req.void_pending_id)
    if (
        bool(req.pending) != t.pending
        or bool(req.linked) != t.linked
        or bool(req.post_pending_id) != bool(t.post_pending_id)
        or bool(req.void_pending_id) != bool(t.void_pending_id)
    ):
        return R.exists_with_different_flags
    if (req.post_pending_id or "") != t.post_pending_id or (req.void_pending_id or "") != t.void_pending_id:
        return R.exists_with_different_pending_id
    # a second phase may leave accounts, amount and code empty: they resolve to the pending transfer's
    if (req.debit_account_id or not second) and req.debit_account_id != t.debit_account_id:
        return R.exists_with_different_debit_account_id
    if (req.credit_account_id or not second) and req.credit_account_id != t.credit_account_id:
        return R.exists_with_different_credit_account_id
    # before the amount: an API amount is in the stated asset's units, so another asset is the real difference
    if req.asset and req.asset != t.asset:
        return R.exists_with_different_asset
    if (req.amount or not second) and req.amount != t.amount:
        return R.exists_with_different_amount
    if not req.amount and t.post_pending_id and lookup is not None:
        # a post of amount 0 asks for the pending's full amount: a retry with 0 of a partial post asked for more
        # than was posted, and 'exists' would tell the caller the whole reservation went through (TigerBeetle
        # compares such a retry with the pending transfer's amount)
        p = lookup(t.post_pending_id)
        if type(p) is Transfer and p.amount != t.amount:
            return R.exists_with_different_amount
    # TigerBeetle's order after the amount: user data (our refs, metadata), timeout, code
    if tuple(req.refs) != t.refs:
        return R.exists_with_different_refs
    if dict(req.metadata) != dict(t.metadata):
        return R.exists_with_different_metadata
    if req.timeout_seconds != t.timeout_seconds:
        return R.exists_with_different_timeout
    if (req.code or not second) and req.code != t.code:
        return R.exists_with_different_code
    return R.exists


class _Batch:
    """Working state of one batch: overlays over the view plus an undo log while inside a linked chain."""

    __slots__ = ("view", "now", "accounts", "bal", "records", "from_view", "drafts", "undo", "undo_drafts",
                 "expiry")

    def __init__(self, view: LedgerView, now: datetime):
        self.view = view
        self.now = now
        self.accounts: dict[str, Account | None] = {}  # looked-up accounts (None = not found)
        self.bal: dict[str, list[int]] = {}  # id -> [debits_pending, debits_posted, credits_pending, credits_posted]
        self.records: dict[str, Transfer | FailedTransfer] = {}  # records written by this batch
        self.from_view: set[str] = set()  # ids in `records` that were already stored (status updates)
        self.drafts: list[tuple[str, str, dict]] = []
        self.undo: list | None = None  # set while inside a linked chain
        self.undo_drafts = 0
        self.expiry: dict[int, tuple[datetime | None, str]] = {}  # timeout -> (expires_at, its iso text)

    # -- lookups -----------------------------------------------------------------------------------
    def lookup(self, tid: str):
        rec = self.records.get(tid, _MISSING)
        if rec is _MISSING:
            return self.view.transfer(tid)
        return rec

    def account(self, aid: str) -> Account | None:
        a = self.accounts.get(aid, _MISSING)
        if a is _MISSING:
            a = self.view.account(aid) if aid else None
            self.accounts[aid] = a
            if a is not None:
                self.bal[aid] = [a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted]
        return a

    # -- writes (undoable inside a chain) ---------------------------------------------------------------
    def put(self, tid: str, rec) -> None:
        if self.undo is not None:
            self.undo.append((tid, self.records.get(tid, _MISSING)))
        self.records[tid] = rec

    def touch(self, b: list[int]) -> None:
        if self.undo is not None:
            self.undo.append((b, b[:]))

    def rollback(self) -> None:
        for key, old in reversed(self.undo):
            if type(key) is list:
                key[:] = old
            elif old is _MISSING:
                del self.records[key]
            else:
                self.records[key] = old
        del self.drafts[self.undo_drafts :]

    # -- one request ---------------------------------------------------------------------------------
    def one(self, req: TransferRequest) -> R:
        tid = req.id
        if not tid:
            return R.id_must_not_be_empty
        stored = self.records.get(tid, _MISSING)  # inlined lookup(): this is the hot path
        if stored is _MISSING:
            stored = self.view.transfer(tid)
        if stored is not None:
            if type(stored) is FailedTransfer:
                return stored.result
            return _differs(req, stored, self.lookup)
        post_id = req.post_pending_id
        void_id = req.void_pending_id
        pending = req.pending
        if (pending and (post_id or void_id)) or (post_id and void_id):
            return R.flags_are_mutually_exclusive
        timeout = req.timeout_seconds
        if type(timeout) is not int:
            raise TypeError("timeout_seconds must be an int")
        if timeout < 0:
            return R.timeout_must_not_be_negative
        amount = req.amount
        if type(amount) is not int:
            raise TypeError("amounts are exact ints of the asset's smallest unit")
        if amount < 0:
            return R.amount_must_not_be_negative
        if post_id or void_id:
            if timeout:
                return R.timeout_reserved_for_pending_transfer
            return self.second_phase(req, post_id or void_id, bool(post_id), amount)
        dr_id = req.debit_account_id
        cr_id = req.credit_account_id
        # TigerBeetle's order: the accounts, then the timeout, then the amount
        if dr_id == cr_id and dr_id:
            return R.accounts_must_be_different
        if timeout and not pending:
            return R.timeout_reserved_for_pending_transfer
        if amount == 0:
            return R.amount_must_not_be_zero
        accounts = self.accounts
        dr = accounts.get(dr_id, _MISSING)
        if dr is _MISSING:
            dr = self.account(dr_id)
        if dr is None:
            return R.debit_account_not_found
        cr = accounts.get(cr_id, _MISSING)
        if cr is _MISSING:
            cr = self.account(cr_id)
        if cr is None:
            return R.credit_account_not_found
        if dr.asset != cr.asset:
            return R.accounts_must_have_the_same_asset
        asset = req.asset
        if asset and asset != dr.asset:  # its amount was read in another asset's units
            return R.asset_differs_from_accounts
        if dr.flags.closed:
            return R.debit_account_closed
        if cr.flags.closed:
            return R.credit_account_closed
        db = self.bal[dr_id]
        cb = self.bal[cr_id]
        if db[0] + db[1] + amount > MAX_BALANCE:
            return R.overflows_debits
        if cb[2] + cb[3] + amount > MAX_BALANCE:
            return R.overflows_credits
        # TigerBeetle: pending debits count against the limit, pending credits do not help it
        if dr.flags.debits_must_not_exceed_credits and db[0] + db[1] + amount > db[3]:
            return R.exceeds_credits
        if cr.flags.credits_must_not_exceed_debits and cb[2] + cb[3] + amount > cb[1]:
            return R.exceeds_debits

        undo = self.undo
        if undo is not None:
            undo.append((db, db[:]))
            undo.append((cb, cb[:]))
        now = self.now
        if pending:
            db[0] += amount
            cb[2] += amount
            expiry = self.expiry.get(timeout)
            if expiry is None:  # one computation per distinct timeout in the batch
                at = now + timedelta(seconds=timeout) if timeout else None
                expiry = self.expiry[timeout] = (at, iso_utc(at) if at else "")
            expires_at = expiry[0]
            status = S.pending
            payload = {
                DEBIT_ACCOUNT: dr_id, CREDIT_ACCOUNT: cr_id, "asset": dr.asset, "amount": amount,
                "code": req.code, D_PENDING: amount, D_POSTED: 0, C_PENDING: amount, C_POSTED: 0,
                "timeout_seconds": timeout, "expires_at": expiry[1],
            }
            kind = "transfer_pending"
        else:
            db[1] += amount
            cb[3] += amount
            expires_at = None
            status = S.posted
            payload = {
                DEBIT_ACCOUNT: dr_id, CREDIT_ACCOUNT: cr_id, "asset": dr.asset, "amount": amount,
                "code": req.code, D_PENDING: 0, D_POSTED: amount, C_PENDING: 0, C_POSTED: amount,
            }
            kind = "transfer_posted"
        refs = req.refs
        meta = req.metadata
        rec = Transfer(
            tid, dr_id, cr_id, dr.asset, amount, req.code, bool(pending), timeout, "", "", bool(req.linked),
            tuple(refs) if refs else (), dict(meta) if meta else {}, now, status, expires_at,
        )
        if undo is not None:
            undo.append((tid, _MISSING))
        self.records[tid] = rec
        if refs or meta:
            self.drafts.append((kind, tid, _payload(payload, refs, meta)))
        elif pending:
            self.drafts.append((kind, tid, payload))
        else:  # the common entry: its canonical JSON written out directly
            self.drafts.append((kind, tid, payload, posted_payload_json(dr_id, cr_id, dr.asset, amount, req.code)))
        return _OK

    def second_phase(self, req: TransferRequest, pid: str, post: bool, amount: int) -> R:
        p = self.lookup(pid)
        if p is None or type(p) is FailedTransfer:
            return R.pending_transfer_not_found
        if not p.pending:
            return R.pending_transfer_not_pending
        if (req.debit_account_id and req.debit_account_id != p.debit_account_id) or (
            req.credit_account_id and req.credit_account_id != p.credit_account_id
        ):
            return R.pending_transfer_has_different_accounts
        if req.asset and req.asset != p.asset:
            return R.asset_differs_from_accounts
        # TigerBeetle's order: the amount, then the pending's state
        if amount > p.amount:
            return R.exceeds_pending_transfer_amount
        if post:
            amount = amount or p.amount
        elif amount and amount != p.amount:
            return R.pending_transfer_has_different_amount
        status = p.status
        if status is S.posted_pending:
            return R.pending_transfer_already_posted
        if status is S.voided:
            return R.pending_transfer_already_voided
        if status is S.expired or (p.expires_at is not None and p.expires_at <= self.now):
            return R.pending_transfer_expired
        dr = self.account(p.debit_account_id)
        if dr is None:
            return R.debit_account_not_found
        cr = self.account(p.credit_account_id)
        if cr is None:
            return R.credit_account_not_found
        if post and dr.flags.closed:
            return R.debit_account_closed
        if post and cr.flags.closed:
            return R.credit_account_closed

        db = self.bal[p.debit_account_id]
        cb = self.bal[p.credit_account_id]
        self.touch(db)
        self.touch(cb)
        released = p.amount
        posted = amount if post else 0
        db[0] -= released
        cb[2] -= released
        db[1] += posted
        cb[3] += posted
        now = self.now
        code = req.code or p.code
        rec = Transfer(
            req.id, p.debit_account_id, p.credit_account_id, p.asset, amount if post else released, code,
            False, 0, req.post_pending_id, req.void_pending_id, bool(req.linked), tuple(req.refs),
            dict(req.metadata), now, S.posted if post else S.voided,
        )
        if pid not in self.records:
            self.from_view.add(pid)
        self.put(pid, p._replace(status=S.posted_pending if post else S.voided, posted_amount=posted,
                                 resolved_by=req.id, resolved_at=now))
        self.put(req.id, rec)
        payload = {
            DEBIT_ACCOUNT: p.debit_account_id, CREDIT_ACCOUNT: p.credit_account_id, "asset": p.asset,
            "amount": rec.amount, "code": code, "pending_id": pid,
            D_PENDING: -released, D_POSTED: posted, C_PENDING: -released, C_POSTED: posted,
        }
        self.drafts.append(("pending_posted" if post else "pending_voided", req.id,
                            _payload(payload, req.refs, req.metadata)))
        return _OK

    def record_failure(self, req: TransferRequest, result: R) -> None:
        if result in NOT_RECORDED or self.lookup(req.id) is not None:
            return  # the id is someone else's, or already failed (the stored failure was returned)
        self.records[req.id] = FailedTransfer(req.id, request_fingerprint(req), result, self.now)

    # -- the batch -------------------------------------------------------------------------------------
    def run(self, requests: list[TransferRequest]) -> list[R]:
        n = len(requests)
        results: list[R] = [_OK] * n
        chain_start = -1  # first index of the open linked chain
        broken = False  # the open chain already failed: the rest of it is linked_event_failed
        for i, req in enumerate(requests):
            linked = req.linked
            if broken:
                # TigerBeetle: an open end is named even when the chain already broke (checked first)
                results[i] = R.linked_event_chain_open if linked and i == n - 1 else R.linked_event_failed
                if not linked:
                    broken = False
                    chain_start = -1
                continue
            if linked and chain_start < 0:
                chain_start = i
                self.undo = []
                self.undo_drafts = len(self.drafts)
            r = R.linked_event_chain_open if linked and i == n - 1 else self.one(req)
            results[i] = r
            if chain_start >= 0:
                if r is not _OK and r is not _EXISTS:
                    self.rollback()
                    self.undo = None
                    for j in range(chain_start, i):
                        results[j] = R.linked_event_failed
                    self.record_failure(req, r)
                    if linked:
                        broken = True
                    else:
                        chain_start = -1
                elif not linked:
                    chain_start = -1
                    self.undo = None
            elif r is not _OK and r is not _EXISTS:
                self.record_failure(req, r)
        return results

    def changed_accounts(self) -> list[Account]:
        out = []
        for aid, b in self.bal.items():
            a = self.accounts[aid]
            if (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) != tuple(b):
                # replace(a, debits_pending=..., ...) spelled out: the same Account, without replace's field scan
                out.append(Account(a.id, a.asset, a.address, a.flags, b[0], b[1], b[2], b[3], a.created_at))
        return out

    def journal(self, recorded_at: str) -> list[JournalEntry]:
        head = self.view.journal_head()
        return chain_drafts(head.hash, head.seq, self.drafts, recorded_at)


def referenced_ids(requests: Iterable[TransferRequest]) -> tuple[set[str], set[str]]:
    """(account ids, transfer ids) a batch may read, for storage to load in one query each. The accounts of
    referenced pending transfers (second phase with empty account ids) are read too: load them after."""
    accounts: set[str] = set()
    transfers: set[str] = set()
    for r in requests:
        for a in (r.debit_account_id, r.credit_account_id):
            if a:
                accounts.add(a)
        for t in (r.id, r.post_pending_id, r.void_pending_id):
            if t:
                transfers.add(t)
    return accounts, transfers


def apply_batch(view: LedgerView, requests: list[TransferRequest], now: datetime) -> BatchOutcome:
    """Process ``requests`` in order against ``view`` at time ``now`` (timezone-aware)."""
    recorded_at = iso_utc(now)
    batch = _Batch(view, now)
    results = batch.run(requests)
    transfers: list[Transfer] = []
    failures: list[FailedTransfer] = []
    updated: list[Transfer] = []
    from_view = batch.from_view
    for tid, rec in batch.records.items():
        if type(rec) is FailedTransfer:
            failures.append(rec)
        elif tid in from_view:
            updated.append(rec)
        else:
            transfers.append(rec)
    return BatchOutcome(
        [TransferOutcome(i, req.id, r) for i, (req, r) in enumerate(zip(requests, results))],
        transfers,
        failures,
        updated,
        batch.changed_accounts(),
        batch.journal(recorded_at),
    )


def expire_pending(view: LedgerView, pending_transfers: Iterable[Transfer], now: datetime) -> ExpiryOutcome:
    """Release every given pending transfer whose expires_at <= now (others are skipped): status expired,
    one pending_expired journal entry each, in the order given, recorded at ``now``. A transfer expires at its
    expires_at, whenever the expiry runs (a timeout is deterministic: it may have passed while the ledger was
    down, and from then on a post or void was already refused as expired): that is its resolved_at."""
    recorded_at = iso_utc(now)
    batch = _Batch(view, now)
    expired: list[Transfer] = []
    for p in pending_transfers:
        if p.status is not S.pending or p.expires_at is None or p.expires_at > now or p.id in batch.records:
            continue
        dr = batch.account(p.debit_account_id)
        cr = batch.account(p.credit_account_id)
        if dr is None or cr is None:
            raise LookupError(f"pending transfer {p.id!r} names an account the view does not have")
        db = batch.bal[p.debit_account_id]
        cb = batch.bal[p.credit_account_id]
        db[0] -= p.amount
        cb[2] -= p.amount
        rec = p._replace(status=S.expired, posted_amount=0, resolved_at=p.expires_at)
        batch.records[p.id] = rec
        expired.append(rec)
        batch.drafts.append(("pending_expired", p.id, {
            DEBIT_ACCOUNT: p.debit_account_id, CREDIT_ACCOUNT: p.credit_account_id, "asset": p.asset,
            "amount": p.amount, "code": p.code, "pending_id": p.id,
            D_PENDING: -p.amount, D_POSTED: 0, C_PENDING: -p.amount, C_POSTED: 0,
        }))
    return ExpiryOutcome(expired, batch.changed_accounts(), batch.journal(recorded_at))
