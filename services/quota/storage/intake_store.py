"""Rows of what enters the pool: releases, reclamation projects, departed enterprises, lots."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.bulk import id_in
from services.quota.domain.lots import Lot, SourceKind
from services.quota.domain.reclamation import ReclamationProject, ReclamationState
from services.quota.domain.releases import Basis, QuotaRelease, ReleaseReason, ReleaseStatus
from services.quota.storage.sql import copy_rows, insert_ignore
from services.quota.storage.tables import departed_enterprises, lots, reclamation_projects, releases


# -- releases ------------------------------------------------------------------------------------
def release_from_row(r) -> QuotaRelease:
    return QuotaRelease(
        release_id=r.release_id, department=r.department, enterprise_credit_code=r.enterprise_credit_code,
        township_code=r.township_code, county_code=r.county_code, asset=r.asset, amount=r.amount,
        reason=ReleaseReason(r.reason), basis=Basis(r.basis), buyback_price_fen_per_unit=r.buyback_price_fen,
        document_ref=r.document_ref, released_on=r.released_on,
    )


def release_row(session: Session, release_id: str):
    return session.execute(select(releases).where(releases.c.release_id == release_id)).first()


def release_rows(session: Session, release_ids: list[str]) -> dict[str, object]:
    """release_id -> (release_id, digest, status, status_reason) of those stored: one query for a batch."""
    if not release_ids:
        return {}
    q = select(releases.c.release_id, releases.c.digest, releases.c.status, releases.c.status_reason)
    return {r.release_id: r for r in session.execute(q.where(id_in(releases.c.release_id, release_ids, session)))}


def release_values(rel: QuotaRelease, *, status: ReleaseStatus, status_reason: str, digest: str, submitted_by: str,
                   now: datetime) -> dict:
    return dict(
        release_id=rel.release_id, department=rel.department, submitted_by=submitted_by,
        enterprise_credit_code=rel.enterprise_credit_code, township_code=rel.township_code,
        county_code=rel.county_code, asset=rel.asset, amount=rel.amount, reason=rel.reason.value,
        basis=rel.basis.value, buyback_price_fen=rel.buyback_price_fen_per_unit, document_ref=rel.document_ref,
        released_on=rel.released_on, status=status.value, status_reason=status_reason, digest=digest,
        received_at=now, decided_at=None if status is ReleaseStatus.PENDING_VERIFICATION else now,
    )


def insert_release(session: Session, rel: QuotaRelease, *, status: ReleaseStatus, status_reason: str, digest: str,
                   submitted_by: str, now: datetime) -> None:
    session.execute(releases.insert().values(**release_values(
        rel, status=status, status_reason=status_reason, digest=digest, submitted_by=submitted_by, now=now)))


def insert_releases(session: Session, rows: list[dict]) -> None:
    """Rows of ``release_values``, new ids only (the caller looked them up under the county locks)."""
    copy_rows(session, releases, rows)


def set_release_status(session: Session, release_id: str, status: ReleaseStatus, reason: str, now: datetime) -> None:
    session.execute(update(releases).where(releases.c.release_id == release_id).values(
        status=status.value, status_reason=reason, decided_at=now))


def held_releases_of(session: Session, credit_code: str) -> list[QuotaRelease]:
    rows = session.execute(select(releases).where(
        (releases.c.enterprise_credit_code == credit_code)
        & (releases.c.status == ReleaseStatus.PENDING_VERIFICATION.value)).order_by(releases.c.release_id)).all()
    return [release_from_row(r) for r in rows]


def releases_of_enterprise(session: Session, credit_code: str) -> list:
    return session.execute(select(releases).where(releases.c.enterprise_credit_code == credit_code)
                           .order_by(releases.c.released_on, releases.c.release_id)).all()


def list_releases(session: Session, county_code: str, status: str | None, limit: int, after: str | None) -> list:
    q = select(releases).where(releases.c.county_code == county_code)
    if status:
        q = q.where(releases.c.status == status)
    if after:
        q = q.where(releases.c.release_id > after)
    return session.execute(q.order_by(releases.c.release_id).limit(limit)).all()


# -- departed enterprises ------------------------------------------------------------------------
def record_departure(session: Session, credit_code: str, county_code: str, how: str, effective_on, now) -> bool:
    return insert_ignore(session, departed_enterprises, dict(
        credit_code=credit_code, county_code=county_code, how=how, effective_on=effective_on, recorded_at=now))


def has_departed(session: Session, credit_code: str) -> bool:
    return session.execute(select(departed_enterprises.c.credit_code)
                           .where(departed_enterprises.c.credit_code == credit_code)).first() is not None


def departed_among(session: Session, credit_codes: list[str]) -> set[str]:
    """The credit codes of these known to have left: ``has_departed`` for a batch, in one query."""
    if not credit_codes:
        return set()
    col = departed_enterprises.c.credit_code
    return set(session.execute(select(col).where(id_in(col, credit_codes, session))).scalars())


# -- reclamation projects ------------------------------------------------------------------------
def reclamation_from_row(r) -> ReclamationProject:
    return ReclamationProject(r.project_id, r.county_code, r.township_code, r.area, r.registered_on,
                              ReclamationState(r.state), r.accepted_on, r.accepted_area)


def reclamation_row(session: Session, project_id: str, *, lock: bool = False):
    q = select(reclamation_projects).where(reclamation_projects.c.project_id == project_id)
    return session.execute(q.with_for_update() if lock else q).first()


def insert_reclamation(session: Session, p: ReclamationProject, *, digest: str, by: str) -> None:
    session.execute(reclamation_projects.insert().values(
        project_id=p.project_id, county_code=p.county_code, township_code=p.township_code, area=p.area,
        registered_on=p.registered_on, state=p.state.value, accepted_on=None, accepted_area=None, document_ref="",
        digest=digest, registered_by=by))


def mark_reclamation_accepted(session: Session, p: ReclamationProject, document_ref: str) -> None:
    session.execute(update(reclamation_projects).where(reclamation_projects.c.project_id == p.project_id).values(
        state=p.state.value, accepted_on=p.accepted_on, accepted_area=p.accepted_area, document_ref=document_ref))


# -- lots ----------------------------------------------------------------------------------------
def lot_from_row(r) -> Lot:
    return Lot(r.lot_id, r.county_code, r.asset, r.amount, r.retired, r.remaining, SourceKind(r.source_kind),
               r.source_ref, r.township_code, r.dated, Basis(r.basis), r.buyback_price_fen, r.origin_id,
               r.earns_compensation)


def _lot_values(lot: Lot, now: datetime) -> dict:
    return dict(
        lot_id=lot.lot_id, county_code=lot.county_code, asset=lot.asset, amount=lot.amount, retired=lot.retired,
        remaining=lot.remaining, source_kind=lot.source_kind.value, source_ref=lot.source_ref,
        township_code=lot.township_code, dated=lot.dated, basis=lot.basis.value,
        buyback_price_fen=lot.buyback_price_fen_per_unit, origin_id=lot.origin_id,
        earns_compensation=lot.earns_compensation, ledger_state="awaiting", created_at=now)


def insert_lot(session: Session, lot: Lot, now: datetime) -> bool:
    return insert_ignore(session, lots, _lot_values(lot, now))


def lot_ids_among(session: Session, lot_ids: list[str]) -> set[str]:
    if not lot_ids:
        return set()
    return set(session.execute(select(lots.c.lot_id).where(id_in(lots.c.lot_id, lot_ids, session))).scalars())


def insert_lots(session: Session, new: list[Lot], now: datetime) -> None:
    """New lots only (``lot_ids_among`` told which exist; the county locks keep it so)."""
    copy_rows(session, lots, [_lot_values(lot, now) for lot in new])


def set_lot_ledger_state(session: Session, lot_id: str, state: str) -> None:
    session.execute(update(lots).where(lots.c.lot_id == lot_id).values(ledger_state=state))


def set_lots_ledger_state(session: Session, lot_ids: list[str], state: str) -> None:
    if lot_ids:
        session.execute(update(lots).where(id_in(lots.c.lot_id, lot_ids, session)).values(ledger_state=state))


def grantable_lots(session: Session, county_code: str, assets: list[str]) -> list[Lot]:
    """Booked lots of these assets that still hold something: what an allocation may consume."""
    rows = session.execute(select(lots).where(
        (lots.c.county_code == county_code) & lots.c.asset.in_(assets) & (lots.c.ledger_state == "booked")
        & (lots.c.remaining > 0))).all()
    return [lot_from_row(r) for r in rows]


def save_lot_remaining(session: Session, updated: list[Lot]) -> None:
    for lot in updated:
        session.execute(update(lots).where(lots.c.lot_id == lot.lot_id).values(remaining=lot.remaining))


def lot_sums(session: Session, county_code: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(asset, ledger_state) -> (amount, retired, remaining) summed over the county's lots."""
    rows = session.execute(
        select(lots.c.asset, lots.c.ledger_state, func.sum(lots.c.amount), func.sum(lots.c.retired),
               func.sum(lots.c.remaining))
        .where(lots.c.county_code == county_code).group_by(lots.c.asset, lots.c.ledger_state)).all()
    return {(r[0], r[1]): (int(r[2] or 0), int(r[3] or 0), int(r[4] or 0)) for r in rows}


def list_lots(session: Session, county_code: str, asset: str | None, with_remaining: bool, limit: int,
              after: str | None) -> list:
    q = select(lots).where(lots.c.county_code == county_code)
    if asset:
        q = q.where(lots.c.asset == asset)
    if with_remaining:
        q = q.where(lots.c.remaining > 0)
    if after:
        q = q.where(lots.c.lot_id > after)
    return session.execute(q.order_by(lots.c.lot_id).limit(limit)).all()


def lots_by_ids(session: Session, lot_ids: list[str]) -> dict[str, object]:
    if not lot_ids:
        return {}
    return {r.lot_id: r for r in session.execute(select(lots).where(lots.c.lot_id.in_(lot_ids))).all()}


def lots_of_enterprise(session: Session, credit_code: str) -> list:
    """The lots an enterprise freed. Not by source_ref alone: a reclamation lot's is its project's id, which may be
    any text, a credit code too (a village collective's), and no enterprise freed that land."""
    return session.execute(select(lots).where(lots.c.source_ref == credit_code,
                                              lots.c.source_kind == SourceKind.ENTERPRISE.value)
                           .order_by(lots.c.lot_id)).all()

