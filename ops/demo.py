"""``make demo``: a generated county's year through all four services, then what a county official wants to see.

    python -m ops.demo [--size small|tiny] [--seed 42] [--year Y] [--county-code C|same] [--stop] [--keep-data]

1. Generates the county (``ops.generator``, deterministic by seed) into a fresh throw-away data directory, under a
   county code of this run (random unless ``--county-code``): topics are shared by every run on a broker, so ids
   and parties of this demo never meet an earlier one's.
2. Starts the platform as ``make run`` does (``ops.platform``: Kafka if none is reachable, the four services as
   processes, SQLite per service in that directory; with DATABASE_URL, fresh PostgreSQL databases of this run on
   that server), each service in a consumer group of its own positioned at the end of its topics
   (COUNTYPOOL_<SERVICE>_GROUP_ID).
3. Feeds the year through the real intake paths, in the order it happens: policies; the departments' register and
   indicator events on ``countypool.intake.assessment`` plus the tax bureau's indicator file as a bulk import
   (POST /v1/imports); the evaluation; the county's decisions and their execution; agreements; 增减挂钩 projects;
   releases and acceptances on ``countypool.intake.quota``; project applications; quota requests month by month,
   an allocation round each month and the approvals granted that month; tax receipts on
   ``countypool.intake.settlement``; the year's settlement (draft, then finalize, posted to the ledger), and the
   current year's draft (quota proceeds and compensation are dated when the pool allocates: today).
   After each step it waits until the platform is quiet (ops/demo_feed.py: Settler).
4. Prints classes, dispositions, what was freed per asset and township, the pool, what each project received and
   from whose lots, the statements with every party's net, compensation per enterprise, the ledger's sums and
   journal verification, and the checks that tie them together.
5. Leaves the platform running (Ctrl-C stops it and removes the throw-away data) unless ``--stop``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy.engine import make_url

from ops.demo_feed import Dataset, DemoError, Feeder, Relabel, Settler, random_county_code
from ops.demo_platform import DemoPlatform, clean_service_env, fresh_database_url, remove_data_dir
from shared.contracts import topics as T

CST = timezone(timedelta(hours=8))
SETTLEMENT_POLICY = {"policy_id": "TZBF-2022-70", "compensation_bp": 3000, "township_weight": 4, "park_weight": 3,
                     "fund_weight": 3}
IMPORTED_DEPARTMENT = "tax"  # its indicator file goes through POST /v1/imports instead of Kafka


@dataclass
class Options:
    size: str = "small"
    seed: int = 42
    year: int | None = None  # the operating year; default: last year (so its statement can be finalized)
    county_code: str | None = None  # None: a random one; "same": the generator's own (320612)
    stop: bool = False
    keep_data: bool = False
    data_dir: Path | None = None
    env: dict = field(default_factory=dict)  # extra environment for the platform (ports, DATABASE_URL, …)
    quiet: bool = False


@dataclass
class Facts:
    """What the feeding learned on its way (answers of POSTs), for the report."""

    county_code: str = ""
    original_code: str = ""
    county_name: str = ""
    year: int = 0
    data_year: int = 0
    townships: dict = field(default_factory=dict)  # code -> name
    parks: dict = field(default_factory=dict)  # id -> name
    run: dict = field(default_factory=dict)
    imported: dict = field(default_factory=dict)
    decisions: list = field(default_factory=list)
    executions: list = field(default_factory=list)
    projects: list = field(default_factory=list)  # (body, answer, expected)
    months: list = field(default_factory=list)  # (month, requests, refused, round, approvals)
    rounds: list = field(default_factory=list)
    published: dict = field(default_factory=dict)
    statements: dict = field(default_factory=dict)  # period -> {"draft": …, "final": …}
    periods: dict = field(default_factory=dict)  # "closed" / "to_date" -> period label
    releases_sent: int = 0
    acceptances_sent: int = 0
    receipts_sent: int = 0
    timings: list = field(default_factory=list)  # (phase, seconds)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT does not count
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(env: dict) -> dict[str, int]:
    """A service whose port is not set and whose default port is taken (another platform runs here) gets a free
    one (written into ``env``)."""
    from shared.settings import DEFAULT_PORTS

    moved = {}
    for service, port in DEFAULT_PORTS.items():
        key = f"COUNTYPOOL_{service.upper()}_PORT"
        if key in env or key in os.environ or _port_free(port):
            continue
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            moved[service] = s.getsockname()[1]
        env[key] = str(moved[service])
    return moved


class Demo:
    def __init__(self, opts: Options):
        self.o = opts
        self.say = (lambda *a, **k: None) if opts.quiet else (lambda *a, **k: print(*a, **k, flush=True))
        self.facts = Facts()
        self.platform: DemoPlatform | None = None
        self.feeder: Feeder | None = None
        self.settler: Settler | None = None
        if opts.data_dir is not None and Path(opts.data_dir).exists() and any(Path(opts.data_dir).iterdir()):
            raise DemoError(f"{opts.data_dir} is not empty: a demo's data directory is thrown away at the end")
        self.data_dir = Path(opts.data_dir or tempfile.mkdtemp(prefix="countypool-demo-")).resolve()
        self.failed = False  # then its data (logs, databases) is kept for a look

    # -- helpers -----------------------------------------------------------------------------------
    def phase(self, label: str, name: str, fn: Callable[[], str | None]) -> None:
        started = time.monotonic()
        self.say(f"  · {name} …")
        note = fn()
        secs = time.monotonic() - started
        self.facts.timings.append((label, secs))
        self.say(f"    {note + ' ' if note else ''}({secs:.1f}s)")

    def settle(self, what: str, condition=None, timeout: float = 900) -> dict:
        return self.settler.wait(what, condition, timeout=timeout)

    @property
    def c(self) -> str:
        return self.facts.county_code

    # -- set-up ------------------------------------------------------------------------------------
    def generate(self) -> str:
        from ops.generator import CountyGenerator
        from ops.generator.writer import write_dataset

        f = self.facts
        f.year = self.o.year or (datetime.now(CST).year - 1)
        gen = CountyGenerator(self.o.size, seed=self.o.seed, year=f.year)
        f.data_year = gen.data_year
        out = self.data_dir / "county"
        write_dataset(gen, out)
        self.ds = Dataset(out)
        county = gen.counties[0]
        f.original_code, f.county_name = county.code, county.name
        if self.o.county_code == "same":
            f.county_code = county.code
        else:
            f.county_code = self.o.county_code or random_county_code(avoid=[county.code])
        self.re = Relabel(county.code, f.county_code)
        f.townships = {self.re.text(t.code): t.name for t in county.townships}
        f.parks = {p.park_id: p.name for p in county.parks}
        m = self.ds.manifest
        return (f"{m['enterprises']} enterprises, {sum(m['events'].values())} events, "
                f"{sum(m['rows'].values())} file rows → {out}")

    def start_platform(self) -> str:
        env = dict(self.o.env)
        run_id = os.urandom(4).hex()
        shared_db = env.get("DATABASE_URL", os.environ.get("DATABASE_URL"))
        fresh = fresh_database_url(shared_db, run_id)
        if fresh:
            env["DATABASE_URL"] = fresh
        elif shared_db:
            env["DATABASE_URL"] = ""  # an SQLite DATABASE_URL would put four services in one file
        moved = free_ports(env)
        p = self.platform = DemoPlatform(self.data_dir, env=env, run_id=run_id)
        dropped = clean_service_env(p.env)
        if not p.env.get("DATABASE_URL"):
            p.env.pop("DATABASE_URL", None)
        if fresh:
            p.databases = [f"{make_url(fresh).database}_{s}" for s in p.services]
        p.start_all()
        self.feeder = Feeder(p, self.re)
        self.settler = Settler(p, verbose=not self.o.quiet)
        where = "PostgreSQL " + ", ".join(p.databases) if fresh else "SQLite per service"
        note = f" (ignored {', '.join(dropped)})" if dropped else ""
        note += f"; default ports taken, using {', '.join(f'{s} {n}' for s, n in moved.items())}" if moved else ""
        return f"kafka {p.bootstrap}, {where}{note}, consumer groups countypool-<service>-{p.group_suffix}"

    # -- the year ----------------------------------------------------------------------------------
    def policies(self) -> str:
        prices = self.ds.http("price_lists")[0]["prices"]
        self.feeder.call("quota", "PUT", f"/v1/counties/{self.c}/policy", json={"prices": prices})
        self.feeder.call("settlement", "PUT", f"/v1/counties/{self.c}/settlement-policy", "settlement",
                         json=SETTLEMENT_POLICY)
        return (f"quota prices {', '.join(f'{a} {v}' for a, v in prices.items())}; settlement: "
                f"{SETTLEMENT_POLICY['compensation_bp'] / 100:.0f}% of proceeds compensate, rest township:park:fund "
                f"{SETTLEMENT_POLICY['township_weight']}:{SETTLEMENT_POLICY['park_weight']}:{SETTLEMENT_POLICY['fund_weight']}")

    def department_data(self) -> str:
        imported = lambda env: env["type"].endswith("IndicatorsReported.v1") and env["data"]["department"] == IMPORTED_DEPARTMENT  # noqa: E731
        events = self.ds.events(T.INTAKE_ASSESSMENT, skip=imported)
        n = self.feeder.publish(T.INTAKE_ASSESSMENT, events)
        self.settle("register and indicators")
        r = self.feeder.call("assessment", "POST", "/v1/imports", IMPORTED_DEPARTMENT,
                             params={"kind": "indicators", "department": IMPORTED_DEPARTMENT},
                             content=self.ds.file(f"{IMPORTED_DEPARTMENT}/indicators"),
                             headers={"Content-Type": "text/csv"}).json()
        self.facts.imported = r
        self.settle("imported indicators")
        by_type = Counter(e["type"].split(".")[1] for e in events)
        return (f"{n} events on {T.INTAKE_ASSESSMENT} ({', '.join(f'{k} {v}' for k, v in sorted(by_type.items()))}); "
                f"import of {IMPORTED_DEPARTMENT}/indicators.csv: {r['rows']} rows, {r['accepted']} accepted, "
                f"{r['rejected']} rejected")

    def evaluation(self) -> str:
        r = self.feeder.call("assessment", "POST", "/v1/evaluations",
                             json={"county_code": self.c, "year": self.facts.data_year}).json()
        self.facts.run = r["run"]
        self.settle("evaluation events")
        counts = Counter()
        for group in r["run"]["class_counts"].values():
            counts.update(group)
        return f"{r['run']['enterprise_count']} enterprises evaluated: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))

    def dispositions(self) -> str:
        exits = sorted(self.ds.http("exits"), key=lambda e: (e["effective_on"], e["credit_code"]))
        for e in exits:
            d = self.feeder.call("assessment", "POST", "/v1/dispositions", json={
                "credit_code": e["credit_code"], "year": e["year"], "decided": e["decided"],
                "decided_by": e["decided_by"], "reason": e["reason"]}).json()
            self.facts.decisions.append(d)
            x = self.feeder.call("assessment", "POST", f"/v1/dispositions/{e['credit_code']}/{e['year']}/execution",
                                 json={"effective_on": e["effective_on"], "to_park_id": e["to_park_id"],
                                       "note": e["reason"]}).json()
            self.facts.executions.append(x)
        self.settle("exits and relocations")
        kinds = Counter(e["decided"] for e in exits)
        overridden = sum(d["overridden"] for d in self.facts.decisions)
        return (f"{kinds['close']} closures, {kinds['relocate']} relocations decided and carried out "
                f"({overridden} overriding the recommendation)")

    def agreements(self) -> str:
        bodies = sorted(self.ds.http("agreements"), key=lambda a: (a["agreement_id"], a["version"]))
        for a in bodies:
            a = self.re.body(a)
            if a["version"] == 1:
                self.feeder.call("settlement", "POST", "/v1/agreements", "settlement", json=a)
            else:
                amendment = {k: v for k, v in a.items() if k not in ("agreement_id", "county_code")}
                self.feeder.call("settlement", "POST", f"/v1/agreements/{a['agreement_id']}/versions", "settlement",
                                 json=amendment)
        v2 = sum(a["version"] > 1 for a in bodies)
        return f"{len(bodies) - v2} revenue-sharing agreements, {v2} amendments"

    def releases(self) -> str:
        for rc in self.ds.http("reclamation_projects"):
            self.feeder.call("quota", "POST", "/v1/reclamation-projects", "natural_resources", json=self.re.body(rc))
        releases = self.ds.events(T.INTAKE_QUOTA, {"QuotaReleaseSubmitted"})
        releases.sort(key=lambda e: (e["data"]["released_on"], e["data"]["release_id"]))
        accepted = self.ds.events(T.INTAKE_QUOTA, {"ReclamationAccepted"})
        self.feeder.publish(T.INTAKE_QUOTA, releases)
        self.feeder.publish(T.INTAKE_QUOTA, accepted)
        self.facts.releases_sent, self.facts.acceptances_sent = len(releases), len(accepted)

        def booked():
            pool = self.feeder.get("quota", f"/v1/counties/{self.c}/pool")
            incoming = [a["asset"] for a in pool["assets"] if a["incoming"].strip("0.") != ""]
            return True if not incoming else f"incoming {incoming}"

        self.settle("lots booked in the ledger", booked)
        lots = self.feeder.pages("quota", f"/v1/counties/{self.c}/lots", "lots", "after", "next_after", limit=1000)
        return (f"{len(self.ds.http('reclamation_projects'))} 增减挂钩 projects registered; {len(releases)} releases and "
                f"{len(accepted)} acceptances on {T.INTAKE_QUOTA} → {len(lots)} lots booked")

    def projects(self) -> str:
        expected = {}
        with open(self.ds.root / "expected" / "projects.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                expected[self.re.text(row["project_id"])] = row
        for body in self.ds.http("projects"):
            body = self.re.body(body)
            r = self.feeder.call("assessment", "POST", "/v1/projects", json=body).json()
            self.facts.projects.append((body, r, expected.get(body["project_id"])))
        self.settle("project admissions")
        admitted = sum(r["admitted"] for _, r, _ in self.facts.projects)
        return f"{len(self.facts.projects)} applications: {admitted} admitted, {len(self.facts.projects) - admitted} refused"

    def demand(self) -> str:
        """Requests month by month, a round after each month's requests, then the approvals of that month."""
        times = {}
        for row in self.ds.table("county/quota_requests"):
            times.setdefault(row["申请编号"], row["申请时间"])
        requests = sorted(self.ds.http("quota_requests"), key=lambda q: (times.get(q["request_id"], ""), q["request_id"]))
        approvals = self.ds.events(T.INTAKE_QUOTA, {"ApprovalGranted"})
        by_month: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
        for q in requests:
            by_month[times.get(q["request_id"], "")[:7]][0].append(q)
        for a in approvals:
            by_month[a["data"]["granted_on"][:7]][1].append(a)
        for month in sorted(by_month):
            reqs, apps = by_month[month]
            refused = []
            for q in reqs:
                r = self.feeder.call("quota", "POST", "/v1/requests", json=self.re.body(q), expect=None)
                if r.status_code not in (200, 201):
                    refused.append((q["request_id"], r.json().get("reason")))
            rnd = None
            if reqs:
                rnd = self.feeder.call("quota", "POST", f"/v1/counties/{self.c}/rounds").json()
                self.facts.rounds.append(rnd)
                self.settle(f"{month} reservations")
            if apps:
                self.feeder.publish(T.INTAKE_QUOTA, apps)
                self.settle(f"{month} approvals")
            self.facts.months.append((month, len(reqs), refused, rnd, len(apps)))
            outcome = Counter(d["outcome"] for d in rnd["decisions"]) if rnd else {}
            self.say(f"      {month}: {len(reqs)} requests" + (f" ({len(refused)} refused at the door)" if refused else "")
                     + (f", round {rnd['seq']}: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.items())) if rnd else "")
                     + f", {len(apps)} approvals")
        waiting = self.feeder.get("quota", "/v1/requests", county_code=self.c, state="requested", limit=1000)["requests"]
        if waiting:  # refused for want of quota earlier: one more round now that others may have been released
            rnd = self.feeder.call("quota", "POST", f"/v1/counties/{self.c}/rounds").json()
            self.facts.rounds.append(rnd)
            self.settle("last round")
        states = Counter(r["state"] for r in self.feeder.pages("quota", "/v1/requests", "requests", "after", "next_after",
                                                                county_code=self.c, limit=1000))
        return (f"{len(requests)} requests, {len(self.facts.rounds)} rounds, {len(approvals)} approvals → "
                + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))

    def receipts(self) -> str:
        receipts = self.ds.events(T.INTAKE_SETTLEMENT, {"TaxReceiptReported"})
        receipts.sort(key=lambda e: (e["time"], e["data"]["receipt_id"]))
        self.feeder.publish(T.INTAKE_SETTLEMENT, receipts)
        self.facts.receipts_sent = len(receipts)
        self.settle("tax receipts")
        corrections = sum(1 for e in receipts if e["data"].get("corrects"))
        return f"{len(receipts)} receipts on {T.INTAKE_SETTLEMENT} ({corrections} corrections)"

    def settlement(self) -> str:
        f = self.facts
        today = datetime.now(CST).date()
        year = str(f.year)
        notes = []
        if date(f.year, 12, 31) < today:
            draft = self.feeder.call("settlement", "POST", f"/v1/counties/{self.c}/periods/{year}/draft", "settlement").json()
            final = self.feeder.call("settlement", "POST", f"/v1/counties/{self.c}/periods/{year}/finalize", "settlement",
                                     json={"expected_content_hash": draft["content_hash"]}).json()
            f.statements[year] = {"draft": draft, "final": final}
            f.periods["closed"] = year

            def posted():
                periods = self.feeder.get("settlement", f"/v1/counties/{self.c}/periods")
                st = next(s for s in periods["statements"] if s["period"] == year)
                p = st["postings"] or {}  # counts by state: requested (not answered yet), posted, rejected
                return True if p.get("requested", 1) == 0 else f"postings: {p}"

            self.settle(f"{year} postings in the ledger", posted)
            notes.append(f"{year}: draft {draft['content_hash'][:12]}…, finalized with the same hash, "
                         f"{final['line_count']} lines, "
                         f"{sum(n for k, n in final['postings'].items() if k != 'rejected_lines')} ledger postings")
        current = str(today.year)
        if current != year or not f.statements:
            d = self.feeder.call("settlement", "POST", f"/v1/counties/{self.c}/periods/{current}/draft", "settlement").json()
            f.statements[current] = {"draft": d, "final": None}
            f.periods["to_date"] = current
            notes.append(f"{current} to date: draft, {d['line_count']} lines")
        self.settle("settlement events")
        return "; ".join(notes)

    # -- the whole run -----------------------------------------------------------------------------
    def feed(self) -> None:
        self.say(f"CountyPool demo: county '{self.o.size}' (seed {self.o.seed}), data in {self.data_dir}")
        self.phase("generate", "generating the county", self.generate)
        f = self.facts
        self.say(f"    {f.county_name}, county code {f.county_code}"
                 + (f" (the generator's {f.original_code}, relabelled for this run)" if self.re.active else "")
                 + f"; operating year {f.year}, indicators of {f.data_year}")
        self.phase("start", "starting the platform", self.start_platform)
        self.phase("policies", "policies (quota prices, settlement shares)", self.policies)
        self.phase("register+indicators", f"January–March: departments report the register and {f.data_year} indicators",
                   self.department_data)
        self.phase("evaluation", f"the {f.data_year} evaluation (亩均效益评价)", self.evaluation)
        self.phase("dispositions", "April–July: the county decides and carries out exits and relocations", self.dispositions)
        self.phase("agreements", "revenue-sharing agreements for the relocations", self.agreements)
        self.phase("releases", "freed quota: releases and 增减挂钩 acceptances into the pool", self.releases)
        self.phase("projects", "July–August: new projects apply for admission", self.projects)
        self.phase("requests+rounds+approvals", "September–December: quota requests, allocation rounds, approvals",
                   self.demand)
        self.phase("receipts", "tax receipts of the relocated enterprises", self.receipts)
        self.phase("settlement", "settlement", self.settlement)
        f.published = dict(self.feeder.published)

    def stop(self) -> None:
        keep = self.o.keep_data or self.failed
        for x in (self.feeder, self.settler):
            if x is not None:
                x.close()
        if self.platform is not None:
            self.platform.stop()
            self.platform.delete_groups()
            if not keep:
                try:
                    self.platform.drop_databases()
                except Exception as exc:  # noqa: BLE001
                    print(f"could not drop the demo databases: {exc}", file=sys.stderr)
        if not keep:
            remove_data_dir(self.data_dir)
        elif self.failed:
            dbs = f" and databases {', '.join(self.platform.databases)}" if self.platform and self.platform.databases else ""
            print(f"kept {self.data_dir} (<service>.log){dbs} for a look", file=sys.stderr)


def run(opts: Options, inspect: Callable[["Demo", dict], None] | None = None) -> int:
    """Feed, print, then ``inspect(demo, report)`` (tests), then stop or stay up until Ctrl-C."""
    from ops.demo_report import collect, render

    try:
        demo = Demo(opts)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 2
    stopping = False

    def shutdown(*_):
        nonlocal stopping
        stopping = True

    code = 0
    try:
        started = time.monotonic()
        demo.feed()
        fed = time.monotonic() - started
        report = collect(demo)
        report["seconds"] = {"feed": fed, "collect": time.monotonic() - started - fed}
        if not opts.quiet:
            print(render(demo, report), flush=True)
        if inspect is not None:
            inspect(demo, report)
        if not report["checks_ok"]:
            code = 1
            demo.failed = True
        if not opts.stop:
            signal.signal(signal.SIGINT, shutdown)
            signal.signal(signal.SIGTERM, shutdown)
            print("\n" + demo.platform.banner())
            print("  county      " + demo.facts.county_code + (" (data removed on stop)" if not opts.keep_data else ""))
            print("Press Ctrl-C to stop.", flush=True)
            while not stopping:
                dead = demo.platform.dead()
                if dead:
                    print(f"{', '.join(dead)} exited; stopping", file=sys.stderr)
                    code = 1
                    break
                time.sleep(0.3)
    except (DemoError, RuntimeError) as exc:
        demo.failed = True
        print(f"demo failed: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted; stopping", file=sys.stderr)
        code = 130
    except BaseException:
        demo.failed = True  # e.g. an inspecting test's assertion: keep the logs and databases
        raise
    finally:
        demo.stop()
        if not opts.quiet:
            print("stopped." + (f" Data kept in {demo.data_dir}" if opts.keep_data else ""), flush=True)
    return code


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ops.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "small"], default="small")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--year", type=int, help="operating year (default: last year; its statement is finalized)")
    ap.add_argument("--county-code", help="6 digits for this run, or 'same' for the generator's 320612 (default: random)")
    ap.add_argument("--stop", action="store_true", help="stop the platform at the end instead of leaving it running")
    ap.add_argument("--keep-data", action="store_true", help="keep the throw-away data directory (and databases)")
    ap.add_argument("--data-dir", type=Path, help="where the data goes (default: a new temporary directory)")
    args = ap.parse_args(argv)
    if args.county_code not in (None, "same") and not (len(args.county_code) == 6 and args.county_code.isdigit()):
        ap.error("--county-code is 6 digits or 'same'")
    sys.exit(run(Options(size=args.size, seed=args.seed, year=args.year, county_code=args.county_code, stop=args.stop,
                         keep_data=args.keep_data, data_dir=args.data_dir)))


if __name__ == "__main__":
    main()
