"""Evaluation runs: a county-year's enterprises scored, classed and ranked under one policy version.

A run is named by its content hash: running again over the same inputs and policy finds the same run
(no duplicate, no second round of EnterpriseAssessed) and makes it the county-year's current run again; a new
policy version or corrected figures give a new run, and old runs stay readable. Enterprises of the register with
no figures for the year are not evaluated (counted as ``without_data``): missing data is not a score.

Every change of the county-year's current run is an EvaluationRunMadeCurrent event (key ``<county>/<year>``),
written in the transaction that makes it: ``created`` after a new run's EnterpriseAssessed events, ``reinstated``
when an older run becomes current again (a correction taken back: a policy put back as it was is a new version,
whose hash differs, so it makes a new run). A reinstated run
does not publish its EnterpriseAssessed again (a county run has 100,000 of them): readers take its results from
the earlier EnterpriseAssessed events carrying its run_id, or from GET /v1/evaluations/{run_id}/enterprises.
Requesting the current run again publishes nothing. Evaluations of one county-year take its lock (PostgreSQL; SQLite
has one writer), so the run each event names as previous is the one its readers saw current before it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.gc_pause import collector_paused
from services.assessment.domain.clusters import ClusterRanking, rank_clusters
from services.assessment.domain.county_scoring import PackedScore, plain4
from services.assessment.domain.enterprise import Enterprise, YearlyIndicators
from services.assessment.domain.evaluation import EvaluationRun, run_evaluation
from services.assessment.domain.policy import AssessmentPolicy, BenchmarkUnavailable, RelativeBenchmark
from services.assessment.events import Actor, emit, emit_plain
from services.assessment.policies import current_policy, ensure_policy
from services.assessment.storage import locks
from services.assessment.storage.bulk_rows import insert_tuples
from services.assessment.storage.rows import (
    ENTERPRISE_COLUMNS,
    dumps,
    enterprise_from_row,
    indicators_from_row,
    loads,
    utc,
)
from services.assessment.storage.tables import decisions as D
from services.assessment.storage.tables import enterprise_results as R
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import evaluation_runs as RUNS
from services.assessment.storage.tables import indicators as I
from shared.contracts.assessment import EnterpriseAssessed, EvaluationRunMadeCurrent
from shared.db import one_moment
from shared.errors import NotFound, Unprocessable
from shared.outbox import Outbox


@dataclass(frozen=True)
class CountyInputs:
    enterprises: list[Enterprise]  # active, with figures for the year
    indicators: list[YearlyIndicators]
    without_data: int


def in_register_for(county: str, year: int):
    """The county's enterprises that operated through ``year``: the active ones, and those closed with effect after
    the year ended. A closure decided on a year's run takes effect in a later year: without those, a re-run of
    that year (corrected figures, a new policy version) would leave the closed enterprises out and move every
    other enterprise's rank and class, though nothing about them changed."""
    closed_after = select(D.c.credit_code).where(D.c.county_code == county, D.c.status == "executed",
                                                  D.c.decided == "close", D.c.effective_on > date(year, 12, 31))
    return (E.c.county_code == county) & ((E.c.status == "active") | E.c.credit_code.in_(closed_after))


def located_for(s: Session, county: str, year: int) -> dict[str, tuple[bool, str | None]]:
    """credit code -> (in_park, park_id) where an enterprise stood through ``year``, for those relocated with effect
    after it (the register holds where they are now): the place before the first such relocation."""
    rows = s.execute(select(D.c.credit_code, D.c.prior_in_park, D.c.prior_park_id).where(
        D.c.county_code == county, D.c.status == "executed", D.c.decided == "relocate",
        D.c.effective_on > date(year, 12, 31), D.c.prior_in_park.is_not(None))
        .order_by(D.c.effective_on.desc(), D.c.id.desc())).all()
    return {code: (in_park, park) for code, in_park, park in rows}  # the earliest, written last, stays


def load_county(s: Session, county: str, year: int) -> CountyInputs:
    active = in_register_for(county, year)
    ents = [enterprise_from_row(r) for r in s.execute(select(*ENTERPRISE_COLUMNS).where(active)
                                                       .order_by(E.c.credit_code)).all()]
    moved = located_for(s, county, year)
    if moved:  # a relocation decided on this year's run takes effect later: the year is judged where it was
        ents = [replace(e, in_park=moved[e.credit_code][0], park_id=moved[e.credit_code][1])
                if e.credit_code in moved else e for e in ents]
    figures = [indicators_from_row(r) for r in s.execute(
        select(I.c.credit_code, I.c.year, I.c.figures, I.c.sources).join(E, E.c.credit_code == I.c.credit_code)
        .where(active, I.c.year == year)).all()]
    have = {f.credit_code for f in figures}
    return CountyInputs([e for e in ents if e.credit_code in have], figures, len(ents) - len(have))


def _uses_relative(policy: AssessmentPolicy) -> bool:
    return any(isinstance(t.benchmark, RelativeBenchmark) for g in policy.groups for t in g.terms)


def last_year_averages(s: Session, county: str, year: int, policy: AssessmentPolicy) -> dict | None:
    """The averages of last year's current run, only when the policy has relative benchmarks (so a re-run of
    last year does not change this year's inputs hash for a county with fixed benchmarks)."""
    if not _uses_relative(policy):
        return None
    prev = current_run(s, county, year - 1)
    if prev is None:
        return None
    return {g: {k: Decimal(v) for k, v in m.items()} for g, m in loads(prev.averages).items()}


def _domain_run(s: Session, county: str, year: int, policy: AssessmentPolicy,
                timings: dict) -> tuple[EvaluationRun, CountyInputs, dict | None]:
    """(the run, its inputs, last year's averages it used)."""
    t0 = time.perf_counter()
    # The register, relocations and figures as of one moment after the county-year's lock: read statement by
    # statement under READ COMMITTED, a register or figure written between them (another replica, the intake
    # topic) gave figures of an enterprise not in the list read (a 500) or a run of inputs the county never held.
    with one_moment(s) as snapshot:
        inputs = load_county(snapshot, county, year)
        if not inputs.enterprises:
            raise Unprocessable("nothing_to_evaluate", f"no active enterprise of {county} has figures for {year}")
        averages = last_year_averages(snapshot, county, year, policy)
    t1 = time.perf_counter()
    try:
        run = run_evaluation(county, year, inputs.enterprises, inputs.indicators, policy, averages)
    except BenchmarkUnavailable as exc:
        raise Unprocessable(exc.reason, str(exc), {"group": exc.group, "indicator": exc.indicator}) from None
    timings.update(load_seconds=t1 - t0, score_seconds=time.perf_counter() - t1)
    _check_scores(run)
    return run, inputs, averages


# A score is published with its 4 decimals exact (a Decimal of 28 digits): below 10^24, which also keeps it within
# EnterpriseAssessed (30 integer digits) and the results' score column (40 characters). Only an uncapped term over a
# benchmark near 0 gets there (the policy checks allow 10^-12, and multipliers to 10^15): such a run was a 500 when
# its events were built, after the score had been rounded to 28 digits
SCORE_LIMIT = 10**24


def _check_scores(run: EvaluationRun) -> None:
    for r in run.results:
        score = r.score
        if not score:
            continue
        if (abs(score.total4) >= SCORE_LIMIT * 10**4 if type(score) is PackedScore
                else abs(score.exact_total) >= SCORE_LIMIT):
            raise Unprocessable("score_out_of_range",
                                f"{r.credit_code} scores 10^24 or more: a score is published below that (is a term "
                                f"uncapped over a benchmark near 0?)", {"credit_code": r.credit_code, "group": r.group})


def run_id_of(county: str, year: int, content_hash: str) -> str:
    return f"{county}-{year}-{content_hash[:16]}"


def breakdown_path(run_id: str, credit_code: str) -> str:
    return f"/v1/evaluations/{run_id}/enterprises/{credit_code}"


def plain_decimal(d: Decimal | None) -> str | None:
    return None if d is None else format(d, "f")


def evaluate(s: Session, outbox: Outbox, county: str, year: int, actor: Actor, now: datetime,
             timings: dict | None = None) -> tuple[object, bool]:
    """Run (or find) the county-year's evaluation; returns (run row, created). ``timings``, when given,
    receives the seconds spent loading, scoring, building the events and writing (for the bench)."""
    with collector_paused():
        return _evaluate(s, outbox, county, year, actor, now, timings if timings is not None else {})


def _evaluate(s: Session, outbox: Outbox, county: str, year: int, actor: Actor, now: datetime,
              timings: dict) -> tuple[object, bool]:
    lock_county_year(s, county, year)
    policy = ensure_policy(s, outbox, county, year, actor, now).policy
    run, inputs, averages = _domain_run(s, county, year, policy, timings)
    run_id = run_id_of(county, year, run.content_hash)
    previous = current_run(s, county, year)  # before this request touches last_requested_at
    at = requested_at(now, previous, run_id)
    found = s.execute(select(RUNS).where(RUNS.c.run_id == run_id)).first()
    if found is not None:
        # without_data counts the register as it is when the run is made current: enterprises registered since
        # without figures change no input (so no new run), but they are still not evaluated
        s.execute(update(RUNS).where(RUNS.c.run_id == run_id).values(last_requested_at=at,
                                                                      without_data=inputs.without_data))
        row = s.execute(select(RUNS).where(RUNS.c.run_id == run_id)).one()
        if previous is not None and previous.run_id != run_id:  # an older run current again
            _made_current(s, outbox, actor, row, previous.run_id, "reinstated")
        return row, False
    t0 = time.perf_counter()
    created = created_after_the_last(s, county, year, now)
    ranking = _rank_clusters(county, year, inputs, policy, averages, run.inputs_hash)
    s.execute(RUNS.insert().values(
        run_id=run_id, county_code=county, year=year, policy_version=run.policy_version, policy_hash=run.policy_hash,
        inputs_hash=run.inputs_hash, content_hash=run.content_hash, enterprise_count=len(run.results),
        without_data=inputs.without_data, class_counts=dumps(run.class_counts()), benchmarks=dumps(run.benchmarks),
        averages=dumps(run.averages), created_by=actor.principal, created_at=created, last_requested_at=at,
        cluster_ranking=dumps(ranking_doc(ranking))))
    rows, events = [], []
    common = {"run_id": run_id, "county_code": county, "year": year}
    for r, breakdown in zip(run.results, run.result_json):
        score = r.score
        total = None if not score else plain4(score.total4) if type(score) is PackedScore else plain_decimal(score.total)
        rec = r.recommendation
        rows.append((run_id, r.credit_code, r.group, r.class_label, total, r.rank, rec.disposition.value, breakdown))
        # EnterpriseAssessed's payload in its field order (events.emit_plain)
        events.append(({**common, "credit_code": r.credit_code, "group": r.group, "score": total,
                        "class_label": r.class_label, "rank": r.rank, "policy_version": run.policy_version,
                        "policy_hash": run.policy_hash, "breakdown_ref": breakdown_path(run_id, r.credit_code),
                        "recommendation": rec.disposition.value, "reasons": [x.code for x in rec.reasons]},
                       r.credit_code, f"{run_id}/{r.credit_code}"))
    t1 = time.perf_counter()
    insert_tuples(s, R, RESULT_COLUMNS, rows)  # COPY on PostgreSQL: a county run writes 100,000 of these
    emit_plain(s, outbox, actor, EnterpriseAssessed, events, now)
    row = s.execute(select(RUNS).where(RUNS.c.run_id == run_id)).one()
    _made_current(s, outbox, actor, row, None if previous is None else previous.run_id, "created")
    timings.update(build_seconds=t1 - t0, write_seconds=time.perf_counter() - t1)
    return row, True


RESULT_COLUMNS = ("run_id", "credit_code", "group_name", "class_label", "score", "rank", "recommendation", "breakdown")


def lock_county_year(s: Session, county: str, year: int) -> None:
    """Hold the county-year's evaluation lock to the end of the transaction: which run is current, and the
    EvaluationRunMadeCurrent naming the one it replaces, are decided one request at a time (and a request that
    waited finds the run the other created instead of colliding with it)."""
    locks.hold(s, f"evaluation:{county}/{year}")


def created_after_the_last(s: Session, county: str, year: int, now: datetime) -> datetime:
    """A new run's created_at: ``now``, or just after the county-year's last run when that one's is not before it
    (another replica's clock ahead of ours). An enterprise's latest result is its run created last, as the replay
    reads it from the order of the events; the clocks must not say otherwise. Read under the county-year's lock."""
    last = s.execute(select(func.max(RUNS.c.created_at)).where(RUNS.c.county_code == county, RUNS.c.year == year)).scalar()
    if last is None or utc(now) > utc(last):
        return now
    return utc(last) + timedelta(microseconds=1)


def requested_at(now: datetime, current, run_id: str) -> datetime:
    """The last_requested_at that makes ``run_id`` the county-year's current run (``current``: the current run's row
    before this request, or None): ``now``, unless the current run was requested at or after it (a clock behind
    another replica's, or a request that read the time before it waited for the lock); then just after that, so the
    run requested last is current, as its event says, whatever the clocks."""
    if current is None:
        return now
    now, last = utc(now), utc(current.last_requested_at)
    if current.run_id == run_id:
        return max(now, last)
    return now if now > last else last + timedelta(microseconds=1)


def _made_current(s: Session, outbox: Outbox, actor: Actor, row, previous_run_id: str | None, why: str) -> None:
    emit(s, outbox, actor, [(EvaluationRunMadeCurrent(
        run_id=row.run_id, county_code=row.county_code, year=row.year, content_hash=row.content_hash,
        policy_version=row.policy_version, policy_hash=row.policy_hash, enterprise_count=row.enterprise_count,
        class_counts=loads(row.class_counts), previous_run_id=previous_run_id, why=why),
        f"{row.county_code}/{row.year}", None)])


def get_run(s: Session, run_id: str):
    r = s.execute(select(RUNS).where(RUNS.c.run_id == run_id)).first()
    if r is None:
        raise NotFound("run_not_found", f"no evaluation run {run_id!r}")
    return r


def current_run(s: Session, county: str, year: int):
    return s.execute(select(RUNS).where(RUNS.c.county_code == county, RUNS.c.year == year)
                     .order_by(RUNS.c.last_requested_at.desc(), RUNS.c.run_id).limit(1)).first()


def list_runs(s: Session, county: str, year: int) -> list:
    return s.execute(select(RUNS).where(RUNS.c.county_code == county, RUNS.c.year == year)
                     .order_by(RUNS.c.created_at, RUNS.c.run_id)).all()


def results_page(s: Session, run_id: str, after: str, limit: int, class_label: str | None = None) -> list:
    q = select(R.c.credit_code, R.c.group_name, R.c.class_label, R.c.score, R.c.rank, R.c.recommendation).where(
        R.c.run_id == run_id, R.c.credit_code > after)
    if class_label:
        q = q.where(R.c.class_label == class_label)
    return s.execute(q.order_by(R.c.credit_code).limit(limit)).all()


def result_of(s: Session, run_id: str, credit_code: str):
    r = s.execute(select(R).where(R.c.run_id == run_id, R.c.credit_code == credit_code)).first()
    if r is None:
        raise NotFound("result_not_found", f"run {run_id} has no result for {credit_code}")
    return r


def latest_result(s: Session, county: str, credit_code: str):
    """The enterprise's result in the current run of the latest year that has one, or None."""
    years = s.execute(select(RUNS.c.year).where(RUNS.c.county_code == county).distinct()
                      .order_by(RUNS.c.year.desc())).scalars().all()
    for y in years:
        run = current_run(s, county, y)
        r = s.execute(select(R).where(R.c.run_id == run.run_id, R.c.credit_code == credit_code)).first()
        if r is not None:
            return r
    return None


def cluster_ranking(s: Session, county: str, year: int) -> tuple[dict, str | None]:
    """(ranking_doc, run id) of the county-year: the current evaluation run's, as kept when the run was made (a
    later correction or policy version changes it only through a new run, as it does the enterprises' results);
    without a run, or for a run made before rankings were kept, ranked now over today's figures and current policy
    (run id None). A county-year without figures is 422 nothing_to_evaluate, as its evaluation is."""
    run = current_run(s, county, year)
    if run is not None and run.cluster_ranking is not None:
        return kept_ranking(run), run.run_id
    inputs = load_county(s, county, year)
    if not inputs.enterprises:
        raise Unprocessable("nothing_to_evaluate", f"no active enterprise of {county} has figures for {year}")
    policy = current_policy(s, county, year).policy
    return ranking_doc(_rank_clusters(county, year, inputs, policy, last_year_averages(s, county, year, policy))), None


def kept_ranking(run) -> dict:
    """The ranking_doc a run row kept (404 for a run made before rankings were kept)."""
    if run.cluster_ranking is None:
        raise NotFound("ranking_not_kept", f"run {run.run_id} was made before cluster rankings were kept with runs: "
                                           f"GET /v1/clusters/{run.county_code}/{run.year}/ranking ranks today's figures")
    return loads(run.cluster_ranking)


def _rank_clusters(county: str, year: int, inputs: CountyInputs, policy: AssessmentPolicy, averages,
                   inputs_hash: str | None = None) -> ClusterRanking:
    try:
        return rank_clusters(county, year, inputs.enterprises, inputs.indicators, policy, averages, inputs_hash)
    except BenchmarkUnavailable as exc:
        raise Unprocessable(exc.reason, str(exc), {"group": exc.group, "indicator": exc.indicator}) from None


def ranking_doc(r: ClusterRanking) -> dict:
    """What a ranking is kept and answered as (the API's ClusterRankingOut without the county and year)."""
    clusters = []
    for c in r.results:
        plain = c.to_plain()
        clusters.append({"cluster_id": c.cluster_id, "members": list(c.members), "class_label": c.class_label,
                         "rank": c.rank, "score_rank": c.score_rank, "group_size": c.group_size,
                         "score": plain["score"]})
    return {"policy_version": r.policy_version, "policy_hash": r.policy_hash, "group": r.group,
            "content_hash": r.content_hash, "clusters": clusters}
