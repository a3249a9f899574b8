"""Rows of the demand side: evaluated projects, their approvals, quota requests and their lines."""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Iterable

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from services.quota.domain.assets import ApprovalKind
from services.quota.domain.projects import ProjectFacts
from services.quota.domain.requests import HOLDING_STATES, OPEN_STATES, QuotaRequest, RequestLine, RequestState
from services.quota.storage.sql import dumps, insert_ignore, loads, utc
from services.quota.storage.tables import project_approvals, projects, quota_requests, request_lines


# -- projects --------------------------------------------------------------------------------------
def upsert_project(session: Session, values: dict) -> None:
    pid = values["project_id"]
    if session.execute(select(projects.c.project_id).where(projects.c.project_id == pid)).first() is None:
        session.execute(projects.insert().values(**values))
    else:
        session.execute(update(projects).where(projects.c.project_id == pid).values(**values))


def lock_project(session: Session, project_id: str) -> None:
    """Hold the project's lock until the transaction ends, whether or not it has a projects row yet: every
    evaluation of the project takes it before it writes the row, and an approval that finds no row takes it
    before it looks again (services/quota/README.md, lock order). PostgreSQL: an advisory lock on a 64-bit hash
    of the id (a collision only makes two projects wait for each other). SQLite runs one writer at a time."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(f"countypool-quota-project:{project_id}".encode(), digest_size=8).digest(),
                             "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def project_row(session: Session, project_id: str):
    return session.execute(select(projects).where(projects.c.project_id == project_id)).first()


def project_facts(row) -> ProjectFacts:
    return ProjectFacts(row.project_id, row.county_code, row.admitted, row.project_class, row.tax_per_mu_fen,
                        row.industry_code, land_allowed=row.land_allowed is not False)


def project_admitted(session: Session, project_id: str) -> bool:
    """What the latest evaluation says now (a request keeps the facts it arrived with)."""
    row = project_row(session, project_id)
    return row is not None and bool(row.admitted)


def record_approval(session: Session, project_id: str, kind: str, document_ref: str, granted_on, now) -> bool:
    return insert_ignore(session, project_approvals, dict(project_id=project_id, kind=kind, document_ref=document_ref,
                                                          granted_on=granted_on, recorded_at=now))


def approvals_of(session: Session, project_id: str) -> frozenset[ApprovalKind]:
    rows = session.execute(select(project_approvals.c.kind).where(project_approvals.c.project_id == project_id))
    return frozenset(ApprovalKind(k) for k in rows.scalars())


# -- requests --------------------------------------------------------------------------------------
def _request(row, lines: list) -> QuotaRequest:
    facts = ProjectFacts(row.project_id, row.county_code, row.project_admitted, row.project_class,
                         row.tax_per_mu_fen, row.industry_code)
    return QuotaRequest(
        request_id=row.request_id, project=facts, county_code=row.county_code,
        lines=tuple(RequestLine(l.asset, l.amount, ApprovalKind(l.approval_kind))
                    for l in sorted(lines, key=lambda l: l.position)),
        requested_at=utc(row.requested_at), deadline=utc(row.deadline), state=RequestState(row.state),
        approvals=frozenset(ApprovalKind(k) for k in loads(row.approvals)),
        reserved_assets=frozenset(loads(row.reserved_assets)), reason=row.reason, updated_at=utc(row.updated_at),
    )


def request_row(session: Session, request_id: str):
    return session.execute(select(quota_requests).where(quota_requests.c.request_id == request_id)).first()


def request_lines_of(session: Session, request_id: str) -> list:
    return session.execute(select(request_lines).where(request_lines.c.request_id == request_id)).all()


def load_requests(session: Session, rows: list) -> list[QuotaRequest]:
    if not rows:
        return []
    ids = [r.request_id for r in rows]
    by_req: dict[str, list] = {}
    for chunk in range(0, len(ids), 500):
        for line in session.execute(select(request_lines).where(request_lines.c.request_id.in_(ids[chunk:chunk + 500]))):
            by_req.setdefault(line.request_id, []).append(line)
    return [_request(r, by_req.get(r.request_id, [])) for r in rows]


def load_request(session: Session, request_id: str) -> QuotaRequest | None:
    row = request_row(session, request_id)
    return load_requests(session, [row])[0] if row else None


def insert_request(session: Session, req: QuotaRequest, *, park_id: str | None, digest: str, by: str) -> None:
    p = req.project
    session.execute(quota_requests.insert().values(
        request_id=req.request_id, project_id=p.project_id, county_code=req.county_code, state=req.state.value,
        requested_at=req.requested_at, deadline=req.deadline, approvals=dumps(sorted(a.value for a in req.approvals)),
        reserved_assets=dumps(sorted(req.reserved_assets)), reason=req.reason, updated_at=req.updated_at,
        project_admitted=p.admitted, project_class=p.project_class, tax_per_mu_fen=p.tax_per_mu_fen,
        industry_code=p.industry_code, park_id=park_id, digest=digest, requested_by=by, reserved_at=None))
    session.execute(request_lines.insert(), [
        dict(request_id=req.request_id, asset=l.asset, position=i, amount=l.amount, approval_kind=l.approval_kind.value)
        for i, l in enumerate(req.lines)])


def save_request(session: Session, req: QuotaRequest, *, reserved_at: datetime | None = None) -> bool:
    """Returns whether the request's state changed (a line reserved or an approval remembered changes no state)."""
    before = session.execute(select(quota_requests.c.state).where(quota_requests.c.request_id == req.request_id)).scalar()
    values = dict(state=req.state.value, deadline=req.deadline, approvals=dumps(sorted(a.value for a in req.approvals)),
                  reserved_assets=dumps(sorted(req.reserved_assets)), reason=req.reason, updated_at=req.updated_at)
    if reserved_at is not None:
        values["reserved_at"] = reserved_at
    session.execute(update(quota_requests).where(quota_requests.c.request_id == req.request_id).values(**values))
    return before != req.state.value


def waiting_requests(session: Session, county_code: str) -> list[QuotaRequest]:
    rows = session.execute(select(quota_requests).where(
        (quota_requests.c.county_code == county_code) & (quota_requests.c.state == RequestState.REQUESTED.value))
        .order_by(quota_requests.c.request_id)).all()
    return load_requests(session, rows)


def open_requests_of_project(session: Session, project_id: str) -> list[QuotaRequest]:
    rows = session.execute(select(quota_requests).where(
        (quota_requests.c.project_id == project_id)
        & quota_requests.c.state.in_([s.value for s in OPEN_STATES])).order_by(quota_requests.c.request_id)).all()
    return load_requests(session, rows)


def due_open_requests(session: Session, county_code: str, now: datetime) -> list[QuotaRequest]:
    """The county's open requests whose deadline passed (waiting or holding quota)."""
    rows = session.execute(select(quota_requests).where(
        (quota_requests.c.county_code == county_code)
        & quota_requests.c.state.in_([s.value for s in OPEN_STATES]) & (quota_requests.c.deadline <= now))
        .order_by(quota_requests.c.request_id)).all()
    return load_requests(session, rows)


def open_requests_not_admitted(session: Session, county_code: str) -> list[QuotaRequest]:
    """The county's open requests whose project the latest evaluation no longer admits."""
    rows = session.execute(select(quota_requests).select_from(
        quota_requests.outerjoin(projects, projects.c.project_id == quota_requests.c.project_id)).where(
        (quota_requests.c.county_code == county_code)
        & quota_requests.c.state.in_([s.value for s in OPEN_STATES])
        & or_(projects.c.project_id.is_(None), projects.c.admitted.is_(False)))
        .order_by(quota_requests.c.request_id)).all()
    return load_requests(session, rows)


def due_requests(session: Session, now: datetime, limit: int) -> list[tuple[str, str]]:
    """(request_id, county_code) of open requests whose deadline passed."""
    rows = session.execute(select(quota_requests.c.request_id, quota_requests.c.county_code).where(
        quota_requests.c.state.in_([s.value for s in OPEN_STATES]) & (quota_requests.c.deadline <= now))
        .order_by(quota_requests.c.deadline).limit(limit)).all()
    return [(r.request_id, r.county_code) for r in rows]


def counties_with_waiting_requests(session: Session) -> list[str]:
    return list(session.execute(select(quota_requests.c.county_code).where(
        quota_requests.c.state == RequestState.REQUESTED.value).distinct()).scalars())


def held_by_asset(session: Session, county_code: str) -> dict[str, int]:
    """What requests in reserving/reserved keep out of the county's availability, per asset."""
    rows = session.execute(
        select(request_lines.c.asset, func.sum(request_lines.c.amount))
        .select_from(request_lines.join(quota_requests, quota_requests.c.request_id == request_lines.c.request_id))
        .where(and_(quota_requests.c.county_code == county_code,
                    quota_requests.c.state.in_([s.value for s in HOLDING_STATES])))
        .group_by(request_lines.c.asset)).all()
    return {r[0]: int(r[1] or 0) for r in rows}


def list_requests(session: Session, county_code: str | None, project_id: str | None, states: Iterable[str] | None,
                  limit: int, after: str | None) -> list[QuotaRequest]:
    q = select(quota_requests)
    if county_code:
        q = q.where(quota_requests.c.county_code == county_code)
    if project_id:
        q = q.where(quota_requests.c.project_id == project_id)
    if states:
        q = q.where(quota_requests.c.state.in_(list(states)))
    if after:
        q = q.where(quota_requests.c.request_id > after)
    return load_requests(session, session.execute(q.order_by(quota_requests.c.request_id).limit(limit)).all())


def project_ids_of_county(session: Session, county_code: str) -> list[str]:
    return list(session.execute(select(quota_requests.c.project_id).where(
        quota_requests.c.county_code == county_code).distinct()).scalars())

