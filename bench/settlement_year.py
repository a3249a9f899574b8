"""A county-year of settlement on PostgreSQL: the yearly statement's time and peak memory. Prints figures, never
asserts timing.

Data (scale 1): 10,000 revenue-sharing agreements (VAT 50 %, CIT 40 %, 6:4 for three years then 5:5, start months
spread over 2022-2025 so splits step inside the year, 10 % with a guaranteed minimum), 12 monthly receipts each for
the two taxes (240,000 receipts), 50,000 quota allocations consuming 1-3 lots each from 20,000 exiting
enterprises. Inputs are loaded with COPY straight into the service's tables (what intake would have stored).

Measured, for the statement of the year 2025:
* draft   — ``StatementRuns.draft``, the service's own path, on fresh statement tables: read and sum the inputs,
            compute, write the lines (COPY, while the next ones are computed), totals, outbox, commit; then again
            (re-run, same inputs: same hash, the stored lines stay); then once more after one more receipt (another
            statement: its lines are written over the stored ones);
* compute — ``compute_from_database`` alone (no storing), and its peak Python memory (tracemalloc, separate run:
            tracing slows Python down);
* memory vs receipts — the same county with every monthly receipt paid in 3 instalments (3x the receipts, the same
            lines): peak memory should stay flat, since receipts are summed per month by the database;
* time vs data — the draft at two scales 10x apart (default 0.2 and 2; ``--ratio-scales``) and their ratio.

Usage:  .venv/bin/python bench/settlement_year.py [--pg-url postgresql+psycopg://...] [--ratio-scales 1,10]
        [--skip-ratio] [--skip-instalments] [--out bench/results/settlement_year.json]
About 3 minutes on 2 cores (the timings are only meaningful on an otherwise idle machine: run it more than once).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sys
import time
import tracemalloc
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.support import ScratchDatabases  # noqa: E402
from services.settlement.main import build  # noqa: E402
from services.settlement.statement_runs import StatementRuns, compute_from_database  # noqa: E402
from services.settlement.domain import Period  # noqa: E402
from shared.settings import load_settings  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://countypool:countypool@127.0.0.1:55432/countypool_test"
RESULTS = ROOT / "bench" / "results" / "settlement_year.json"
UTC = timezone.utc
YEAR = 2025


def month_end(y: int, m: int) -> date:
    return (date(y + (m == 12), m % 12 + 1, 1) - timedelta(days=1))


def add_months(d: date, n: int) -> date:
    i = d.year * 12 + d.month - 1 + n
    return date(i // 12, i % 12 + 1, 1)


class CountyYear:
    """Generates one county's inputs for YEAR and COPYs them into a settlement database."""

    def __init__(self, county: str, scale: float, instalments: int, seed: int = 7):
        self.county = county
        self.agreements = int(10_000 * scale)
        self.allocations = int(50_000 * scale)
        self.exiting = int(20_000 * scale)
        self.instalments = instalments
        self.rng = random.Random(seed)
        self.townships = [f"{county}{i:03d}" for i in range(1, 101)]
        self.parks = [f"P{county}{i:02d}" for i in range(1, 11)]

    def enterprise(self, i: int) -> str:
        return f"91{self.county}{i:010d}"

    def load(self, raw) -> dict[str, int]:
        counts = {}
        now = datetime.now(UTC)
        with raw.cursor() as cur:
            # columns named: a later migration's column (effective_from, 0007) must not shift the values
            cur.execute("INSERT INTO settlement_policies (county_code, version, policy_id, compensation_bp, township_weight, "
                        "park_weight, fund_weight, recorded_at, recorded_by) "
                        "VALUES (%s, 1, 'bench-policy', 3000, 4, 3, 3, %s, 'bench')", (self.county, now))
            counts["agreements"] = self._copy(cur, "agreement_versions", self._agreements(now))
            counts["tax_receipts"] = self._copy(cur, "tax_receipts", self._receipts())
            counts["quota_allocations"], counts["allocation_lots"] = self._allocations(cur)
        raw.commit()
        return counts

    @staticmethod
    def _copy(cur, table: str, rows) -> int:
        n = 0
        with cur.copy(f"COPY {table} FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
                n += 1
        return n

    def _agreements(self, now):
        shares = json.dumps({"CIT": 4000, "VAT": 5000})
        schedule = json.dumps([[1, 3, 6, 4], [4, None, 5, 5]])
        for i in range(self.agreements):
            start = add_months(date(2022, 1, 1), self.rng.randrange(37))  # 2022-01 .. 2025-01
            end_first = add_months(start, 60)
            end = end_first - timedelta(days=1)
            minimum = self.rng.randrange(100_000, 1_000_000) * 100 if i % 10 == 0 else None
            destination = f"park:{self.rng.choice(self.parks)}"
            yield (f"FD-{i:06d}", 1, self.county, start, self.enterprise(i), None, f"township:{self.rng.choice(self.townships)}",
                   destination, destination, start, end, shares, schedule, minimum, None, None, None, now, "bench")

    def _receipts(self):
        n = 0
        for i in range(self.agreements):
            e = self.enterprise(i)
            for m in range(1, 13):
                received = datetime(YEAR + (m == 12), m % 12 + 1, 15, 2, tzinfo=UTC)
                for tax, lo, hi in (("VAT", 1_000_000, 100_000_000), ("CIT", 100_000, 50_000_000)):
                    total = self.rng.randrange(lo, hi)
                    parts = [total // self.instalments] * self.instalments
                    parts[-1] += total - sum(parts)
                    for k, amount in enumerate(parts):
                        n += 1
                        yield (f"TR{n:09d}", e, f"{YEAR}-{m:02d}", date(YEAR, m, 1), tax, amount, None, None, None,
                               received + timedelta(minutes=k), "import", None)

    def _allocations(self, cur) -> tuple[int, int]:
        allocs, lots = [], []
        for i in range(self.allocations):
            aid = f"REQ{i:07d}:LAND"
            on = date(YEAR, 1, 1) + timedelta(days=self.rng.randrange(365))
            chosen = {self.rng.randrange(self.exiting) for _ in range(self.rng.randint(1, 3))}
            units_total = 0
            for k, ent in enumerate(sorted(chosen)):
                units = self.rng.randrange(1, 50) * 100_000
                units_total += units
                town = self.townships[ent % len(self.townships)]
                lots.append((aid, f"LOT-{ent:06d}-{i}-{k}", self.enterprise(10_000_000 + ent), f"township:{town}", units))
            allocs.append((aid, self.county, f"REQ{i:07d}", f"PRJ{i:07d}", "LAND", units_total, "120000.00",
                           self.rng.randrange(10_000, 5_000_000) * 100, f"park:{self.rng.choice(self.parks)}", on,
                           datetime(on.year, on.month, on.day, 10, tzinfo=UTC) + timedelta(days=1), str(uuid.uuid4())))
        return self._copy(cur, "quota_allocations", allocs), self._copy(cur, "allocation_lots", lots)


class Database:
    """A throw-away PostgreSQL database beside the given URL, migrated to settlement's head."""

    def __init__(self, server_url: str):
        self.scratch = ScratchDatabases(server_url, "settlement")
        settings = load_settings("settlement", database_url=self.scratch.create(), relay_enabled=False,
                                 consumer_enabled=False, log_json=False)
        self.runtime, _ = build(settings)
        self.runtime.migrate()

    def drop(self) -> None:
        self.runtime.db.dispose()
        self.scratch.close()


def run_scale(server_url: str, scale: float, instalments: int = 1, *, memory: bool = True) -> dict:
    db = Database(server_url)
    try:
        county = f"{random.randint(100000, 999999)}"
        gen = CountyYear(county, scale, instalments)
        t0 = time.perf_counter()
        with db.runtime.db.engine.connect() as conn:
            raw = conn.connection.driver_connection
            counts = gen.load(raw)
        with db.runtime.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        load_s = time.perf_counter() - t0
        year = Period.parse(str(YEAR))
        out = {"scale": scale, "instalments": instalments, **counts, "load_s": round(load_s, 2)}
        runs = StatementRuns(db.runtime)
        # 1. the draft through the service, on fresh statement tables
        t0 = time.perf_counter()
        first = runs.draft(county, str(YEAR), "bench").statement
        first_s = time.perf_counter() - t0
        out.update(lines=len(first.lines), parties=len(first.totals), first_draft_s=round(first_s, 2),
                   lines_per_s=round(len(first.lines) / first_s), nets_sum_to_zero=sum(x.net_fen for x in first.totals) == 0)
        first_hash = first.content_hash
        del first
        # 2. the same draft again: same inputs, same hash, the stored lines stay
        t0 = time.perf_counter()
        result = runs.draft(county, str(YEAR), "bench")
        out["rerun_draft_s"] = round(time.perf_counter() - t0, 2)
        out["same_hash_on_rerun"] = result.statement.content_hash == first_hash
        out["content_hash"] = first_hash
        del result
        # 3. the computation alone (nothing stored), then its peak Python memory (tracing slows Python down)
        with db.runtime.db.sessions() as s, s.begin():
            t0 = time.perf_counter()
            st = compute_from_database(s, county, year, datetime.now(UTC))
            out["compute_s"] = round(time.perf_counter() - t0, 2)
            out["same_hash_computed"] = st.content_hash == first_hash
            del st
        if memory:
            with db.runtime.db.sessions() as s, s.begin():
                tracemalloc.start()
                st = compute_from_database(s, county, year, datetime.now(UTC))
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                out["compute_peak_mib"] = round(peak / 2**20, 1)
                out["peak_bytes_per_line"] = round(peak / max(1, len(st.lines)))
                del st
        # 4. one more receipt for the year, then the draft again: another statement, written over the stored one
        with db.runtime.db.engine.connect() as conn:
            conn.exec_driver_sql(
                "INSERT INTO tax_receipts (receipt_id, enterprise, month, month_start, tax_kind, amount_fen, received_at, "
                "channel) VALUES ('TR-LATE', %s, '2025-06', '2025-06-01', 'VAT', 123456789, now(), 'import')",
                (gen.enterprise(0),))
            conn.commit()
        t0 = time.perf_counter()
        result = runs.draft(county, str(YEAR), "bench")
        out["changed_draft_s"] = round(time.perf_counter() - t0, 2)
        out["changed_hash"] = result.statement.content_hash != first_hash
        del result
        return out
    finally:
        db.drop()


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the throw-away databases are dropped
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_PG))
    ap.add_argument("--ratio-scales", default="0.2,2", help="two scales to compare (10x apart by default; 1,10 needs ~10 GB)")
    ap.add_argument("--skip-ratio", action="store_true")
    ap.add_argument("--skip-instalments", action="store_true")
    ap.add_argument("--out", default=None, help=f"also write the figures as JSON (e.g. {RESULTS.relative_to(ROOT)})")
    args = ap.parse_args()
    import logging

    logging.disable(logging.WARNING)
    results: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}}

    print("county-year, scale 1 ...", flush=True)
    base = run_scale(args.pg_url, 1)
    results["year"] = base
    print(json.dumps(base, indent=1), flush=True)

    if not args.skip_instalments:
        print("same county, every receipt paid in 3 instalments (3x receipts, same lines) ...", flush=True)
        inst = run_scale(args.pg_url, 1, instalments=3)
        results["instalments_3"] = inst
        print(json.dumps(inst, indent=1), flush=True)
        print(f"peak memory: {base['compute_peak_mib']} MiB with {base['tax_receipts']:,} receipts, "
              f"{inst['compute_peak_mib']} MiB with {inst['tax_receipts']:,} "
              f"(x{inst['compute_peak_mib'] / base['compute_peak_mib']:.2f})", flush=True)

    if not args.skip_ratio:
        lo, hi = (float(x) for x in args.ratio_scales.split(","))
        print(f"scale {lo} ...", flush=True)
        small = base if lo == 1 else run_scale(args.pg_url, lo, memory=False)
        print(f"scale {hi} ...", flush=True)
        big = run_scale(args.pg_url, hi, memory=False)
        results["ratio"] = {"small": small, "big": big, "data_ratio": hi / lo,
                            "draft_time_ratio": round(big["first_draft_s"] / small["first_draft_s"], 2),
                            "compute_time_ratio": round(big["compute_s"] / small["compute_s"], 2)}
        print(json.dumps(results["ratio"], indent=1), flush=True)

    y = results["year"]
    print("\n== settlement, county-year on PostgreSQL ==")
    print(f"inputs: {y['agreements']:,} agreements, {y['tax_receipts']:,} receipts, {y['quota_allocations']:,} allocations")
    print(f"yearly statement: {y['lines']:,} lines, {y['parties']:,} parties; draft {y['first_draft_s']} s "
          f"({y['lines_per_s']:,} lines/s; computing alone {y['compute_s']} s); re-run {y['rerun_draft_s']} s, "
          f"same hash: {y['same_hash_on_rerun']}; after one more receipt {y['changed_draft_s']} s; peak memory of compute "
          f"{y['compute_peak_mib']} MiB ({y['peak_bytes_per_line']} bytes/line)")
    if "instalments_3" in results:
        i = results["instalments_3"]
        print(f"3x receipts (instalments, same lines): draft {i['first_draft_s']} s, peak memory of compute x"
              f"{i['compute_peak_mib'] / y['compute_peak_mib']:.2f}")
    if "ratio" in results:
        r = results["ratio"]
        print(f"{r['data_ratio']:g}x data (scale {r['small']['scale']:g} -> {r['big']['scale']:g}): draft time "
              f"x{r['draft_time_ratio']}, compute time x{r['compute_time_ratio']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
