"""Rows of allocation rounds: their inputs and every decision with its reason."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.quota.domain.allocation import RoundResult
from services.quota.storage.sql import dumps
from services.quota.storage.tables import round_decisions, rounds


def next_round_seq(session: Session, county_code: str) -> int:
    """Called under the county lock, so two rounds of one county never take the same number."""
    top = session.execute(select(func.max(rounds.c.seq)).where(rounds.c.county_code == county_code)).scalar()
    return int(top or 0) + 1


def record_round(session: Session, round_id: str, county_code: str, seq: int, by: str, policy_version: int,
                 inputs: dict, result: RoundResult, now: datetime) -> None:
    session.execute(rounds.insert().values(round_id=round_id, county_code=county_code, seq=seq, ran_at=now, ran_by=by,
                                           policy_version=policy_version, inputs=dumps(inputs)))
    if result.decisions:
        session.execute(round_decisions.insert(), [
            dict(round_id=round_id, rank=d.rank, request_id=d.request_id, outcome=d.outcome.value, reason=d.reason,
                 ordered_by=dumps([list(p) for p in d.ordered_by]),
                 shortfalls=dumps([dict(asset=s.asset, requested=s.requested, available=s.available)
                                   for s in d.shortfalls]))
            for d in result.decisions])


def round_row(session: Session, round_id: str):
    return session.execute(select(rounds).where(rounds.c.round_id == round_id)).first()


def decisions_of(session: Session, round_id: str) -> list:
    return session.execute(select(round_decisions).where(round_decisions.c.round_id == round_id)
                           .order_by(round_decisions.c.rank)).all()


def rounds_of(session: Session, county_code: str, limit: int, before_seq: int | None = None) -> list:
    """The county's rounds, latest first; ``before_seq``: only those run before that one (the next page)."""
    q = select(rounds).where(rounds.c.county_code == county_code)
    if before_seq is not None:
        q = q.where(rounds.c.seq < before_seq)
    return session.execute(q.order_by(rounds.c.seq.desc()).limit(limit)).all()
