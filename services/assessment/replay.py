"""Rebuild the assessment service's read models from its own event store (the outbox) and compare them with
the live tables. Every read model is ``key -> tuple`` of exact values: decimal strings as the events carry
them (the live side formats its integer units the same way), ISO dates, UTC ISO datetimes.

Read models, and the live tables/columns they cover:

- ``enterprises`` (credit_code) <- enterprises: name, county_code, township_code, in_park, park_id,
  industry_code, flags, scale, status (exited), revision (1 at registration, +1 per change event).
  Not covered: registered_at, updated_at, updated_by (the request's clock and principal are not in events).
- ``indicator_parts`` (credit_code, year, department) <- indicator_parts.figures (a department's latest
  figures, its corrections applied). Not covered: received_via, received_by, updated_at.
- ``indicators`` (credit_code, year) <- indicators.figures and .sources (the parts merged: a field keeps
  the department that gave it first unless that department, or the county's part, changes it; a withdrawn figure
  falls back on the other parts, as domain withdraw_figures says). Not covered:
  updated_at.
- ``policies`` (county_code, year, version) <- policies.policy_hash, created_by. Not covered: body (an
  event names the policy by its hash only), created_at, note.
- ``evaluation_runs`` (run_id) <- county_code, year, policy_version, policy_hash, enterprise_count,
  class_counts. Not covered: inputs_hash, content_hash (the run id holds its first 16 digits),
  without_data, benchmarks, averages, created_by, created_at, last_requested_at.
- ``assessment_results`` (run_id, credit_code) <- enterprise_results: group_name, class_label, score,
  rank, recommendation. Not covered: breakdown (events carry its GET path, not its content).
- ``latest_assessments`` (credit_code, year): run_id, policy_version, class_label, score of the most
  recently *created* run that assessed the enterprise (live: evaluation_runs.created_at), which need not be the
  county-year's current run (below).
- ``current_runs`` (county_code, year) <- the run ``current_run`` answers (live: evaluation_runs by
  last_requested_at, then run_id): the run of the county-year's last EvaluationRunMadeCurrent, which every new run
  and every older run made current again emits (a reinstated run's results are its earlier EnterpriseAssessed
  events; they are not emitted again). A county-year whose history has no such event (written before it existed)
  takes its most recently created run: a run reinstated back then is a difference, as nothing recorded it.
- ``decisions`` (credit_code, year, n): the n-th decision on an enterprise-year, from decisions: county_code,
  run_id, recommended, decided, overridden, decided_by, decided_at, reason, superseded (status). Not covered:
  id (a sequence; gaps after rollbacks), recorded_by.
- ``executions`` (credit_code, year) <- decisions carried out as a closure or relocation: decided,
  effective_on, to_park_id, the exit's reason (execution_note or reason). Not covered: executed_at, where a
  relocated enterprise stood before (prior_in_park, prior_park_id: kept since migration 0006, NULL on older rows),
  executed_by, a relocation's note, and carrying out an upgrade (it emits no event).
- ``projects`` (project_id) <- projects: county_code, year, applicant_credit_code, park_id, admitted,
  failures, land, investment_per_mu, tax_per_mu, industry_code, project_class, land_quota_allowed (true where
  an event or row predates it), policy_version, policy_hash.
  Not covered: request_digest, the rest of the application, thresholds, override_prefix,
  listed_in_register, evaluated_by, evaluated_at.
- rectification_tasks: not covered at all: opening, completing or cancelling a task emits no event.

Events written before their optional fields existed (EnterpriseRegistered.scale, DispositionDecided.run_id,
EnterpriseExited/Relocated.year, ProjectEvaluated.year/policy_version) rebuild those facts as null, except
the year of an execution, which is taken from the decision it carried out.

Repair is refused (the framework's default): a live row holds facts no event carries (breakdowns, policy
bodies, timestamps, principals, decision ids), so a missing row cannot be recreated from events, and
rewriting figures or scores alone would leave the rows derived from them (merged indicators, breakdowns,
class counts) inconsistent. Fix the cause and replay.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.assessment.domain.enterprise import COUNTY_PART, withdraw_figures
from services.assessment.domain.units import LAND_SCALE
from services.assessment.fields import scale_of
from services.assessment.storage.rows import utc
from services.assessment.storage.tables import decisions as D
from services.assessment.storage.tables import enterprise_results as R
from services.assessment.storage.tables import enterprises as E
from services.assessment.storage.tables import evaluation_runs as RUNS
from services.assessment.storage.tables import indicator_parts as P
from services.assessment.storage.tables import indicators as I
from services.assessment.storage.tables import policies as POL
from services.assessment.storage.tables import projects as PRJ
from shared.amounts import format_amount
from shared.db import Database
from shared.replay import Handler, Projection, ReadModels, ReplayReport, replay

MODELS = ("enterprises", "indicator_parts", "indicators", "policies", "evaluation_runs", "assessment_results",
          "latest_assessments", "current_runs", "decisions", "executions", "projects")


def utc_iso(value: str | datetime) -> str:
    """One spelling for an instant: the event's JSON text ('...Z') and the database's datetime agree."""
    # utc() for the text too: a time written without an offset is UTC, not the local time of the host that replays
    d = utc(datetime.fromisoformat(value) if isinstance(value, str) else value)
    return d.astimezone(timezone.utc).isoformat()


class AssessmentProjection(Projection):
    name = "assessment read models"

    def __init__(self) -> None:
        self.enterprises: dict = {}  # code -> (name, county, township, in_park, park_id, industry, flags, scale, status, rev)
        self.parts: dict = {}  # (code, year, department) -> {field: decimal string}
        self.merged: dict = {}  # (code, year) -> {field: (decimal string, department)}
        self.policies: dict = {}
        self.runs: dict = {}  # run_id -> [county, year, policy_version, policy_hash, {(group, class): n}, run_id]
        self.results: dict = {}
        self.latest: dict = {}
        self.current: dict = {}  # (county, year) -> run_id of its last EvaluationRunMadeCurrent
        self.decisions: dict = {}  # (code, year) -> [row, ...] in event order
        self.open_decision: dict = {}  # (code, decided) -> year of the latest such decision (old events' year)
        self.executions: dict = {}
        self.projects: dict = {}

    # -- the fold: plain dict and tuple work, one call per event -------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        ents, parts, merged, runs, results, latest = (self.enterprises, self.parts, self.merged, self.runs,
                                                      self.results, self.latest)
        flags_cache: dict[tuple, tuple] = {}

        def registered(d: dict, env: dict) -> None:
            code = d["credit_code"]
            old = ents.get(code)
            flags = tuple(d.get("flags") or ())
            flags = flags_cache.setdefault(flags, flags)
            status, rev = ("active", 1) if old is None else (old[8], old[9] + 1)
            ents[code] = (d["name"], d["county_code"], d["township_code"], d["in_park"], d.get("park_id"),
                          d.get("industry_code", ""), flags, d.get("scale"), status, rev)

        def recorded(d: dict, env: dict) -> None:
            code, year, dept, fields = d["credit_code"], d["year"], d["department"], d["fields"]
            part = parts.get((code, year, dept))
            if part is None:
                parts[(code, year, dept)] = dict(fields)
            else:
                part.update(fields)
            m = merged.get((code, year))
            if m is None:
                merged[(code, year)] = {f: (v, dept) for f, v in fields.items()}
                return
            for f, v in fields.items():
                had = m.get(f)
                # another department's figure stays (the service recorded this part only because it agreed), but
                # for the county's part, which settles what departments disagree on
                if had is None or had[1] == dept or dept == COUNTY_PART:
                    m[f] = (v, dept)

        def withdrawn(d: dict, env: dict) -> None:
            code, year, dept = d["credit_code"], d["year"], d["department"]
            given = {k[2]: p for k, p in parts.items() if k[0] == code and k[1] == year}  # rare: a scan will do
            m = merged.get((code, year), {})
            try:
                figures, sources, left = withdraw_figures(code, year, {f: v for f, (v, _) in m.items()},
                                                          {f: src for f, (_, src) in m.items()}, given, dept, d["fields"])
            except ValueError:  # NotGiven, IndicatorConflict: the service published no such withdrawal
                return
            if left:
                parts[(code, year, dept)] = left
            else:
                parts.pop((code, year, dept), None)
            if figures:
                merged[(code, year)] = {f: (v, sources[f]) for f, v in figures.items()}
            else:
                merged.pop((code, year), None)

        def policy(d: dict, env: dict) -> None:
            self.policies[(d["county_code"], d["year"], d["policy_version"])] = (d["policy_hash"], d["changed_by"])

        def assessed(d: dict, env: dict) -> None:
            r = runs.get(d["run_id"])
            if r is None:
                run = d["run_id"]
                r = runs[run] = [d["county_code"], d["year"], d["policy_version"], d["policy_hash"], {}, run]
            run, code, group, cls, score = r[5], d["credit_code"], d["group"], d["class_label"], d["score"]
            results[(run, code)] = (group, cls, score, d["rank"], d["recommendation"])
            counts = r[4]
            counts[(group, cls)] = counts.get((group, cls), 0) + 1
            latest[(code, r[1])] = (run, r[2], cls, score)  # a later run's result replaces an earlier one

        def made_current(d: dict, env: dict) -> None:
            self.current[(d["county_code"], d["year"])] = d["run_id"]

        def decided(d: dict, env: dict) -> None:
            code, year = d["credit_code"], d["year"]
            self.decisions.setdefault((code, year), []).append((
                d["county_code"], d.get("run_id"), d["recommended"], d["decided"], d["overridden"], d["decided_by"],
                utc_iso(d["decided_at"]), d.get("reason", "")))
            self.open_decision[(code, d["decided"])] = year

        def exited(d: dict, env: dict) -> None:
            code = d["credit_code"]
            e = ents.get(code)
            if e is not None:
                ents[code] = (*e[:8], "exited", e[9] + 1)
            year = d.get("year") or self.open_decision.get((code, "close"))
            self.executions[(code, year)] = ("close", d["effective_on"], None, d.get("reason", ""))

        def relocated(d: dict, env: dict) -> None:
            code, park = d["credit_code"], d["to_park_id"]
            e = ents.get(code)
            if e is not None:
                ents[code] = (*e[:3], True, park, *e[5:9], e[9] + 1)
            year = d.get("year") or self.open_decision.get((code, "relocate"))
            self.executions[(code, year)] = ("relocate", d["effective_on"], park, None)

        def project(d: dict, env: dict) -> None:
            failures = tuple((f["code"], f["message"], f.get("figure"), f.get("threshold"), f.get("unit"))
                             for f in d.get("failures") or ())
            self.projects[d["project_id"]] = (
                d["county_code"], d.get("year"), d["applicant_credit_code"], d.get("park_id"), d["admitted"], failures,
                d["land"], d["investment_per_mu"], d["tax_per_mu"], d.get("industry_code", ""), d.get("project_class"),
                d.get("land_quota_allowed", True), d.get("policy_version"), d["policy_hash"])

        return {"EnterpriseRegistered": registered, "IndicatorsRecorded": recorded,
                "IndicatorsWithdrawn": withdrawn, "AssessmentPolicyChanged": policy,
                "EnterpriseAssessed": assessed, "EvaluationRunMadeCurrent": made_current, "DispositionDecided": decided,
                "EnterpriseExited": exited, "EnterpriseRelocated": relocated, "ProjectEvaluated": project}

    def rebuilt(self) -> ReadModels:
        decisions = {}
        for (code, year), rows in self.decisions.items():
            last = len(rows)
            for n, row in enumerate(rows, 1):
                decisions[(code, year, n)] = (*row, n < last)
        current = {}
        for run, r in self.runs.items():  # in the order runs were created: without an event, the last one
            current[(r[0], r[1])] = run
        current.update(self.current)
        return {
            "enterprises": self.enterprises,
            "indicator_parts": {k: tuple(sorted(v.items())) for k, v in self.parts.items()},
            "indicators": {k: tuple(sorted((f, v, dept) for f, (v, dept) in m.items())) for k, m in self.merged.items()},
            "policies": self.policies,
            "evaluation_runs": {run: (r[0], r[1], r[2], r[3], sum(r[4].values()), _class_counts(r[4]))
                                for run, r in self.runs.items()},
            "assessment_results": self.results,
            "latest_assessments": self.latest,
            "current_runs": {k: (run,) for k, run in current.items()},
            "decisions": decisions,
            "executions": self.executions,
            "projects": self.projects,
        }

    # -- the same facts from the live tables ---------------------------------------------------------------
    def live(self, session: Session) -> ReadModels:
        s = session
        runs, created = _live_runs(s)
        results, latest = _live_results(s, runs, created)
        decisions, executions = _live_decisions(s)
        return {"enterprises": _live_enterprises(s), **_live_figures(s), "policies": _live_policies(s),
                "evaluation_runs": runs, "assessment_results": results, "latest_assessments": latest,
                "current_runs": _live_current_runs(s), "decisions": decisions, "executions": executions,
                "projects": _live_projects(s)}


def _live_enterprises(s: Session) -> dict:
    flags: dict[str, tuple] = {}  # the JSON text of a flag list -> its tuple (a handful of distinct lists)
    out = {}
    for code, name, county, township, in_park, park, industry, fl, scale, status, rev in s.execute(select(
            E.c.credit_code, E.c.name, E.c.county_code, E.c.township_code, E.c.in_park, E.c.park_id,
            E.c.industry_code, E.c.flags, E.c.scale, E.c.status, E.c.revision)).all():
        t = flags.get(fl)
        if t is None:
            t = flags[fl] = tuple(orjson.loads(fl))
        out[code] = (name, county, township, in_park, park, industry, t, scale, status, rev)
    return out


def _live_figures(s: Session) -> dict[str, dict]:
    """indicator_parts and indicators: their JSON integer units as the decimal strings events carry."""
    scales: dict[str, int] = {}

    def text(f: str, v: int) -> str:
        sc = scales.get(f)
        if sc is None:
            sc = scales[f] = scale_of(f) or 0
        if sc == 0:
            return str(v)
        t = str(v)
        # str() of a non-negative integer longer than its decimals: split it (format_amount's result, faster)
        return f"{t[:-sc]}.{t[-sc:]}" if v >= 0 and len(t) > sc else format_amount(v, sc)

    loads = orjson.loads
    parts = {(code, year, dept): tuple(sorted([(f, text(f, v)) for f, v in loads(fig).items()]))
             for code, year, dept, fig in s.execute(select(P.c.credit_code, P.c.year, P.c.department, P.c.figures)).all()}
    merged = {}
    for code, year, fig, sources in s.execute(select(I.c.credit_code, I.c.year, I.c.figures, I.c.sources)).all():
        src = loads(sources)
        merged[(code, year)] = tuple(sorted([(f, text(f, v), src.get(f)) for f, v in loads(fig).items()]))
    return {"indicator_parts": parts, "indicators": merged}


def _live_policies(s: Session) -> dict:
    return {(r[0], r[1], r[2]): (r[3], r[4]) for r in s.execute(select(
        POL.c.county_code, POL.c.year, POL.c.version, POL.c.policy_hash, POL.c.created_by))}


def _live_runs(s: Session) -> tuple[dict, dict]:
    runs, created = {}, {}
    for r in s.execute(select(RUNS.c.run_id, RUNS.c.county_code, RUNS.c.year, RUNS.c.policy_version,
                              RUNS.c.policy_hash, RUNS.c.enterprise_count, RUNS.c.class_counts, RUNS.c.created_at)):
        counts = {(g, c): n for g, by in orjson.loads(r[6]).items() for c, n in by.items()}
        runs[r[0]] = (r[1], r[2], r[3], r[4], r[5], _class_counts(counts))
        created[r[0]] = (utc(r[7]), r[0])
    return runs, created


def _live_current_runs(s: Session) -> dict:
    """Per county-year, the run evaluations.current_run answers: the latest last_requested_at, then the lowest run_id."""
    out: dict = {}
    for run, county, year in s.execute(select(RUNS.c.run_id, RUNS.c.county_code, RUNS.c.year).order_by(
            RUNS.c.county_code, RUNS.c.year, RUNS.c.last_requested_at.desc(), RUNS.c.run_id)):
        out.setdefault((county, year), (run,))
    return out


def _live_results(s: Session, runs: dict, created: dict) -> tuple[dict, dict]:
    """Every result, and per enterprise-year the one of the most recently created run that has it."""
    results, latest, when = {}, {}, {}
    for run, code, group, cls, score, rank, rec in s.execute(select(
            R.c.run_id, R.c.credit_code, R.c.group_name, R.c.class_label, R.c.score, R.c.rank,
            R.c.recommendation)).all():
        results[(run, code)] = (group, cls, score, rank, rec)
        meta = runs.get(run)
        if meta is None:
            continue  # a result without its run: the run's absence is the difference reported
        key, at = (code, meta[1]), created[run]
        if key not in when or at > when[key]:
            when[key] = at
            latest[key] = (run, meta[2], cls, score)
    return results, latest


def _live_decisions(s: Session) -> tuple[dict, dict]:
    decisions, executions, seen = {}, {}, {}
    for r in s.execute(select(D).order_by(D.c.id)):
        n = seen[(r.credit_code, r.year)] = seen.get((r.credit_code, r.year), 0) + 1
        decisions[(r.credit_code, r.year, n)] = (
            r.county_code, r.run_id, r.recommended, r.decided, r.overridden, r.decided_by, utc_iso(r.decided_at),
            r.reason, r.status == "superseded")
        if r.status == "executed" and r.decided in ("close", "relocate"):
            executions[(r.credit_code, r.year)] = (
                r.decided, r.effective_on.isoformat(), r.to_park_id,
                (r.execution_note or r.reason) if r.decided == "close" else None)
    return decisions, executions


def _live_projects(s: Session) -> dict:
    projects = {}
    for r in s.execute(select(PRJ)):
        app, res = orjson.loads(r.application), orjson.loads(r.result)
        failures = tuple((f["code"], f["message"], f.get("figure"), f.get("threshold"), f.get("unit"))
                         for f in res["failures"])
        projects[r.project_id] = (
            r.county_code, r.year, r.applicant_credit_code, app.get("park_id"), r.admitted, failures,
            format_amount(app["land"], LAND_SCALE), res["investment_per_mu"], res["tax_per_mu"],
            app.get("industry_code", ""), res.get("project_class"), res.get("land_quota_allowed", True), r.policy_version,
            r.policy_hash)
    return projects


def _class_counts(counts: dict) -> tuple:
    return tuple(sorted((g, c, n) for (g, c), n in counts.items()))


def rebuild(db: Database, *, repair: bool = False, progress: Callable[[int], None] | None = None,
            total: Callable[[int], None] | None = None) -> ReplayReport:
    return replay(db, AssessmentProjection(), repair=repair, progress=progress, total=total)
