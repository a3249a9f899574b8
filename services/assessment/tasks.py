"""Rectification tasks (整治任务书): what must happen to an enterprise by when, open until done or cancelled.
Transitions follow domain/disposition.RectificationTask; an open task past its deadline is overdue (the
deadline day itself is still on time). An exited enterprise gets no new task (its open ones are closed when
it exits, dispositions.execute); a task is closed on a day that has come (the county's today at the latest)."""
from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from services.assessment.domain.disposition import Disposition, RectificationTask, TaskStatus
from services.assessment.events import Actor
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import rectification_tasks as T
from shared.errors import Conflict, NotFound, Unprocessable


def _domain(r) -> RectificationTask:
    return RectificationTask(r.id, r.credit_code, Disposition(r.disposition), r.deadline, TaskStatus(r.status),
                             r.closed_on, r.note, r.closing_note)


def get_task(s: Session, task_id: str, *, lock: bool = False):
    q = select(T).where(T.c.id == task_id)
    r = s.execute(q.with_for_update() if lock else q).first()
    if r is None:
        raise NotFound("task_not_found", f"no rectification task {task_id!r}")
    return r


def open_task(s: Session, task_id: str | None, credit_code: str, county: str | None, year: int | None,
              decision_id: int | None, disposition: Disposition, deadline: date, note: str, actor: Actor,
              now: datetime) -> tuple[object, bool]:
    """Returns (row, created). A given id already used with the same content is returned as is. The enterprise's
    register row is locked first, as carrying out its closure locks it: a task read the enterprise active while the
    closure, not yet committed, closed the open tasks it could see, and stayed open (overdue) on an exited one."""
    ent = s.execute(select(E.c.county_code, E.c.status).where(E.c.credit_code == credit_code)
                    .with_for_update(key_share=True)).first()
    if ent is None:
        raise NotFound("enterprise_not_found", f"no enterprise {credit_code} in the register")
    county = county or ent.county_code
    task_id = task_id or f"task-{uuid.uuid4().hex[:20]}"
    try:
        RectificationTask(task_id, credit_code, disposition, deadline, note=note)
    except ValueError as exc:
        raise Unprocessable("invalid_task", str(exc)) from None
    existing = s.execute(select(T).where(T.c.id == task_id)).first()
    if existing is not None:
        # the year too: a retry naming another year was answered with the task of the first, as if it were the same
        same = (existing.credit_code, existing.disposition, existing.deadline, existing.note, existing.year) == (
            credit_code, disposition.value, deadline, note, year)
        if not same:
            raise Conflict("task_id_reused", f"task {task_id} exists with other content")
        return existing, False
    if ent.status != "active":
        raise Conflict("enterprise_not_active", f"{credit_code} is {ent.status}: it gets no rectification task")
    s.execute(T.insert().values(id=task_id, credit_code=credit_code, county_code=county, year=year,
                                decision_id=decision_id, disposition=disposition.value, deadline=deadline,
                                status="open", closed_on=None, note=note, created_by=actor.principal, created_at=now))
    return get_task(s, task_id), True


def close_task(s: Session, task_id: str, on: date, note: str, *, cancel: bool, today: date | None = None):
    """``today``: the county's day; a task is not closed on a later one. The task is locked while read: a completion
    and a cancellation at once both found it open, both were answered 200, and the last write replaced the other."""
    row = get_task(s, task_id, lock=True)
    if cancel and not note.strip():
        raise Unprocessable("reason_required", "a cancellation says why")
    if today is not None and on > today:
        raise Unprocessable("closed_on_in_future", f"{on} is after today ({today} in China): record it on the day")
    try:
        t = _domain(row).cancel(on, note) if cancel else _domain(row).complete(on, note)
    except ValueError as exc:
        raise Conflict("task_not_open", str(exc)) from None
    s.execute(update(T).where(T.c.id == task_id).values(status=t.status.value, closed_on=t.closed_on,
                                                       closing_note=t.closing_note))
    return get_task(s, task_id)


def list_tasks(s: Session, *, county: str | None, status: str | None, overdue_on: date | None, after: str,
               limit: int) -> list:
    q = select(T).where(T.c.id > after)
    if county:
        q = q.where(T.c.county_code == county)
    if overdue_on is not None:  # as the tasks stood on that day (RectificationTask.is_overdue)
        q = q.where(T.c.deadline < overdue_on, or_(T.c.closed_on.is_(None), T.c.closed_on > overdue_on))
    elif status:
        q = q.where(T.c.status == status)
    return s.execute(q.order_by(T.c.id).limit(limit)).all()


def is_overdue(r, today: date) -> bool:
    return _domain(r).is_overdue(today)
