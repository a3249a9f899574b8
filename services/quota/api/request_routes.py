"""Handing quota out over HTTP: requests of admitted projects, cancellation, explicit allocation rounds."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from shared.auth import Principal
from shared.errors import Conflict, NotFound, Unprocessable
from services.quota.api import schemas as s
from services.quota.api.common import READ, WRITE, known_county, read, transact
from services.quota.api.intake_routes import _county_or_422
from services.quota.api.views import request_out, round_out
from services.quota.application import requests, rounds
from services.quota.application.intake import NotKnown
from services.quota.domain.requests import OPEN_STATES, RequestState
from services.quota.storage import request_store, round_store, transfer_store
from services.quota.storage.counties import county_known
from services.quota.storage.sql import loads

router = APIRouter(prefix="/v1", tags=["requests"])


def _request_view(request: Request, request_id: str) -> s.QuotaRequestOut:
    def view(session):
        req = request_store.load_request(session, request_id)
        if req is None:
            raise NotFound("request_not_found", f"no quota request {request_id!r}")
        return request_out(req, transfer_store.transfers_of_request(session, request_id))

    return read(request, view)


@router.post("/requests", response_model=s.QuotaRequestOut, status_code=201,
             responses={200: {"description": "the same request again: nothing changed"},
                        409: {"description": "project not admitted / unknown, or request id reused"},
                        422: {"description": "malformed lines (every problem listed)"}},
             summary="An admitted project asks for quota; it waits for the next allocation round")
def post_request(body: s.QuotaRequestIn, request: Request, response: Response, who: Principal = Depends(WRITE)):
    data = body.model_dump(mode="json", exclude_none=True)
    req, created = transact(request, lambda tx: requests.open_quota_request(tx, data, who.id))
    if not created:
        response.status_code = 200
    return _request_view(request, req.request_id)


@router.get("/requests/{request_id}", response_model=s.QuotaRequestOut)
def get_request(request_id: str, request: Request, _: Principal = Depends(READ)):
    return _request_view(request, request_id)


@router.get("/requests", response_model=s.RequestsPage, summary="Requests and their state ('open' = not closed)")
def list_requests(request: Request, county_code: str | None = None, project_id: str | None = None,
                  state: str | None = Query(default=None, description="a state, or 'open'"),
                  after: str | None = None, limit: int = Query(default=100, ge=1, le=1000),
                  _: Principal = Depends(READ)):
    try:
        states = [x.value for x in OPEN_STATES] if state == "open" else ([RequestState(state).value] if state else None)
    except ValueError:
        raise Unprocessable("state_unknown", f"state is 'open' or one of {[x.value for x in RequestState]}") from None
    def page_of(session):
        if county_code is not None:
            known_county(session, county_code)  # a typo is 404/422, not "nothing waiting in this county"
        found = request_store.list_requests(session, county_code, project_id, states, limit + 1, after)
        page = found[:limit]
        transfers = transfer_store.transfers_of_requests(session, [r.request_id for r in page])
        return s.RequestsPage(requests=[request_out(r, transfers.get(r.request_id, [])) for r in page],
                              next_after=page[-1].request_id if len(found) > limit else None)

    return read(request, page_of)


@router.post("/requests/{request_id}/cancel", response_model=s.QuotaRequestOut,
             summary="Cancel a request; whatever it holds in the ledger is voided")
def cancel(request_id: str, request: Request, body: s.CancelIn | None = None, _: Principal = Depends(WRITE)):
    tr = transact(request, lambda tx: requests.cancel_request(tx, request_id, (body or s.CancelIn()).reason))
    if not tr.changed:
        raise Conflict("request_closed", f"request {request_id} is already {tr.request.state.value}")
    return _request_view(request, request_id)


@router.post("/counties/{county_code}/rounds", response_model=s.RoundOut, status_code=201,
             summary="Run an allocation round: waiting requests in policy order, each granted whole or refused")
def run_round(county_code: str, request: Request, who: Principal = Depends(WRITE)):
    def round_of(tx):
        _county_or_422(county_code)  # before a malformed code reaches the county lock
        if not county_known(tx.session, county_code):  # a mistyped code would make a county of it (lock_county)
            raise NotKnown("county_unknown", f"nothing is known of county {county_code!r}")
        return rounds.run_round(tx, county_code, who.id)

    run = transact(request, round_of)
    return read(request, lambda session: round_out(round_store.round_row(session, run.round_id),
                                                   round_store.decisions_of(session, run.round_id)))


@router.get("/counties/{county_code}/rounds", response_model=list[s.RoundOut],
            summary="The county's rounds, latest first; older ones with before_seq (the seq of the last one listed)")
def list_rounds(county_code: str, request: Request, limit: int = Query(default=20, ge=1, le=200),
                before_seq: int | None = Query(default=None, ge=1, le=2**31 - 1), _: Principal = Depends(READ)):
    def view(session):
        known_county(session, county_code)
        return [round_out(r, round_store.decisions_of(session, r.round_id))
                for r in round_store.rounds_of(session, county_code, limit, before_seq)]

    return read(request, view)


@router.get("/rounds/{round_id}", response_model=s.RoundOut,
            summary="A round's decisions with their reasons; `reproducible` re-runs its stored inputs")
def get_round(round_id: str, request: Request, _: Principal = Depends(READ)):
    def view(session):
        row = round_store.round_row(session, round_id)
        if row is None:
            raise NotFound("round_not_found", f"no round {round_id!r}")
        decisions = round_store.decisions_of(session, round_id)
        again = rounds.replay_round(row.county_code, loads(row.inputs))
        same = [(d.rank, d.request_id, d.outcome.value, d.reason) for d in again.decisions] == \
               [(d.rank, d.request_id, d.outcome, d.reason) for d in decisions]
        return round_out(row, decisions, reproducible=same)

    return read(request, view)
