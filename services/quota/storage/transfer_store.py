"""Rows of the transfers we asked the ledger for, and its answers."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.bulk import id_in
from services.quota.storage.sql import copy_rows
from services.quota.storage.tables import ledger_transfers


def known_ids(session: Session, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    col = ledger_transfers.c.transfer_id
    return set(session.execute(select(col).where(id_in(col, ids, session))).scalars())


def record_asked(session: Session, rows: list[dict]) -> None:
    """New transfer ids only (``known_ids`` told which were asked before)."""
    copy_rows(session, ledger_transfers, rows)


def transfer_row(session: Session, transfer_id: str):
    return session.execute(select(ledger_transfers).where(ledger_transfers.c.transfer_id == transfer_id)).first()


def transfer_rows(session: Session, ids: list[str]) -> dict[str, object]:
    """transfer_id -> (transfer_id, purpose, lot_id) of those we asked for: one query for a batch of answers."""
    if not ids:
        return {}
    t = ledger_transfers
    q = select(t.c.transfer_id, t.c.purpose, t.c.lot_id).where(id_in(t.c.transfer_id, ids, session))
    return {r.transfer_id: r for r in session.execute(q)}


def set_answer(session: Session, transfer_id: str, state: str, now: datetime, reason: str | None = None) -> None:
    session.execute(update(ledger_transfers).where(ledger_transfers.c.transfer_id == transfer_id).values(
        state=state, ledger_reason=reason, answered_at=now))


def set_answers(session: Session, ids: list[str], state: str, now: datetime) -> None:
    """``set_answer`` (without a reason) of many transfers in one statement."""
    if ids:
        session.execute(update(ledger_transfers).where(id_in(ledger_transfers.c.transfer_id, ids, session)).values(
            state=state, ledger_reason=None, answered_at=now))


def set_answers_returning(session: Session, ids: list[str], state: str, now: datetime) -> list:
    """``set_answers`` of those of these ids we asked for, returning (transfer_id, purpose, lot_id) of each
    (``transfer_rows`` and ``set_answers`` in one statement)."""
    if not ids:
        return []
    t = ledger_transfers
    return session.execute(update(t).where(id_in(t.c.transfer_id, ids, session)).values(
        state=state, ledger_reason=None, answered_at=now).returning(t.c.transfer_id, t.c.purpose, t.c.lot_id)).all()


def transfers_of_request(session: Session, request_id: str) -> list:
    return session.execute(select(ledger_transfers).where(ledger_transfers.c.request_id == request_id)
                           .order_by(ledger_transfers.c.asked_at, ledger_transfers.c.transfer_id)).all()


def transfers_of_requests(session: Session, request_ids: list[str]) -> dict[str, list]:
    """``transfers_of_request`` of many requests, in one query."""
    t = ledger_transfers
    rows = session.execute(select(t).where(id_in(t.c.request_id, request_ids, session))
                           .order_by(t.c.asked_at, t.c.transfer_id)).all() if request_ids else []
    found: dict[str, list] = {}
    for r in rows:
        found.setdefault(r.request_id, []).append(r)
    return found


def acknowledged_project_accounts(session: Session, county_code: str) -> list[str]:
    """Project accounts the ledger has certainly opened: a reserve transfer of ours it answered other than
    'rejected' (a rejected command may still have opened them, but we need not ask)."""
    rows = session.execute(select(ledger_transfers.c.credit_account).where(
        (ledger_transfers.c.county_code == county_code) & (ledger_transfers.c.purpose == "reserve")
        & ledger_transfers.c.state.in_(["pending", "posted", "voided", "expired"])).distinct()).scalars()
    return sorted(rows)


def unanswered(session: Session, county_code: str, asked_before: datetime | None = None) -> int:
    """The county's transfers of every purpose (a void in flight too) the ledger has not answered yet (only those
    asked before ``asked_before``, if given)."""
    t = ledger_transfers
    where = (t.c.county_code == county_code) & (t.c.state == "asked")
    if asked_before is not None:
        where &= t.c.asked_at < asked_before
    return int(session.execute(select(func.count()).select_from(t).where(where)).scalar() or 0)


def state_counts(session: Session, county_code: str) -> dict[tuple[str, str], int]:
    """(purpose, state) -> how many of the county's transfers: every transfer we ask and every answer we take in
    changes it, so two readings that agree saw nothing of the county move towards or from the ledger between them."""
    t = ledger_transfers
    rows = session.execute(select(t.c.purpose, t.c.state, func.count()).where(t.c.county_code == county_code)
                           .group_by(t.c.purpose, t.c.state)).all()
    return {(r[0], r[1]): int(r[2]) for r in rows}
