"""Rebuild the ledger's balance projection from its journal (the ledger's event store) and compare it with
the live ``accounts`` rows. Each journal row carries the balance deltas of its entry, so the fold is a sum
per account, done by the database. The accounts' terms (asset, address, flags) are compared with their
``account_created`` entries too: the hash chain covers the journal, not the ``accounts`` table, so a flag turned
off there (an account allowed to overdraw) would otherwise go unseen. The report has the shape every service's
replay gives."""
from __future__ import annotations

import json
import time
from typing import Callable

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from services.ledger.storage.repository import LedgerRepository
from services.ledger.storage.tables import accounts as A
from services.ledger.storage.tables import journal as J
from shared.db import Database
from shared.replay import Difference, ReadModels, ReplayReport, compare

MODEL = "account_balances"  # (debits_pending, debits_posted, credits_pending, credits_posted)
TERMS = "account_terms"  # (asset, address, debits_must_not_exceed_credits, credits_must_not_exceed_debits, closed)
_FLAGS = ("flags.debits_must_not_exceed_credits", "flags.credits_must_not_exceed_debits", "flags.closed")


def _from_journal(s: Session) -> ReadModels:
    rows: dict = {}
    for acc, dp, dpo in s.execute(
            select(J.c.debit_account_id, func.sum(J.c.d_debits_pending), func.sum(J.c.d_debits_posted))
            .where(J.c.debit_account_id.is_not(None)).group_by(J.c.debit_account_id)):
        rows[acc] = (int(dp), int(dpo), 0, 0)
    for acc, cp, cpo in s.execute(
            select(J.c.credit_account_id, func.sum(J.c.d_credits_pending), func.sum(J.c.d_credits_posted))
            .where(J.c.credit_account_id.is_not(None)).group_by(J.c.credit_account_id)):
        d = rows.get(acc, (0, 0, 0, 0))
        rows[acc] = (d[0], d[1], int(cp), int(cpo))
    terms: dict = {}
    # an account created in the journal but never moved has zero balances, not no row
    for acc, payload in s.execute(select(J.c.account_id, J.c.payload).where(J.c.kind == "account_created")):
        rows.setdefault(acc, (0, 0, 0, 0))
        p = json.loads(payload)
        terms[acc] = (p["asset"], p["address"], *(bool(p[f]) for f in _FLAGS))
    return {MODEL: rows, TERMS: terms}


def _live(s: Session) -> ReadModels:
    balances, terms = {}, {}
    for a in s.execute(select(A)):
        balances[a.id] = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        terms[a.id] = (a.asset, a.address, bool(a.debits_must_not_exceed_credits),
                       bool(a.credits_must_not_exceed_debits), bool(a.closed))
    return {MODEL: balances, TERMS: terms}


def _repair(s: Session, diffs: list[Difference]) -> int:
    n = 0
    for d in diffs:
        if d.live is None or d.rebuilt is None:
            continue  # an account row missing on one side is not a balance to rewrite: reported only
        if d.model == TERMS:  # the terms the journal recorded when the account was opened
            s.execute(text("UPDATE accounts SET asset=:a, address=:b, debits_must_not_exceed_credits=:c, "
                           "credits_must_not_exceed_debits=:d, closed=:e WHERE id=:id"),
                      dict(a=d.rebuilt[0], b=d.rebuilt[1], c=d.rebuilt[2], d=d.rebuilt[3], e=d.rebuilt[4], id=d.key))
        else:
            s.execute(text("UPDATE accounts SET debits_pending=:a, debits_posted=:b, credits_pending=:c, "
                           "credits_posted=:d WHERE id=:id"),
                      dict(a=d.rebuilt[0], b=d.rebuilt[1], c=d.rebuilt[2], d=d.rebuilt[3], id=d.key))
        n += 1
    return n


def rebuild(db: Database, *, repair: bool = False, progress: Callable[[int], None] | None = None,
            total: Callable[[int], None] | None = None) -> ReplayReport:
    """Fold the journal, compare with the live rows (and with ``repair`` write the rebuilt balances over the
    differing ones), against a running ledger too. The journal and the rows are read at one moment: a compare
    reads a snapshot (PostgreSQL REPEATABLE READ; SQLite a deferred BEGIN, which leaves the writers going),
    so a transfer committed meanwhile is not a difference; a repair first locks the journal head, which every
    writer locks before it touches a balance, so none commits between the fold and the rewrite (it waits for
    the repair) and no balance is rewritten with figures older than the journal."""
    report = ReplayReport()
    with db.sessions() if repair else db.read_snapshot() as s:
        if repair:
            LedgerRepository(s).lock_head()  # SQLite: BEGIN IMMEDIATE holds the write lock already
        n = s.execute(select(func.count()).select_from(J)).scalar_one()
        if total:
            total(n)
        t0 = time.perf_counter()
        rebuilt = _from_journal(s)
        report.fold_seconds = time.perf_counter() - t0
        report.events_read = report.events_applied = n
        if progress:
            progress(n)
        report.rows = {m: len(r) for m, r in rebuilt.items()}
        t1 = time.perf_counter()
        report.differences = compare(_live(s), rebuilt)
        report.compare_seconds = time.perf_counter() - t1
        if repair and report.differences:
            report.repaired = _repair(s, report.differences)
            report.remaining = compare(_live(s), rebuilt)
            s.commit()
        else:
            s.rollback()
    return report
