"""County decisions on recommendations, carrying them out, and rectification tasks."""
from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from services.assessment.api.deps import COUNTY, READ, WRITE, actor, checked_code, now, read, write
from services.assessment.api.schemas import (
    DecisionIn,
    DecisionOut,
    DecisionsOut,
    ExecutionIn,
    TaskCloseIn,
    TaskIn,
    TaskOut,
    TasksPage,
)
from services.assessment.dispositions import decide, decision_view, decisions_of, execute
from services.assessment.domain.disposition import Disposition
from services.assessment.storage.rows import utc
from services.assessment.tasks import close_task, get_task, is_overdue, list_tasks, open_task
from shared.auth import Principal
from shared.china_time import cst_date

router = APIRouter(prefix="/v1", tags=["dispositions"])
Year = Path(ge=1990, le=2200)


def decision_out(r) -> DecisionOut:
    d = decision_view(r)
    d.update(decided_at=utc(r.decided_at), executed_at=utc(r.executed_at))
    return DecisionOut(**d)


def task_out(r, today: date | None = None) -> TaskOut:
    return TaskOut(id=r.id, credit_code=r.credit_code, county_code=r.county_code, year=r.year, decision_id=r.decision_id,
                   disposition=r.disposition, deadline=r.deadline, status=r.status, closed_on=r.closed_on, note=r.note,
                   closing_note=r.closing_note,
                   created_by=r.created_by, created_at=utc(r.created_at), overdue=is_overdue(r, today or cst_date(now())))


@router.post("/dispositions", response_model=DecisionOut, status_code=201,
             responses={409: {"description": "not_assessed, decision_already_executed, enterprise_not_active"},
                        422: {"description": "invalid_decision (an override needs a reason, a decision "
                                              "names who took it); invalid_task (a deadline on a decision to do "
                                              "nothing)"}},
             summary="Confirm or override the recommendation (DispositionDecided); optionally open a rectification task. "
                     "The same decision again (same run, decision, decider, reason and task) answers the standing "
                     "one with 200 and publishes nothing")
def post_decision(body: DecisionIn, request: Request, response: Response, p: Principal = Depends(COUNTY)):
    code = checked_code(body.credit_code)
    decided = Disposition(body.decided) if body.decided else None
    row, created = write(request, lambda uow: decide(uow.session, uow.outbox, code, body.year, decided, body.decided_by,
                                                     body.reason, actor(p), now(), body.rectification_deadline))
    if not created:
        response.status_code = 200
    return decision_out(row)


@router.get("/dispositions/{credit_code}/{year}", response_model=DecisionsOut,
            responses={404: {"description": "enterprise_not_found (not in the register)"}},
            summary="The standing decision on an enterprise for a year, and every earlier one")
def get_decisions(credit_code: str, request: Request, year: int = Year, _: Principal = Depends(READ)):
    code = checked_code(credit_code)

    def q(s):
        standing, earlier = decisions_of(s, code, year)
        return DecisionsOut(standing=decision_out(standing) if standing else None,
                            history=[decision_out(r) for r in earlier])

    return read(request, q)


@router.post("/dispositions/{credit_code}/{year}/execution", response_model=DecisionOut, status_code=201,
             responses={200: {"description": "already recorded with the same figures"},
                        409: {"description": "no_decision, decision_outdated (the current run recommends otherwise: "
                                              "decide again), nothing_to_execute, decision_already_executed, "
                                              "enterprise_not_active, already_in_park (a relocation carried out "
                                              "already, for another year)"},
                        422: {"description": "effective_on_in_future, to_park_id_required"}},
             summary="The decision was carried out: a closure publishes EnterpriseExited, a relocation EnterpriseRelocated")
def post_execution(credit_code: str, body: ExecutionIn, request: Request, response: Response, year: int = Year,
                   p: Principal = Depends(WRITE)):
    code = checked_code(credit_code)
    row, created = write(request, lambda uow: execute(uow.session, uow.outbox, code, year, body.effective_on,
                                                      body.to_park_id, body.note, actor(p), now()))
    if not created:
        response.status_code = 200
    return decision_out(row)


@router.post("/tasks", response_model=TaskOut, status_code=201, summary="Open a rectification task (整治任务书)",
             responses={409: {"description": "task_id_reused, enterprise_not_active"}})
def post_task(body: TaskIn, request: Request, response: Response, p: Principal = Depends(WRITE)):
    code = checked_code(body.credit_code)
    row, created = write(request, lambda uow: open_task(uow.session, body.task_id, code, None, body.year, None,
                                                        Disposition(body.disposition), body.deadline, body.note,
                                                        actor(p), now()), conflict="task_id_reused")
    if not created:
        response.status_code = 200
    return task_out(row)


@router.get("/tasks/overdue", response_model=TasksPage, summary="Tasks past their deadline while open: today, or as they stood on the day as_of (China time)")
def get_overdue(request: Request, county_code: str | None = Query(default=None, pattern=r"^[0-9]{6}$"),
                as_of: date | None = None, after: str = "", limit: int = Query(default=100, ge=1, le=1000),
                _: Principal = Depends(READ)):
    return _page(request, county_code, None, as_of or cst_date(now()), after, limit)  # the county's today


@router.get("/tasks", response_model=TasksPage, summary="Tasks by county and status")
def get_tasks(request: Request, county_code: str | None = Query(default=None, pattern=r"^[0-9]{6}$"),
              status: str | None = Query(default=None, pattern="^(open|done|cancelled)$"), after: str = "",
              limit: int = Query(default=100, ge=1, le=1000), _: Principal = Depends(READ)):
    return _page(request, county_code, status, None, after, limit)


def _page(request: Request, county, status, overdue_on, after, limit) -> TasksPage:
    def q(s):
        rows = list_tasks(s, county=county, status=status, overdue_on=overdue_on, after=after, limit=limit + 1)
        items = [task_out(r, overdue_on) for r in rows[:limit]]
        return TasksPage(items=items, next_after=items[-1].id if len(rows) > limit else None)

    return read(request, q)


@router.get("/tasks/{task_id}", response_model=TaskOut, responses={404: {"description": "no such task"}})
def get_one_task(task_id: str, request: Request, _: Principal = Depends(READ)):
    return read(request, lambda s: task_out(get_task(s, task_id)))


@router.post("/tasks/{task_id}/completion", response_model=TaskOut,
             responses={409: {"description": "task_not_open"}, 422: {"description": "closed_on_in_future"}})
def complete(task_id: str, body: TaskCloseIn, request: Request, _: Principal = Depends(WRITE)):
    today = cst_date(now())
    return task_out(write(request, lambda uow: close_task(uow.session, task_id, body.on, body.note, cancel=False,
                                                          today=today)))


@router.post("/tasks/{task_id}/cancellation", response_model=TaskOut,
             responses={409: {"description": "task_not_open"}, 422: {"description": "reason_required, closed_on_in_future"}})
def cancel(task_id: str, body: TaskCloseIn, request: Request, _: Principal = Depends(WRITE)):
    today = cst_date(now())
    return task_out(write(request, lambda uow: close_task(uow.session, task_id, body.on, body.note, cancel=True,
                                                          today=today)))
