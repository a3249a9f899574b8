"""Rebuild the ledger's balance projection from its journal (the event store) and compare with the live one."""
from __future__ import annotations

from typing import Callable

from sqlalchemy import func, select, text

from services.ledger.storage.tables import accounts as A
from services.ledger.storage.tables import journal as J
from shared.db import Database


def rebuild_balances(db: Database, *, write: bool = False, progress: Callable[[int], None] | None = None) -> list[str]:
    """Sum every account's deltas over the journal; return the accounts whose live balances differ (and with
    ``write`` rewrite them from the journal, in one transaction)."""
    with db.sessions() as s, s.begin():
        n = s.execute(select(func.count()).select_from(J)).scalar_one()
        debit = dict((r[0], (int(r[1]), int(r[2]))) for r in s.execute(
            select(J.c.debit_account_id, func.sum(J.c.d_debits_pending), func.sum(J.c.d_debits_posted))
            .where(J.c.debit_account_id.is_not(None)).group_by(J.c.debit_account_id)).all())
        credit = dict((r[0], (int(r[1]), int(r[2]))) for r in s.execute(
            select(J.c.credit_account_id, func.sum(J.c.d_credits_pending), func.sum(J.c.d_credits_posted))
            .where(J.c.credit_account_id.is_not(None)).group_by(J.c.credit_account_id)).all())
        if progress:
            progress(n)
        diffs = []
        for a in s.execute(select(A)).all():
            want = (*debit.get(a.id, (0, 0)), *credit.get(a.id, (0, 0)))
            live = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
            if want != live:
                diffs.append(f"{a.id}: live {live} journal {want}")
                if write:
                    s.execute(text("UPDATE accounts SET debits_pending=:a, debits_posted=:b, credits_pending=:c, "
                                   "credits_posted=:d WHERE id=:id"), dict(a=want[0], b=want[1], c=want[2], d=want[3], id=a.id))
        if not write:
            s.rollback()
        return diffs
