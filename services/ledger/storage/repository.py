"""The ledger's repository: loads a consistent, locked view for the pure engine and persists its outcome.

Concurrency (PostgreSQL): a writer first locks the journal head row, which serializes appends to the one
hash chain, then locks the touched account rows in sorted id order. Every writer takes the locks in the same
order, so writers queue instead of deadlocking, and no interleaving can overdraw an account. SQLite's
``BEGIN IMMEDIATE`` gives the same single-writer guarantee.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Iterable, Iterator

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.orm import Session

from services.ledger.domain import (
    Account,
    AccountBatchOutcome,
    AccountFlags,
    BatchOutcome,
    ExpiryOutcome,
    FailedTransfer,
    JournalEntry,
    JournalHead,
    Transfer,
    TransferResult,
    TransferStatus,
)
from shared.bulk import bulk_insert, id_in
from services.ledger.storage.tables import accounts as A
from services.ledger.storage.tables import failed_transfers as F
from services.ledger.storage.tables import journal as J
from services.ledger.storage.tables import journal_head as H
from services.ledger.storage.tables import transfers as T

_CHUNK = 5000  # keeps IN (...) lists and parameter counts within every driver's limits


def _chunks(items: list, n: int = _CHUNK) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _utc(d: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything we store is UTC.
    if d is not None and d.tzinfo is None:
        return d.replace(tzinfo=timezone.utc)
    return d


def account_from_row(r) -> Account:
    return Account(
        r.id, r.asset, r.address,
        AccountFlags(r.debits_must_not_exceed_credits, r.credits_must_not_exceed_debits, r.closed),
        r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted, _utc(r.created_at),
    )


_FLAGS: dict[tuple, AccountFlags] = {}  # AccountFlags are frozen: one instance per combination
_ACCOUNT_COLUMNS = (A.c.id, A.c.asset, A.c.address, A.c.debits_must_not_exceed_credits, A.c.credits_must_not_exceed_debits,
                    A.c.closed, A.c.debits_pending, A.c.debits_posted, A.c.credits_pending, A.c.credits_posted,
                    A.c.created_at)


def _accounts_from_tuples(rows) -> Iterator[tuple[str, Account]]:
    """account_from_row over rows of _ACCOUNT_COLUMNS, unpacked by position (a batch locks up to 20,000)."""
    flags_of = _FLAGS
    for aid, asset, address, dmnec, cmned, closed, dp, dpo, cp, cpo, created_at in rows:
        key = (dmnec, cmned, closed)
        flags = flags_of.get(key)
        if flags is None:
            flags = flags_of[key] = AccountFlags(dmnec, cmned, closed)
        if created_at is not None and created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=timezone.utc)
        yield aid, Account(aid, asset, address, flags, dp, dpo, cp, cpo, created_at)


def transfer_from_row(r) -> Transfer:
    return Transfer(
        r.id, r.debit_account_id, r.credit_account_id, r.asset, r.amount, r.code, r.pending, r.timeout_seconds,
        r.post_pending_id, r.void_pending_id, r.linked, tuple(json.loads(r.refs)), json.loads(r.metadata),
        _utc(r.timestamp), TransferStatus(r.status), _utc(r.expires_at), r.posted_amount, r.resolved_by,
        _utc(r.resolved_at),
    )


def _transfer_row(t: Transfer) -> dict:
    return {
        "id": t.id, "debit_account_id": t.debit_account_id, "credit_account_id": t.credit_account_id,
        "asset": t.asset, "amount": t.amount, "code": t.code, "pending": t.pending,
        "timeout_seconds": t.timeout_seconds, "post_pending_id": t.post_pending_id,
        "void_pending_id": t.void_pending_id, "linked": t.linked,
        "refs": json.dumps(list(t.refs), ensure_ascii=False) if t.refs else "[]",
        "metadata": json.dumps(dict(t.metadata), ensure_ascii=False) if t.metadata else "{}",
        "timestamp": t.timestamp, "status": t.status.value, "expires_at": t.expires_at,
        "posted_amount": t.posted_amount, "resolved_by": t.resolved_by, "resolved_at": t.resolved_at,
    }


def _journal_row(e: JournalEntry) -> dict:
    p = e.payload
    created = e.kind == "account_created"
    return {
        "seq": e.seq, "kind": e.kind, "transfer_id": e.transfer_id,
        "account_id": p["account_id"] if created else None,
        "debit_account_id": None if created else p["debit_account_id"],
        "credit_account_id": None if created else p["credit_account_id"],
        "d_debits_pending": 0 if created else p["delta.debits_pending"],
        "d_debits_posted": 0 if created else p["delta.debits_posted"],
        "d_credits_pending": 0 if created else p["delta.credits_pending"],
        "d_credits_posted": 0 if created else p["delta.credits_posted"],
        "payload": json.dumps(p, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "recorded_at": datetime.fromisoformat(e.recorded_at), "prev_hash": e.prev_hash, "hash": e.hash,
    }


def journal_entry_from_row(r) -> JournalEntry:
    return JournalEntry(r.seq, r.kind, r.transfer_id, json.loads(r.payload),
                        _utc(r.recorded_at).isoformat(timespec="microseconds"), r.prev_hash, r.hash)


def row_disagrees_with_payload(r) -> bool:
    """The delta columns must say what the hashed payload says (balance queries read the columns)."""
    expected = _journal_row(journal_entry_from_row(r))
    return any(getattr(r, k) != expected[k] for k in (
        "account_id", "debit_account_id", "credit_account_id", "d_debits_pending", "d_debits_posted",
        "d_credits_pending", "d_credits_posted", "transfer_id", "kind"))


class LoadedView:
    """A LedgerView over rows loaded (and locked) for one batch."""

    def __init__(self, accounts: dict[str, Account], transfers: dict[str, Transfer | FailedTransfer], head: JournalHead):
        self.accounts = accounts
        self.transfers = transfers
        self.head = head

    def account(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)

    def transfer(self, transfer_id: str) -> Transfer | FailedTransfer | None:
        return self.transfers.get(transfer_id)

    def journal_head(self) -> JournalHead:
        return self.head


class LedgerRepository:
    def __init__(self, session: Session):
        self.s = session
        self.pg = session.get_bind().dialect.name == "postgresql"

    # -- writing -----------------------------------------------------------------------------------
    def lock_head(self) -> JournalHead:
        q = select(H.c.seq, H.c.hash).where(H.c.id == 1)
        row = self.s.execute(q.with_for_update() if self.pg else q).one()
        return JournalHead(row.seq, row.hash)

    def load_view(self, head: JournalHead, transfer_ids: Iterable[str], account_ids: Iterable[str]) -> LoadedView:
        tids = sorted({t for t in transfer_ids if t})
        transfers = {t.id: t for t in self.transfers_by_id(tids)}
        for chunk in _chunks(tids):
            for r in self.s.execute(select(F).where(id_in(F.c.id, chunk, self.s))).all():
                transfers[r.id] = FailedTransfer(r.id, r.fingerprint, TransferResult(r.result), _utc(r.failed_at))
        # second phases touch the pending transfer's accounts
        aids = {a for a in account_ids if a}
        for t in transfers.values():
            if isinstance(t, Transfer):
                aids.update((t.debit_account_id, t.credit_account_id))
        return LoadedView(self.lock_accounts(sorted(aids)), transfers, head)

    def lock_accounts(self, ids: list[str]) -> dict[str, Account]:
        out: dict[str, Account] = {}
        for chunk in _chunks(ids):
            q = select(*_ACCOUNT_COLUMNS).where(id_in(A.c.id, chunk, self.s)).order_by(A.c.id)
            if self.pg:
                q = q.with_for_update()
            out.update(_accounts_from_tuples(self.s.execute(q).all()))
        return out

    def persist_accounts(self, outcome: AccountBatchOutcome) -> None:
        created_seq = {e.payload["account_id"]: e.seq for e in outcome.journal}
        if outcome.accounts:
            self.s.execute(A.insert(), [{
                "id": a.id, "asset": a.asset, "address": a.address,
                "debits_must_not_exceed_credits": a.flags.debits_must_not_exceed_credits,
                "credits_must_not_exceed_debits": a.flags.credits_must_not_exceed_debits,
                "closed": a.flags.closed, "debits_pending": 0, "debits_posted": 0, "credits_pending": 0,
                "credits_posted": 0, "created_at": a.created_at, "created_seq": created_seq[a.id],
            } for a in outcome.accounts])
        self._append(outcome.journal)

    def persist_batch(self, outcome: BatchOutcome) -> None:
        bulk_insert(self.s, T, [_transfer_row(t) for t in outcome.transfers])
        bulk_insert(self.s, F, [{"id": f.id, "fingerprint": f.fingerprint, "result": f.result.value,
                                 "failed_at": f.timestamp} for f in outcome.failures])
        self._update_transfers(outcome.updated_transfers)
        self._update_balances(outcome.accounts)
        self._append(outcome.journal)

    def persist_expiry(self, outcome: ExpiryOutcome) -> None:
        self._update_transfers(outcome.expired)
        self._update_balances(outcome.accounts)
        self._append(outcome.journal)

    # SQLite: one executemany per batch, not a statement per row.
    _SET_TRANSFER = update(T).where(T.c.id == bindparam("k_id")).values(
        status=bindparam("k_status"), posted_amount=bindparam("k_posted"), resolved_by=bindparam("k_by"),
        resolved_at=bindparam("k_at"))
    _SET_BALANCE = update(A).where(A.c.id == bindparam("k_id")).values(
        debits_pending=bindparam("k_dp"), debits_posted=bindparam("k_dpo"), credits_pending=bindparam("k_cp"),
        credits_posted=bindparam("k_cpo"))

    def _update_transfers(self, items: list[Transfer]) -> None:
        if items and self.pg:
            self.s.execute(text(
                "UPDATE transfers AS t SET status = v.status, posted_amount = v.posted, resolved_by = v.by, "
                "resolved_at = v.at FROM unnest(CAST(:ids AS varchar[]), CAST(:status AS varchar[]), "
                "CAST(:posted AS bigint[]), CAST(:by AS varchar[]), CAST(:at AS timestamptz[])) "
                "AS v(id, status, posted, by, at) WHERE t.id = v.id"),
                {"ids": [t.id for t in items], "status": [t.status.value for t in items],
                 "posted": [t.posted_amount for t in items], "by": [t.resolved_by for t in items],
                 "at": [t.resolved_at for t in items]})
        elif items:
            self.s.connection().execute(self._SET_TRANSFER, [
                {"k_id": t.id, "k_status": t.status.value, "k_posted": t.posted_amount, "k_by": t.resolved_by,
                 "k_at": t.resolved_at} for t in items])

    def _update_balances(self, items: list[Account]) -> None:
        if items and self.pg:
            # one statement for the whole batch (PostgreSQL): unnest the new balances and join on id
            self.s.execute(text(
                "UPDATE accounts AS a SET debits_pending = v.dp, debits_posted = v.dpo, credits_pending = v.cp, "
                "credits_posted = v.cpo FROM unnest(CAST(:ids AS varchar[]), CAST(:dp AS bigint[]), "
                "CAST(:dpo AS bigint[]), CAST(:cp AS bigint[]), CAST(:cpo AS bigint[])) AS v(id, dp, dpo, cp, cpo) "
                "WHERE a.id = v.id"),
                {"ids": [a.id for a in items], "dp": [a.debits_pending for a in items],
                 "dpo": [a.debits_posted for a in items], "cp": [a.credits_pending for a in items],
                 "cpo": [a.credits_posted for a in items]})
        elif items:
            self.s.connection().execute(self._SET_BALANCE, [
                {"k_id": a.id, "k_dp": a.debits_pending, "k_dpo": a.debits_posted, "k_cp": a.credits_pending,
                 "k_cpo": a.credits_posted} for a in items])

    def _append(self, entries: list[JournalEntry]) -> None:
        if not entries:
            return
        bulk_insert(self.s, J, [_journal_row(e) for e in entries])
        last = entries[-1]
        self.s.execute(update(H).where(H.c.id == 1).values(seq=last.seq, hash=last.hash))

    def due_pending(self, now: datetime, limit: int = 1000) -> list[Transfer]:
        rows = self.s.execute(select(T).where(and_(T.c.status == "pending", T.c.expires_at <= now))
                              .order_by(T.c.expires_at, T.c.id).limit(limit)).all()
        return [transfer_from_row(r) for r in rows]

    # -- reading -----------------------------------------------------------------------------------
    def transfers_by_id(self, ids: list[str]) -> list[Transfer]:
        out = []
        for chunk in _chunks(ids):
            out.extend(transfer_from_row(r) for r in self.s.execute(select(T).where(id_in(T.c.id, chunk, self.s))).all())
        return out

    def failed(self, transfer_id: str) -> FailedTransfer | None:
        r = self.s.execute(select(F).where(F.c.id == transfer_id)).first()
        return FailedTransfer(r.id, r.fingerprint, TransferResult(r.result), _utc(r.failed_at)) if r else None

    def account(self, account_id: str) -> Account | None:
        r = self.s.execute(select(A).where(A.c.id == account_id)).first()
        return account_from_row(r) if r else None

    def account_created_seq(self, account_id: str) -> int | None:
        return self.s.execute(select(A.c.created_seq).where(A.c.id == account_id)).scalar()

    def accounts_where(self, *, ids: list[str] | None = None, address_prefix: str | None = None,
                       asset: str | None = None, limit: int = 1000) -> list[Account]:
        q = select(A)
        if ids is not None:
            q = q.where(A.c.id.in_(ids))
        if address_prefix:
            q = q.where(A.c.address.startswith(address_prefix, autoescape=True))
        if asset:
            q = q.where(A.c.asset == asset)
        return [account_from_row(r) for r in self.s.execute(q.order_by(A.c.id).limit(limit)).all()]

    def head(self) -> JournalHead:
        r = self.s.execute(select(H.c.seq, H.c.hash).where(H.c.id == 1)).one()
        return JournalHead(r.seq, r.hash)

    def seq_as_of(self, moment: datetime) -> int:
        return self.s.execute(select(func.coalesce(func.max(J.c.seq), 0)).where(J.c.recorded_at <= moment)).scalar_one()

    def balance_upto(self, account_id: str, seq: int) -> tuple[int, int, int, int]:
        d = self.s.execute(select(func.coalesce(func.sum(J.c.d_debits_pending), 0), func.coalesce(func.sum(J.c.d_debits_posted), 0))
                           .where(J.c.debit_account_id == account_id, J.c.seq <= seq)).one()
        c = self.s.execute(select(func.coalesce(func.sum(J.c.d_credits_pending), 0), func.coalesce(func.sum(J.c.d_credits_posted), 0))
                           .where(J.c.credit_account_id == account_id, J.c.seq <= seq)).one()
        return int(d[0]), int(d[1]), int(c[0]), int(c[1])

    def entries(self, account_id: str, after_seq: int, limit: int) -> list:
        q = (select(J).where(or_(J.c.debit_account_id == account_id, J.c.credit_account_id == account_id,
                                 J.c.account_id == account_id), J.c.seq > after_seq)
             .order_by(J.c.seq).limit(limit))
        return self.s.execute(q).all()

    def pending_of(self, account_id: str, limit: int = 1000) -> list[Transfer]:
        q = (select(T).where(T.c.status == "pending",
                             or_(T.c.debit_account_id == account_id, T.c.credit_account_id == account_id))
             .order_by(T.c.timestamp, T.c.id).limit(limit))
        return [transfer_from_row(r) for r in self.s.execute(q).all()]

    def journal_rows(self, from_seq: int = 1, batch: int = 5000) -> Iterator:
        seq = from_seq - 1
        while True:
            rows = self.s.execute(select(J).where(J.c.seq > seq).order_by(J.c.seq).limit(batch)).all()
            if not rows:
                return
            yield from rows
            seq = rows[-1].seq

    def hash_at(self, seq: int) -> str | None:
        return self.s.execute(select(J.c.hash).where(J.c.seq == seq)).scalar()

    def pending_totals(self) -> list:
        return self.s.execute(select(T.c.asset, func.count(), func.coalesce(func.sum(T.c.amount), 0))
                              .where(T.c.status == "pending").group_by(T.c.asset)).all()

    def asset_sums(self) -> list:
        """Per asset: sum of posted and pending net balances over every account (must be zero)."""
        return self.s.execute(select(
            A.c.asset,
            func.sum(A.c.credits_posted - A.c.debits_posted),
            func.sum(A.c.credits_pending - A.c.debits_pending),
            func.count(),
        ).group_by(A.c.asset)).all()
