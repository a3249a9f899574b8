"""Replay: rebuilding each service's read models from 1,000,000 events (goal >= 50,000 events/s).

For each service, a fresh PostgreSQL database is migrated and filled with N events by the service's
``bench/replay_<service>.py:write_events`` (the ledger: journal entries; the others: their outbox), then the
service's own ``rebuild`` (the code behind ``countypool replay``) folds them. Printed per service: events,
fold seconds and events/s (reading the event store + folding into the read models), and the time to compare
with the live tables. Where the writer also fills the live tables to match (ledger, quota, settlement) the
comparison must come out equal; where it does not, the comparison runs against empty tables and its time is
printed but its differences are not a finding.

Usage:  .venv/bin/python bench/replay.py [--events 1000000] [--services ledger,quota,settlement,assessment]
        [--pg-url postgresql+psycopg://...]
Results: bench/results/replay.json.
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.support import DEFAULT_PG, ScratchDatabases  # noqa: E402
from shared import migrations  # noqa: E402
from shared.db import Database  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "replay.json"
SERVICES = ("ledger", "quota", "settlement", "assessment")
GOAL = 50_000


def bench_service(service: str, n: int, pg_url: str) -> dict:
    main = importlib.import_module(f"services.{service}.main")
    replay = importlib.import_module(f"services.{service}.replay")
    writer = importlib.import_module(f"bench.replay_{service}")
    scratch = ScratchDatabases(pg_url, f"replay_{service}")
    db = Database(scratch.create(), service)
    try:
        migrations.upgrade(db, main.MIGRATIONS)
        t0 = time.perf_counter()
        written = writer.write_events(db, n)
        write_s = time.perf_counter() - t0
        report = replay.rebuild(db)
        return {
            "service": service, "events_written": written, "write_seconds": round(write_s, 2),
            "events_folded": report.events_read, "fold_seconds": round(report.fold_seconds, 3),
            "events_per_second": round(report.events_per_second), "compare_seconds": round(report.compare_seconds, 3),
            "rows": report.rows, "differences": len(report.differences),
            "goal_met": report.events_per_second >= GOAL,
        }
    finally:
        db.dispose()
        scratch.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--services", default=",".join(SERVICES))
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    args = ap.parse_args()
    rows = []
    for service in args.services.split(","):
        print(f"{service}: writing {args.events:,} events ...", flush=True)
        r = bench_service(service, args.events, args.pg_url)
        rows.append(r)
        print(f"{service}: {r['events_folded']:,} events folded in {r['fold_seconds']} s = {r['events_per_second']:,}/s "
              f"(goal {GOAL:,}: {'met' if r['goal_met'] else 'NOT met'}); compare {r['compare_seconds']} s; "
              f"{r['differences']} rows differ from live; rows {r['rows']}; written in {r['write_seconds']} s", flush=True)
    print(f"\n{'service':<12}{'events':>12}{'fold s':>9}{'events/s':>11}{'compare s':>11}")
    for r in rows:
        print(f"{r['service']:<12}{r['events_folded']:>12,}{r['fold_seconds']:>9}{r['events_per_second']:>11,}"
              f"{r['compare_seconds']:>11}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
        "events": args.events, "goal_events_per_second": GOAL, "results": rows}, indent=2) + "\n")
    print(f"results: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
