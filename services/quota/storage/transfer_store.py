"""Rows of the transfers we asked the ledger for, and its answers."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from services.quota.storage.tables import ledger_transfers


def known_ids(session: Session, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    return set(session.execute(select(ledger_transfers.c.transfer_id)
                               .where(ledger_transfers.c.transfer_id.in_(ids))).scalars())


def record_asked(session: Session, rows: list[dict]) -> None:
    if rows:
        session.execute(ledger_transfers.insert(), rows)


def transfer_row(session: Session, transfer_id: str):
    return session.execute(select(ledger_transfers).where(ledger_transfers.c.transfer_id == transfer_id)).first()


def set_answer(session: Session, transfer_id: str, state: str, now: datetime, reason: str | None = None) -> None:
    session.execute(update(ledger_transfers).where(ledger_transfers.c.transfer_id == transfer_id).values(
        state=state, ledger_reason=reason, answered_at=now))


def transfers_of_request(session: Session, request_id: str) -> list:
    return session.execute(select(ledger_transfers).where(ledger_transfers.c.request_id == request_id)
                           .order_by(ledger_transfers.c.asked_at, ledger_transfers.c.transfer_id)).all()


def acknowledged_project_accounts(session: Session, county_code: str) -> list[str]:
    """Project accounts the ledger has certainly opened: a reserve transfer of ours it answered other than
    'rejected' (a rejected command may still have opened them, but we need not ask)."""
    rows = session.execute(select(ledger_transfers.c.credit_account).where(
        (ledger_transfers.c.county_code == county_code) & (ledger_transfers.c.purpose == "reserve")
        & ledger_transfers.c.state.in_(["pending", "posted", "voided", "expired"])).distinct()).scalars()
    return sorted(rows)


def unanswered(session: Session, county_code: str) -> int:
    return int(session.execute(select(func.count()).select_from(ledger_transfers).where(
        (ledger_transfers.c.county_code == county_code) & (ledger_transfers.c.state == "asked")
        & ledger_transfers.c.purpose.in_(["intake", "reserve", "post"]))).scalar() or 0)
