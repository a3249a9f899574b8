"""Reading the pool: figures per county and asset, lots, provenance of a project's quota, what an
enterprise freed and where it went, and reconciliation with the ledger."""
from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter, Depends, Query, Request

from shared.auth import Principal
from shared.errors import ApiError, NotFound
from services.quota.api import schemas as s
from services.quota.api.common import READ, known_county, read, runtime
from services.quota.api.views import consumption_out, lot_out, pool_assets, reconciliation_out, release_out
from services.quota.application.formats import cny, qty
from services.quota.application.pool import county_pool
from services.quota.application.reconciliation import (
    LedgerUnavailable, publish_metric, reconcile_counties, reconcile_county,
)
from services.quota.domain.assets import asset_problem
from services.quota.domain.problems import QuotaDomainError
from services.quota.storage import intake_store, provenance_store, request_store
from services.quota.storage.counties import county_codes

router = APIRouter(prefix="/v1", tags=["queries"])


@router.get("/counties/{county_code}/pool", response_model=s.PoolOut,
            summary="The county pool per asset: available, reserved, allocated, retired (and incoming)")
def pool(county_code: str, request: Request, _: Principal = Depends(READ)):
    def view(session):
        known_county(session, county_code)
        return pool_assets(county_pool(session, county_code))

    return s.PoolOut(county_code=county_code, assets=read(request, view))


@router.get("/counties/{county_code}/lots", response_model=s.LotsPage, summary="Lots with their remaining amounts")
def lots(county_code: str, request: Request, asset: str | None = None, with_remaining: bool = False,
         after: str | None = None, limit: int = Query(default=100, ge=1, le=1000), _: Principal = Depends(READ)):
    def rows_of(session):
        known_county(session, county_code)
        if asset is not None and (p := asset_problem(asset)) is not None:
            raise QuotaDomainError([p])
        return intake_store.list_lots(session, county_code, asset, with_remaining, limit + 1, after)

    rows = read(request, rows_of)
    page = rows[:limit]
    return s.LotsPage(lots=[lot_out(r) for r in page], next_after=page[-1].lot_id if len(rows) > limit else None)


@router.get("/projects/{project_id}/provenance", response_model=s.ProvenanceOut,
            summary="Which lots (enterprise, township) a project's allocated quota came from")
def provenance(project_id: str, request: Request, _: Principal = Depends(READ)):
    def view(session):
        allocs = provenance_store.allocations_where(session, project_id=project_id)
        if not allocs and request_store.project_row(session, project_id) is None:
            raise NotFound("project_unknown", f"no project {project_id!r} was evaluated or allocated quota")
        used = provenance_store.consumptions_where(session, project_id=project_id)
        by_line = defaultdict(list)
        for c in used:
            by_line[(c.request_id, c.asset)].append(c)
        totals: dict[str, int] = defaultdict(int)
        out = []
        for a in allocs:
            totals[a.asset] += a.amount
            out.append(s.AllocationOut(request_id=a.request_id, asset=a.asset, amount=qty(a.asset, a.amount),
                                       price_per_unit=cny(a.price_fen_per_unit), amount_due=cny(a.amount_due_fen),
                                       allocated_on=a.allocated_on,
                                       lots=[consumption_out(c) for c in by_line[(a.request_id, a.asset)]]))
        return s.ProvenanceOut(project_id=project_id, allocations=out,
                               totals={k: qty(k, v) for k, v in sorted(totals.items())})

    return read(request, view)


@router.get("/enterprises/{credit_code}/freed", response_model=s.EnterpriseTrailOut,
            summary="What an enterprise freed (its releases and lots) and which projects its quota went to")
def enterprise_trail(credit_code: str, request: Request, _: Principal = Depends(READ)):
    def view(session):
        rels = intake_store.releases_of_enterprise(session, credit_code)
        lots_rows = intake_store.lots_of_enterprise(session, credit_code)
        used = provenance_store.consumptions_where(session, lot_ids=[r.lot_id for r in lots_rows])
        by_lot = defaultdict(list)
        for c in used:
            by_lot[c.lot_id].append(c)
        if not rels and not lots_rows:
            raise NotFound("enterprise_unknown", f"no release from {credit_code!r}")
        return s.EnterpriseTrailOut(
            enterprise_credit_code=credit_code, releases=[release_out(r) for r in rels],
            lots=[s.FreedLotOut(lot_id=r.lot_id, asset=r.asset, amount=qty(r.asset, r.amount),
                                retired=qty(r.asset, r.retired), remaining=qty(r.asset, r.remaining),
                                went_to=[consumption_out(c) for c in by_lot[r.lot_id]]) for r in lots_rows])

    return read(request, view)


def _ledger(request: Request):
    return request.app.state.ledger_balances


@router.get("/counties/{county_code}/reconciliation", response_model=s.ReconciliationOut,
            summary="This county's pool figures against the ledger's balances (differences listed)")
def reconciliation(county_code: str, request: Request, _: Principal = Depends(READ)):
    read(request, lambda session: known_county(session, county_code))
    try:  # our figures are read in short snapshots of their own, never held open while the ledger is asked
        rep = reconcile_county(runtime(request).db, _ledger(request), county_code)
    except LedgerUnavailable as exc:
        raise ApiError(503, "ledger_unavailable", str(exc)) from None
    return reconciliation_out(rep)


@router.post("/reconciliation:run", response_model=list[s.ReconciliationOut],
             summary="Reconcile every county and set the countypool_quota_reconciliation_difference metric")
def reconcile_all(request: Request, _: Principal = Depends(READ)):
    counties = read(request, county_codes)
    try:
        reports = reconcile_counties(runtime(request).db, _ledger(request), counties)
    except LedgerUnavailable as exc:
        raise ApiError(503, "ledger_unavailable", str(exc)) from None
    publish_metric(reports)
    return [reconciliation_out(r) for r in reports]

