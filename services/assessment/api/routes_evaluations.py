"""Evaluation runs, their per-enterprise results and breakdowns, and the cluster ranking."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from services.assessment.api.deps import READ, WRITE, actor, checked_code, now, read, write
from services.assessment.api.schemas import (
    BreakdownOut,
    ClusterRankingOut,
    EvaluateIn,
    EvaluateOut,
    ResultRow,
    ResultsPage,
    RunOut,
)
from services.assessment.evaluations import (
    breakdown_path,
    cluster_ranking,
    current_run,
    evaluate,
    get_run,
    kept_ranking,
    list_runs,
    result_of,
    results_page,
)
from services.assessment.storage.rows import loads, utc
from shared.auth import Principal

router = APIRouter(prefix="/v1", tags=["evaluations"])


def run_out(s, r) -> RunOut:
    cur = current_run(s, r.county_code, r.year)
    return RunOut(run_id=r.run_id, county_code=r.county_code, year=r.year, policy_version=r.policy_version,
                  policy_hash=r.policy_hash, inputs_hash=r.inputs_hash, content_hash=r.content_hash,
                  enterprise_count=r.enterprise_count, without_data=r.without_data, class_counts=loads(r.class_counts),
                  benchmarks=loads(r.benchmarks), averages=loads(r.averages), created_by=r.created_by,
                  created_at=utc(r.created_at), last_requested_at=utc(r.last_requested_at),
                  current=cur is not None and cur.run_id == r.run_id)


@router.post("/evaluations", response_model=EvaluateOut, status_code=201,
             responses={200: {"model": EvaluateOut, "description": "same inputs and policy: the existing run, made the "
                                                                  "current one (EvaluationRunMadeCurrent 'reinstated' "
                                                                  "if it was not; nothing if it was)"},
                        422: {"description": "nothing_to_evaluate, benchmark_needs_last_year_average, "
                                           "score_out_of_range (a score of 10^24 or more)"}},
             summary="Evaluate a county-year: every enterprise scored, classed, ranked; EnterpriseAssessed per enterprise "
                     "and EvaluationRunMadeCurrent")
def post_evaluation(body: EvaluateIn, request: Request, response: Response, p: Principal = Depends(WRITE)):
    def tx(uow):
        row, created = evaluate(uow.session, uow.outbox, body.county_code, body.year, actor(p), now())
        return EvaluateOut(created=created, run=run_out(uow.session, row))

    out = write(request, tx)
    if not out.created:
        response.status_code = 200
    return out


@router.get("/evaluations", response_model=list[RunOut], summary="The runs of a county-year, oldest first")
def get_runs(request: Request, county_code: str = Query(pattern=r"^[0-9]{6}$"), year: int = Query(ge=1990, le=2200),
             _: Principal = Depends(READ)):
    return read(request, lambda s: [run_out(s, r) for r in list_runs(s, county_code, year)])


@router.get("/evaluations/{run_id}", response_model=RunOut, responses={404: {"description": "no such run"}})
def get_evaluation(run_id: str, request: Request, _: Principal = Depends(READ)):
    return read(request, lambda s: run_out(s, get_run(s, run_id)))


@router.get("/evaluations/{run_id}/enterprises", response_model=ResultsPage, summary="Results of a run by credit code")
def get_results(run_id: str, request: Request, after: str = "", limit: int = Query(default=100, ge=1, le=1000),
                class_label: str | None = None, _: Principal = Depends(READ)):
    def q(s):
        get_run(s, run_id)
        rows = results_page(s, run_id, after, limit + 1, class_label)
        items = [ResultRow(credit_code=r.credit_code, group=r.group_name, class_label=r.class_label, score=r.score,
                           rank=r.rank, recommendation=r.recommendation, breakdown_ref=breakdown_path(run_id, r.credit_code))
                 for r in rows[:limit]]
        return ResultsPage(items=items, next_after=items[-1].credit_code if len(rows) > limit else None)

    return read(request, q)


@router.get("/evaluations/{run_id}/enterprises/{credit_code}", response_model=BreakdownOut,
            summary="One enterprise's result: every term, bonus and penalty, class, rank and recommendation with reasons")
def get_breakdown(run_id: str, credit_code: str, request: Request, _: Principal = Depends(READ)):
    code = checked_code(credit_code)

    def q(s):
        run = get_run(s, run_id)
        b = loads(result_of(s, run_id, code).breakdown)
        return BreakdownOut(run_id=run_id, county_code=run.county_code, year=run.year, policy_version=run.policy_version,
                            policy_hash=run.policy_hash, **b)

    return read(request, q)


@router.get("/clusters/{county_code}/{year}/ranking", response_model=ClusterRankingOut,
            responses={422: {"description": "nothing_to_evaluate (no figures for the county-year), "
                                           "benchmark_needs_last_year_average"}},
            summary="Parks and clusters ranked from their enterprises' aggregated figures: the current evaluation "
                    "run's ranking, as kept when it was made (no run yet: today's figures and policy)")
def get_cluster_ranking(request: Request, county_code: str = Path(pattern=r"^[0-9]{6}$"), year: int = Path(ge=1990, le=2200),
                        _: Principal = Depends(READ)):
    def q(s):
        doc, run_id = cluster_ranking(s, county_code, year)
        return ClusterRankingOut(county_code=county_code, year=year, run_id=run_id, **doc)

    return read(request, q)


@router.get("/evaluations/{run_id}/clusters", response_model=ClusterRankingOut,
            responses={404: {"description": "run_not_found; ranking_not_kept (a run made before rankings were kept)"}},
            summary="The parks' and clusters' ranking of one evaluation run, as kept when the run was made")
def get_run_cluster_ranking(run_id: str, request: Request, _: Principal = Depends(READ)):
    def q(s):
        run = get_run(s, run_id)
        return ClusterRankingOut(county_code=run.county_code, year=run.year, run_id=run_id, **kept_ranking(run))

    return read(request, q)
