"""Replay of the assessment service: rebuild its read models from a million events in its outbox.

``write_events(db, n)`` fills an empty, migrated assessment database with n synthetic events of a
consistent county history (register, two departments' figures for two years, policies, three evaluation
runs, decisions, exits and relocations, projects) and, by default, the live tables that history leads to, so
that the compare walks equal rows. The live rows are written from the same fold the replay uses: this
bench measures speed; tests/integration/assessment/test_assessment_replay.py checks the fold against the
real service.

Usage:  .venv/bin/python bench/replay_assessment.py [--events 1000000] [--pg-url postgresql+psycopg://...]
        [--repeat 2] [--keep] [--profile]
A throw-away PostgreSQL database is made beside --pg-url (default TEST_DATABASE_URL) and dropped afterwards.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import os
import pstats
import random
import resource
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.support import DEFAULT_PG, ScratchDatabases  # noqa: E402
from services.assessment.domain.credit_code import make_credit_code  # noqa: E402
from services.assessment.domain.policy import default_policy  # noqa: E402
from services.assessment.replay import AssessmentProjection, rebuild  # noqa: E402
from services.assessment.storage import tables as T  # noqa: E402
from services.assessment.storage.rows import dumps  # noqa: E402
from shared.bulk import bulk_insert  # noqa: E402
from shared.contracts import topics  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.envelope import decode  # noqa: E402

COUNTY = "320623"
TOWNSHIPS = [f"{COUNTY}{i:03d}" for i in range(100, 120)]
PARKS = [f"P-{i:02d}" for i in range(12)]
YEARS = (2022, 2023)
SOURCE, PRODUCER = "/countypool/assessment", "assessment"
AGGREGATE = {"AssessmentPolicyChanged": "policy", "EvaluationRunMadeCurrent": "county-year", "ProjectEvaluated": "project"}
CHUNK = 50_000
EVENTS_PER_ENTERPRISE = 8.3  # of the history below; the rest of n are corrections of figures
UTC = timezone.utc
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
TIME = "2024-03-01T08:00:00Z"


def _amount(units: int, scale: int) -> str:
    q, r = divmod(units, 10**scale)
    return f"{q}.{r:0{scale}d}" if scale else str(q)


def _units(text: str) -> int:
    """A decimal string the generator wrote with exactly its field's decimals -> integer units."""
    return int(text.replace(".", ""))


class County:
    """The synthetic history, one event at a time: (event name, subject, payload dict)."""

    def __init__(self, enterprises: int, seed: int = 11):
        self.rnd = random.Random(seed)
        self.codes = [make_credit_code(f"91{COUNTY}{i:09d}") for i in range(enterprises)]
        self.policies = {(y, v): default_policy(COUNTY, y, v) for y in YEARS for v in (1, 2) if (y, v) != (2022, 2)}
        self.hashes = {k: p.content_hash() for k, p in self.policies.items()}

    def events(self) -> Iterator[tuple[str, str, dict]]:
        rnd, codes = self.rnd, self.codes
        township: dict[str, str] = {}
        for i, c in enumerate(codes):
            park = rnd.choice(PARKS) if rnd.random() < 0.3 else None
            township[c] = rnd.choice(TOWNSHIPS)
            yield "EnterpriseRegistered", c, {
                "credit_code": c, "name": f"企业{i}", "county_code": COUNTY, "township_code": township[c],
                "in_park": park is not None, "park_id": park, "industry_code": rnd.choice(("C3311", "C2614", "C1713")),
                "flags": ["utility"] if i % 97 == 0 else [], "scale": "规上" if i % 3 else None}
        for year in YEARS:
            for c in codes:
                yield "IndicatorsRecorded", c, {"credit_code": c, "year": year, "department": "tax", "fields": {
                    "tax": _amount(rnd.randrange(10**9), 2), "revenue": _amount(rnd.randrange(10**11), 2),
                    "value_added": _amount(rnd.randrange(10**10), 2), "employees": str(rnd.randrange(3, 800))}}
                yield "IndicatorsRecorded", c, {"credit_code": c, "year": year, "department": "energy", "fields": {
                    "land": _amount(rnd.randrange(10**4, 2 * 10**7), 4), "energy": _amount(rnd.randrange(10**7), 3),
                    "electricity": str(rnd.randrange(10**7)), "emissions.COD": _amount(rnd.randrange(10**6), 4)}}
                if rnd.random() < 0.02:  # a correction of the department's own figure
                    yield "IndicatorsRecorded", c, {"credit_code": c, "year": year, "department": "tax",
                                                    "fields": {"tax": _amount(rnd.randrange(10**9), 2)}}
        n_run = 0
        current: dict[int, str] = {}
        for (year, version), h in self.hashes.items():
            yield "AssessmentPolicyChanged", f"{COUNTY}/{year}", {
                "county_code": COUNTY, "year": year, "policy_version": version, "policy_hash": h,
                "changed_by": "system:default" if version == 1 else "bench"}
            n_run += 1
            run_id = f"{COUNTY}-{year}-{hashlib.sha256(f'{year}/{version}'.encode()).hexdigest()[:16]}"
            ranks: dict[str, int] = {}
            counts: dict[str, dict[str, int]] = {}
            for i, c in enumerate(codes):
                group = "规上" if i % 3 else "规下"
                if i % 97 == 0:
                    score, cls, rank, rec = None, "T", None, "none"
                else:
                    s = rnd.randrange(20 * 10**4, 95 * 10**4)
                    score, rank = _amount(s, 4), ranks.setdefault(group, 0) + 1
                    ranks[group] = rank
                    cls = "A" if s >= 75 * 10**4 else "B" if s >= 60 * 10**4 else "C" if s >= 45 * 10**4 else "D"
                    rec = {"A": "none", "B": "upgrade", "C": "relocate", "D": "close"}[cls]
                by_class = counts.setdefault(group, {})
                by_class[cls] = by_class.get(cls, 0) + 1
                yield "EnterpriseAssessed", c, {
                    "run_id": run_id, "county_code": COUNTY, "year": year, "credit_code": c, "group": group,
                    "score": score, "class_label": cls, "rank": rank, "policy_version": version, "policy_hash": h,
                    "breakdown_ref": f"/v1/evaluations/{run_id}/enterprises/{c}", "recommendation": rec,
                    "reasons": [] if rec == "none" else [f"class_{cls}"]}
            # the new run is the county-year's current one (its content hash as _write_live fills it in)
            yield "EvaluationRunMadeCurrent", f"{COUNTY}/{year}", {
                "run_id": run_id, "county_code": COUNTY, "year": year,
                "content_hash": hashlib.sha256(run_id[::-1].encode()).hexdigest(), "policy_version": version,
                "policy_hash": h, "enterprise_count": len(codes), "class_counts": counts,
                "previous_run_id": current.get(year), "why": "created"}
            current[year] = run_id
        last_run = run_id
        decided: list[tuple[str, str]] = []
        for i, c in enumerate(codes):
            if i % 10 != 1:
                continue
            rec = ("close", "relocate", "upgrade")[(i // 10) % 3]
            for again in range(2 if i % 50 == 1 else 1):  # some decisions are superseded by a later one
                choice = rec if again == 0 or rec == "upgrade" else "upgrade"
                yield "DispositionDecided", c, {
                    "credit_code": c, "county_code": COUNTY, "year": 2023, "recommended": rec, "decided": choice,
                    "overridden": choice != rec, "decided_by": "县政府常务会议",
                    "decided_at": (T0 + timedelta(seconds=i, microseconds=again)).isoformat().replace("+00:00", "Z"),
                    "reason": "" if choice == rec else "整改后复核", "run_id": last_run}
            decided.append((c, choice))
        for c, choice in decided:
            if choice == "close":
                yield "EnterpriseExited", c, {"credit_code": c, "county_code": COUNTY, "township_code": township[c],
                                              "effective_on": "2024-06-30", "reason": "", "year": 2023}
            elif choice == "relocate":
                yield "EnterpriseRelocated", c, {"credit_code": c, "county_code": COUNTY, "from_township_code": township[c],
                                                 "to_park_id": rnd.choice(PARKS), "effective_on": "2024-07-01", "year": 2023}
        for i, c in enumerate(codes[::50]):
            land = rnd.randrange(10**4, 10**6)
            admitted = i % 4 != 0
            failures = [] if admitted else [{"code": "tax_per_mu_below_threshold", "message": "expected tax per 亩 is below",
                                             "figure": "100000.00", "threshold": "150000.00", "unit": "元/亩/年"}]
            yield "ProjectEvaluated", f"PRJ-{i:07d}", {
                "project_id": f"PRJ-{i:07d}", "applicant_credit_code": c, "county_code": COUNTY, "park_id": PARKS[i % 12],
                "admitted": admitted, "failures": failures, "land": _amount(land, 4), "investment_per_mu": "2600000.00",
                "tax_per_mu": "160000.00" if admitted else "100000.00", "industry_code": "C3311", "project_class": "A",
                "policy_hash": self.hashes[(2023, 2)], "year": 2023, "policy_version": 2}
        while True:  # up to the count asked for: departments correcting their own figures
            c = rnd.choice(codes)
            yield "IndicatorsRecorded", c, {"credit_code": c, "year": rnd.choice(YEARS), "department": "tax",
                                            "fields": {"tax": _amount(rnd.randrange(10**9), 2)}}


def write_events(db: Database, n: int, *, live: bool = True) -> int:
    """Fill an EMPTY, migrated assessment database's outbox with n consistent synthetic events; with ``live``
    also the live read-model tables that history leads to. Returns the number of events written."""
    collecting = gc.isenabled()
    gc.disable()  # no reference cycles here; the collector would rescan the growing models
    try:
        return _write_events(db, n, live)
    finally:
        if collecting:
            gc.enable()


def _write_events(db: Database, n: int, live: bool) -> int:
    county = County(max(1, int(n / EVENTS_PER_ENTERPRISE)))
    proj = AssessmentProjection()
    handlers = proj.handlers()
    outbox = T.metadata.tables["outbox"]
    checked: set[str] = set()
    written, rows = 0, []
    tag = uuid.uuid4().hex[:8]
    for name, subject, data in county.events():
        if written == n:
            break
        etype = f"countypool.{name}.v1"
        eid = f"bench-{tag}-{written}"
        env = orjson.dumps({
            "specversion": "1.0", "id": eid, "source": SOURCE, "type": etype, "subject": subject, "time": TIME,
            "datacontenttype": "application/json", "aggregatetype": AGGREGATE.get(name, "enterprise"),
            "aggregateversion": 0, "correlationid": eid, "recordedat": TIME, "producer": PRODUCER, "data": data}).decode()
        if name not in checked:  # every kind once through the real contracts
            decode(env)
            checked.add(name)
        handlers[name](data, {})
        rows.append({"event_id": eid, "event_type": etype, "topic": topics.ASSESSMENT_EVENTS, "key": subject,
                     "envelope": env, "created_at": T0})
        written += 1
        if len(rows) == CHUNK:
            _insert(db, outbox, rows)
            rows = []
    _insert(db, outbox, rows)
    if live:
        _write_live(db, proj, county)
    return written


def _insert(db: Database, table, rows: list[dict]) -> None:
    if rows:
        with db.sessions() as s, s.begin():
            bulk_insert(s, table, rows)


def _write_live(db: Database, proj: AssessmentProjection, county: County) -> None:
    """The live rows of the rebuilt models, non-derivable columns filled in."""
    m = proj.rebuilt()
    at = dict(registered_at=T0, updated_at=T0)
    ents = [dict(credit_code=c, name=e[0], county_code=e[1], township_code=e[2], in_park=e[3], park_id=e[4],
                 industry_code=e[5], flags=dumps(list(e[6])), scale=e[7], status=e[8], revision=e[9], updated_by="bench", **at)
            for c, e in m["enterprises"].items()]
    parts = [dict(credit_code=k[0], year=k[1], department=k[2], figures=dumps({f: _units(v) for f, v in fig}),
                  received_via="import", received_by="bench", updated_at=T0) for k, fig in m["indicator_parts"].items()]
    merged = [dict(credit_code=k[0], year=k[1], figures=dumps({f: _units(v) for f, v, _ in fig}),
                   sources=dumps({f: d for f, _, d in fig}), updated_at=T0) for k, fig in m["indicators"].items()]
    policies = [dict(county_code=k[0], year=k[1], version=k[2], body=dumps(county.policies[(k[1], k[2])]), policy_hash=h,
                     created_by=by, created_at=T0, note="") for k, (h, by) in m["policies"].items()]
    runs = []
    for i, (run, r) in enumerate(m["evaluation_runs"].items()):
        counts: dict = {}
        for g, c, k in r[5]:
            counts.setdefault(g, {})[c] = k
        when = T0 + timedelta(hours=i)  # runs are created in event order
        runs.append(dict(run_id=run, county_code=r[0], year=r[1], policy_version=r[2], policy_hash=r[3],
                         inputs_hash=hashlib.sha256(run.encode()).hexdigest(), content_hash=hashlib.sha256(run[::-1].encode()).hexdigest(),
                         enterprise_count=r[4], without_data=0, class_counts=dumps(counts), benchmarks="{}", averages="{}",
                         created_by="bench", created_at=when, last_requested_at=when))
    results = [dict(run_id=k[0], credit_code=k[1], group_name=v[0], class_label=v[1], score=v[2], rank=v[3],
                    recommendation=v[4], breakdown="{}") for k, v in m["assessment_results"].items()]
    decisions = []
    for (code, year, _), d in m["decisions"].items():  # in order: ids follow it
        ex = m["executions"].get((code, year)) if not d[8] else None
        decisions.append(dict(credit_code=code, year=year, county_code=d[0], run_id=d[1], recommended=d[2], decided=d[3],
                              overridden=d[4], decided_by=d[5], recorded_by="bench", decided_at=datetime.fromisoformat(d[6]),
                              reason=d[7], status="superseded" if d[8] else "executed" if ex else "decided",
                              executed_at=T0 if ex else None, executed_by="bench" if ex else None,
                              effective_on=date.fromisoformat(ex[1]) if ex else None, to_park_id=ex[2] if ex else None,
                              execution_note=(ex[3] or "") if ex else None))
    projects = [dict(project_id=pid, county_code=p[0], year=p[1], applicant_credit_code=p[2], request_digest="0" * 64,
                     application=dumps({"id": pid, "park_id": p[3], "land": _units(p[6]), "industry_code": p[9]}),
                     admitted=p[4], result=dumps({"failures": [dict(zip(("code", "message", "figure", "threshold", "unit"), f))
                                                               for f in p[5]], "investment_per_mu": p[7], "tax_per_mu": p[8],
                                                  "project_class": p[10]}),
                     policy_version=p[11], policy_hash=p[12], evaluated_by="bench", evaluated_at=T0)
                for pid, p in m["projects"].items()]
    for table, rows in ((T.enterprises, ents), (T.indicator_parts, parts), (T.indicators, merged), (T.policies, policies),
                        (T.evaluation_runs, runs), (T.enterprise_results, results), (T.decisions, decisions),
                        (T.projects, projects)):
        for i in range(0, len(rows), CHUNK):
            _insert(db, table, rows[i:i + CHUNK])


def migrated(url: str) -> Database:
    """The assessment service's database at ``url``, migrated to its head as the service would."""
    from services.assessment.main import AssessmentSettings, build
    from shared.settings import load_settings

    settings = load_settings("assessment", AssessmentSettings, database_url=url, relay_enabled=False,
                             consumer_enabled=False, log_json=False)
    runtime, _ = build(settings)
    runtime.migrate()
    return runtime.db


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_PG))
    ap.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    ap.add_argument("--repeat", type=int, default=2, help="rebuilds of the same outbox")
    ap.add_argument("--profile", action="store_true", help="cProfile the rebuild")
    args = ap.parse_args()
    scratch = ScratchDatabases(args.pg_url, "replay_assessment")
    url = scratch.create()
    db = migrated(url)
    try:
        t = time.perf_counter()
        n = write_events(db, args.events)
        with db.sessions() as s:
            stored = s.execute(select(func.count()).select_from(T.metadata.tables["outbox"])).scalar_one()
        print(f"wrote {n:,} events ({stored:,} outbox rows) and their live rows into {db.engine.url.database} "
              f"in {time.perf_counter() - t:.1f} s")
        for i in range(args.repeat):  # the first rebuild may read the outbox from disk, later ones from cache
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            t, cpu = time.perf_counter(), time.process_time()
            report = rebuild(db)
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
            print(f"rebuild {i + 1}: fold {report.events_read:,} events in {report.fold_seconds:.2f} s = "
                  f"{report.events_per_second:,.0f} events/s (reading the outbox included); compare with the live "
                  f"tables {report.compare_seconds:.2f} s; end to end {wall:.2f} s = {report.events_read / wall:,.0f} "
                  f"events/s, {cpu:.2f} s of this process's CPU; "
                  + ("equal" if report.equal else f"{len(report.differences)} differences, e.g. {report.differences[:3]}"))
        print("rows: " + ", ".join(f"{k} {v:,}" for k, v in report.rows.items()))
        print(f"peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        db.dispose()
        if args.keep:
            print(f"kept {db.engine.url.database}")
            scratch.keep(url)
        scratch.close()


if __name__ == "__main__":
    main()
