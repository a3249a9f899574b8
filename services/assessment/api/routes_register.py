"""The enterprise register and the yearly figures departments send (HTTP door; Kafka and imports use the
same functions in register.py)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select

from services.assessment.api.deps import READ, WRITE, actor, checked_code, now, read, write
from services.assessment.api.schemas import (
    EnterpriseIn,
    EnterpriseOut,
    EnterprisesPage,
    IndicatorsIn,
    IndicatorsOut,
    PartOut,
    RegisterOut,
    WithdrawalIn,
)
from services.assessment.fields import BadFigures, format_figures, parse_figures, part_from_figures
from services.assessment.register import (
    CREATED, make_enterprise, record_parts, register_enterprises, unsaid, withdraw_part,
)
from services.assessment.storage.rows import loads, utc
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import indicator_parts as P
from services.assessment.storage.tables import indicators as I
from shared.auth import Principal
from shared.errors import Conflict, NotFound, Unprocessable

router = APIRouter(prefix="/v1", tags=["register"])


def enterprise_out(r) -> EnterpriseOut:
    return EnterpriseOut(credit_code=r.credit_code, name=r.name, county_code=r.county_code, township_code=r.township_code,
                         in_park=r.in_park, park_id=r.park_id, industry_code=r.industry_code, flags=loads(r.flags),
                         scale=r.scale, status=r.status, revision=r.revision, registered_at=utc(r.registered_at),
                         updated_at=utc(r.updated_at), updated_by=r.updated_by)


def _enterprise_row(s, code: str):
    r = s.execute(select(E).where(E.c.credit_code == code)).first()
    if r is None:
        raise NotFound("enterprise_not_found", f"no enterprise {code} in the register")
    return r


@router.post("/enterprises", response_model=RegisterOut, status_code=201,
             responses={200: {"model": RegisterOut, "description": "updated or unchanged"}, 422: {"description": "invalid"}},
             summary="Register an enterprise, or update its register entry")
def register(body: EnterpriseIn, request: Request, response: Response, p: Principal = Depends(WRITE)):
    code = checked_code(body.credit_code)
    try:
        e = make_enterprise(code, body.name, body.township_code, body.in_park, body.park_id, body.industry_code,
                            body.flags, body.scale)
    except ValueError as exc:
        raise Unprocessable("invalid_enterprise", str(exc)) from None

    def tx(uow):
        [result] = register_enterprises(uow.session, uow.outbox, [e], actor(p), now(), keep=unsaid(body.model_fields_set))
        return result, _enterprise_row(uow.session, code)

    result, row = write(request, tx)
    if result != CREATED:
        response.status_code = 200
    return RegisterOut(result=result, enterprise=enterprise_out(row))


@router.get("/enterprises/{credit_code}", response_model=EnterpriseOut, responses={404: {"description": "not registered"}})
def get_enterprise(credit_code: str, request: Request, _: Principal = Depends(READ)):
    code = checked_code(credit_code)
    return read(request, lambda s: enterprise_out(_enterprise_row(s, code)))


@router.get("/enterprises", response_model=EnterprisesPage, summary="A county's register, by credit code, paginated")
def list_enterprises(request: Request, county_code: str = Query(pattern=r"^[0-9]{6}$"), after: str = "",
                     limit: int = Query(default=100, ge=1, le=1000), _: Principal = Depends(READ)):
    def q(s):
        rows = s.execute(select(E).where(E.c.county_code == county_code, E.c.credit_code > after)
                         .order_by(E.c.credit_code).limit(limit + 1)).all()
        items = [enterprise_out(r) for r in rows[:limit]]
        return EnterprisesPage(items=items, next_after=items[-1].credit_code if len(rows) > limit else None)

    return read(request, q)


def _indicators_out(s, code: str, year: int, result: str | None = None, *, may_be_empty: bool = False) -> IndicatorsOut:
    merged = s.execute(select(I).where(I.c.credit_code == code, I.c.year == year)).first()
    if merged is None and not may_be_empty:
        raise NotFound("indicators_not_found", f"no figures for {code} in {year}")
    parts = s.execute(select(P).where(P.c.credit_code == code, P.c.year == year).order_by(P.c.department)).all()
    return IndicatorsOut(credit_code=code, year=year, result=result,
                         figures=format_figures(loads(merged.figures)) if merged else {},
                         sources=loads(merged.sources) if merged else {},
                         parts=[PartOut(department=r.department, figures=format_figures(loads(r.figures)),
                                        received_via=r.received_via, received_by=r.received_by,
                                        updated_at=utc(r.updated_at)) for r in parts])


@router.post("/indicators", response_model=IndicatorsOut, status_code=201,
             responses={409: {"description": "enterprise_not_registered, conflicting_departments (the county settles "
                                   "such a figure with a part of department 'county', which overrides the others)"},
                        422: {"description": "invalid_credit_code; a bad field (details: field, reason, message each): "
                              "unknown_field, pollutant_name_case ('emissions.nox': spelled 'NOx'), pollutant_name_variant "
                              "('emissions.NH3N': spelled 'NH3-N'), amount_*; invalid_figures (several bad fields)"}},
             summary="One department's figures for an enterprise and year, merged with the other departments'")
def record_indicators(body: IndicatorsIn, request: Request, response: Response, p: Principal = Depends(WRITE)):
    code = checked_code(body.credit_code)
    try:
        part = part_from_figures(code, body.year, body.department, parse_figures(body.fields))
    except BadFigures as exc:
        raise Unprocessable(exc.reason, str(exc), [vars(x) for x in exc.problems]) from None

    def tx(uow):
        [outcome] = record_parts(uow.session, uow.outbox, [part], actor(p), now())
        if outcome.result == "refused":
            raise Conflict(outcome.reason, outcome.message)
        return _indicators_out(uow.session, code, body.year, outcome.result)

    out = write(request, tx)
    if out.result != "recorded":
        response.status_code = 200
    return out


@router.post("/indicators/withdrawals", response_model=IndicatorsOut,
             responses={404: {"description": "indicators_not_found: no figures for the enterprise and year"},
                        409: {"description": "figure_not_given: the department's part holds no such figure; "
                                             "conflicting_departments: the figure is the county's settlement of "
                                             "departments that disagree (change it, do not withdraw it)"},
                        422: {"description": "invalid_credit_code, unknown_field"}},
             summary="A department takes back figures of its part (sent for the wrong enterprise or year); the merged "
                     "record falls back on the other departments' figures, and IndicatorsWithdrawn is published")
def withdraw_indicators(body: WithdrawalIn, request: Request, p: Principal = Depends(WRITE)):
    code = checked_code(body.credit_code)
    try:
        parse_figures({name: "0" for name in body.fields})  # the names only: an unknown one is 422
    except BadFigures as exc:
        raise Unprocessable(exc.reason, str(exc), [vars(x) for x in exc.problems]) from None

    def tx(uow):
        _indicators_out(uow.session, code, body.year)  # 404 when nothing is known
        outcome = withdraw_part(uow.session, uow.outbox, code, body.year, body.department, list(body.fields),
                                actor(p), now())
        if outcome.result == "refused":
            raise Conflict(outcome.reason, outcome.message)
        return _indicators_out(uow.session, code, body.year, outcome.result, may_be_empty=True)

    return write(request, tx)


@router.get("/enterprises/{credit_code}/indicators/{year}", response_model=IndicatorsOut,
            summary="The merged figures of an enterprise and year, and each department's part")
def get_indicators(credit_code: str, year: int, request: Request, _: Principal = Depends(READ)):
    code = checked_code(credit_code)
    return read(request, lambda s: _indicators_out(s, code, year))
