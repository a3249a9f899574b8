"""The county's decision on a recommendation (confirm or override, with who and why), and carrying out a
closure or relocation, which frees the enterprise's quotas downstream (EnterpriseExited / Relocated).

One enterprise and year has at most one standing decision: a new one supersedes it until it is carried
out; after that the matter is closed (409). A decision answers the recommendation of the run it was taken
on: once a later run of the county-year recommends something else for the enterprise (corrected figures,
a new policy version, a changed register entry), it can no longer be carried out (409 decision_outdated)
until the county decides again on the current recommendation. An exited enterprise takes no new decision.
Deciding and carrying out lock the enterprise's register row, so a decision superseded meanwhile is never
carried out, and a carried-out one never superseded. A closure or relocation is recorded once it has taken
effect: an effective date after the county's today is refused (the pool would reallocate quotas the
enterprise still uses)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.assessment.domain.disposition import CountyDecision, Disposition, Recommendation
from services.assessment.events import Actor, emit
from services.assessment.evaluations import current_run
from services.assessment.storage.tables import decisions as D
from services.assessment.storage.tables import enterprise_results as R
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import rectification_tasks as T
from services.assessment.tasks import open_task
from shared.china_time import cst_date
from shared.contracts.assessment import DispositionDecided, EnterpriseExited, EnterpriseRelocated
from shared.errors import Conflict, NotFound, Unprocessable
from shared.outbox import Outbox


def _enterprise(s: Session, credit_code: str, *, lock: bool = False):
    """The register row; ``lock``: held to the end of the transaction, so an enterprise's decisions and their
    execution are taken one at a time (a no-op on SQLite, whose writers are serialized by BEGIN IMMEDIATE)."""
    q = select(E).where(E.c.credit_code == credit_code)
    r = s.execute(q.with_for_update() if lock else q).first()
    if r is None:
        raise NotFound("enterprise_not_found", f"no enterprise {credit_code} in the register")
    return r


def standing_decision(s: Session, credit_code: str, year: int):
    return s.execute(select(D).where(D.c.credit_code == credit_code, D.c.year == year, D.c.status != "superseded")
                     .order_by(D.c.id.desc()).limit(1)).first()


def decisions_of(s: Session, credit_code: str, year: int) -> tuple[object | None, list]:
    """(the standing decision or None, every decision in order) on an enterprise of the register for a year."""
    _enterprise(s, credit_code)
    return standing_decision(s, credit_code, year), history(s, credit_code, year)


def history(s: Session, credit_code: str, year: int) -> list:
    return s.execute(select(D).where(D.c.credit_code == credit_code, D.c.year == year).order_by(D.c.id)).all()


def decide(s: Session, outbox: Outbox, credit_code: str, year: int, decided: Disposition | None, decided_by: str,
           reason: str, actor: Actor, now: datetime, task_deadline: date | None = None) -> tuple[object, bool]:
    """``decided`` None confirms the recommendation; anything else different from it overrides it (and
    needs a reason). Returns (decision row, created): the same decision again, on the same run, is the standing
    one (a client's retry supersedes nothing and publishes nothing)."""
    ent = _enterprise(s, credit_code, lock=True)
    run = current_run(s, ent.county_code, year)
    if run is None:
        raise Conflict("not_assessed", f"{ent.county_code} has no evaluation run for {year}")
    recommended = s.execute(select(R.c.recommendation).where(R.c.run_id == run.run_id,
                                                             R.c.credit_code == credit_code)).scalar()
    if recommended is None:  # registered, but the run left it out (no figures for the year): nothing to decide on
        raise Conflict("not_assessed", f"the current {year} run of {ent.county_code} has no result for {credit_code}")
    recommendation = Recommendation(Disposition(recommended), ())
    standing = standing_decision(s, credit_code, year)
    if standing is not None and standing.status == "executed":
        raise Conflict("decision_already_executed", f"the {year} decision on {credit_code} was carried out on {standing.effective_on}")
    if ent.status != "active":
        raise Conflict("enterprise_not_active", f"{credit_code} is {ent.status}: no further decision is taken on it")
    try:
        if decided is None or decided == recommendation.disposition:
            d = CountyDecision.confirm(credit_code, year, recommendation, decided_by, now, reason)
        else:
            d = CountyDecision.override(credit_code, year, recommendation, decided, decided_by, now, reason)
    except ValueError as exc:
        raise Unprocessable("invalid_decision", str(exc)) from None
    if task_deadline is not None and d.decided == Disposition.NONE:  # was a 201 with no task opened
        raise Unprocessable("invalid_task", "a decision to do nothing opens no rectification task: omit the deadline")
    if standing is not None and _same_decision(s, standing, run.run_id, d, task_deadline):
        return standing, False
    if standing is not None:
        s.execute(update(D).where(D.c.id == standing.id).values(status="superseded"))
    new_id = s.execute(D.insert().values(
        credit_code=credit_code, year=year, county_code=ent.county_code, run_id=run.run_id,
        recommended=d.recommended.value, decided=d.decided.value, overridden=d.overrides, decided_by=d.decided_by,
        recorded_by=actor.principal, decided_at=now, reason=d.reason, status="decided")).inserted_primary_key[0]
    if standing is not None:  # the old decision's tasks no longer stand
        s.execute(update(T).where(T.c.decision_id == standing.id, T.c.status == "open")
                  .values(status="cancelled", closed_on=cst_date(now), closing_note=f"superseded by decision {new_id}"))
    emit(s, outbox, actor, [(DispositionDecided(
        credit_code=credit_code, county_code=ent.county_code, year=year, recommended=d.recommended.value,
        decided=d.decided.value, overridden=d.overrides, decided_by=d.decided_by, decided_at=now, reason=d.reason,
        run_id=run.run_id),
        credit_code, None)])
    if task_deadline is not None and d.decided != Disposition.NONE:
        open_task(s, None, credit_code, ent.county_code, year, new_id, d.decided, task_deadline, reason, actor, now)
    return s.execute(select(D).where(D.c.id == new_id)).one(), True


def _same_decision(s: Session, standing, run_id: str, d: CountyDecision, task_deadline: date | None) -> bool:
    """The standing decision says what ``d`` says, on the same run, with the same rectification task (or none):
    a retried POST (a timeout, a double click) would otherwise supersede it with a copy, cancel its task for a
    new one and publish DispositionDecided again."""
    if (standing.status, standing.run_id, standing.decided, standing.decided_by, standing.reason) != (
            "decided", run_id, d.decided.value, d.decided_by, d.reason):
        return False
    deadlines = {r.deadline for r in s.execute(select(T.c.deadline).where(T.c.decision_id == standing.id,
                                                                           T.c.status == "open")).all()}
    return deadlines == ({task_deadline} if task_deadline is not None and d.decided != Disposition.NONE else set())


def execute(s: Session, outbox: Outbox, credit_code: str, year: int, effective_on: date, to_park_id: str | None,
            note: str, actor: Actor, now: datetime) -> tuple[object, bool]:
    """Record that the standing decision was carried out. Close -> EnterpriseExited (the register entry
    becomes 'exited'); relocate -> EnterpriseRelocated (the entry moves into ``to_park_id``); upgrade is
    recorded without a downstream event. Open tasks of the decision are done. Same request again -> same
    answer, no second event; a different one -> 409. Refused: a decision on a recommendation the county-year's
    current run no longer makes (decision_outdated), an effective date after the county's today."""
    ent = _enterprise(s, credit_code, lock=True)
    standing = standing_decision(s, credit_code, year)
    if standing is None:
        raise Conflict("no_decision", f"no decision on {credit_code} for {year} to carry out")
    decided = Disposition(standing.decided)
    if standing.status == "executed":
        if (standing.effective_on, standing.to_park_id) == (effective_on, to_park_id if decided == Disposition.RELOCATE else None):
            return standing, False
        raise Conflict("decision_already_executed", f"carried out on {standing.effective_on}")
    _check_current(s, standing)
    if effective_on > cst_date(now):
        raise Unprocessable("effective_on_in_future",
                            f"effective_on {effective_on} is after today ({cst_date(now)} in China): record it once it has taken effect")
    if decided == Disposition.NONE:
        raise Conflict("nothing_to_execute", "the decision is to do nothing")
    if decided == Disposition.RELOCATE and not to_park_id:
        raise Unprocessable("to_park_id_required", "a relocation names the park or cluster it moves into")
    if ent.status != "active":
        raise Conflict("enterprise_not_active", f"{credit_code} is {ent.status}")
    if decided == Disposition.RELOCATE and ent.in_park and ent.park_id == to_park_id:
        # carried out already (another year's decision moved it there): a second EnterpriseRelocated would move
        # nothing, and its 'prior' place, the park itself, would have years before judged it inside
        raise Conflict("already_in_park", f"{credit_code} is in park {to_park_id} already: nothing moves")
    park = to_park_id if decided == Disposition.RELOCATE else None
    # a relocation keeps where the enterprise stood: a re-run of a year before it evaluates it there
    prior = dict(prior_in_park=ent.in_park, prior_park_id=ent.park_id) if decided == Disposition.RELOCATE else {}
    s.execute(update(D).where(D.c.id == standing.id).values(
        status="executed", executed_at=now, executed_by=actor.principal, effective_on=effective_on, to_park_id=park,
        execution_note=note, **prior))
    events = []
    if decided == Disposition.CLOSE:
        s.execute(update(E).where(E.c.credit_code == credit_code).values(
            status="exited", revision=ent.revision + 1, updated_at=now, updated_by=actor.principal))
        events.append((EnterpriseExited(credit_code=credit_code, county_code=ent.county_code,
                                        township_code=ent.township_code, effective_on=effective_on,
                                        reason=note or standing.reason, year=year), credit_code, f"exited/{credit_code}"))
    elif decided == Disposition.RELOCATE:
        s.execute(update(E).where(E.c.credit_code == credit_code).values(
            in_park=True, park_id=park, revision=ent.revision + 1, updated_at=now, updated_by=actor.principal))
        events.append((EnterpriseRelocated(credit_code=credit_code, county_code=ent.county_code,
                                           from_township_code=ent.township_code, to_park_id=park,
                                           effective_on=effective_on, year=year), credit_code,
                                           f"relocated/{credit_code}/{year}"))
    emit(s, outbox, actor, events)
    s.execute(update(T).where(T.c.decision_id == standing.id, T.c.status == "open")
              .values(status="done", closed_on=effective_on))
    if decided == Disposition.CLOSE:  # the enterprise is gone: none of its other tasks stays open (and overdue)
        s.execute(update(T).where(T.c.credit_code == credit_code, T.c.status == "open", T.c.disposition == "close")
                  .values(status="done", closed_on=effective_on))
        s.execute(update(T).where(T.c.credit_code == credit_code, T.c.status == "open").values(
            status="cancelled", closed_on=effective_on,
            closing_note=f"enterprise exited on {effective_on} (decision {standing.id})"))
    return s.execute(select(D).where(D.c.id == standing.id)).one(), True


def _check_current(s: Session, standing) -> None:
    """The decision still answers what the county-year's current run recommends for the enterprise."""
    run = current_run(s, standing.county_code, standing.year)
    now_recommended = None if run is None else s.execute(
        select(R.c.recommendation).where(R.c.run_id == run.run_id, R.c.credit_code == standing.credit_code)).scalar()
    if now_recommended != standing.recommended:
        raise Conflict(
            "decision_outdated",
            f"decision {standing.id} answered run {standing.run_id}, which recommended {standing.recommended}; the current "
            f"run {run.run_id if run else None} recommends {now_recommended or 'nothing'} for {standing.credit_code}: decide again",
            {"decision_run_id": standing.run_id, "current_run_id": run.run_id if run else None,
             "recommended": standing.recommended, "now_recommended": now_recommended})


def decision_view(r) -> dict:
    return {k: getattr(r, k) for k in (
        "id", "credit_code", "year", "county_code", "run_id", "recommended", "decided", "overridden", "decided_by",
        "recorded_by", "decided_at", "reason", "status", "executed_at", "executed_by", "effective_on", "to_park_id",
        "execution_note")}

