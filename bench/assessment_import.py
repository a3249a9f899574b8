"""A county of N enterprises end to end: import the register and a department's figures (CSV), evaluate the
county-year, publish every event to Kafka. Prints rows/s for parsing, scoring and publishing separately, the
CPU seconds of this process per phase (the machine is shared: wall time is noisy, CPU time much less so)
and the end-to-end time; never asserts timing.

--relay after (default): the relay publishes once the evaluation is done (bench's own OutboxRelay, in this
process), so publishing is measured alone and its share of the end-to-end time is reported.
--relay concurrent: the relay runs as the service runs it (relay_process: a child process) from the start,
publishing the import's events while the rest goes on; "publishing" is then the tail after the evaluation.

Usage:  .venv/bin/python bench/assessment_import.py [--enterprises 100000] [--db-url sqlite:///... |
        postgresql+psycopg://...] [--bootstrap 127.0.0.1:9092] [--relay after|concurrent] [--profile]
Results go to bench/results/assessment_import.json (the --db-url's dialect and --relay mode keyed) as well.
"""
from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import os
import platform
import pstats
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

from sqlalchemy import func, select  # noqa: E402

from services.assessment.domain.credit_code import make_credit_code  # noqa: E402
from services.assessment.events import Actor  # noqa: E402
from services.assessment.evaluations import evaluate  # noqa: E402
from services.assessment.imports import ImportOptions, import_file  # noqa: E402
from services.assessment.main import AssessmentSettings, build  # noqa: E402
from shared.kafka_admin import KafkaProbe  # noqa: E402
from shared.outbox import unpublished_count  # noqa: E402
from shared.runtime import RelayProcess  # noqa: E402
from shared.settings import load_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "assessment_import.json"
COUNTY, YEAR = "320623", 2023
TOWNSHIPS = [f"{COUNTY}{i:03d}" for i in range(100, 120)]
PARKS = [f"P-{i:02d}" for i in range(12)]


def generate(n: int, seed: int = 7) -> tuple[bytes, bytes]:
    """(register CSV, indicators CSV) of a county: Chinese headers, money in 万元, electricity in 万kWh."""
    rnd = random.Random(seed)
    reg, ind = io.StringIO(), io.StringIO()
    rw, iw = csv.writer(reg), csv.writer(ind)
    rw.writerow(["统一社会信用代码", "企业名称", "乡镇代码", "行业代码", "是否在园区", "园区编号", "安全隐患", "公用事业"])
    iw.writerow(["统一社会信用代码", "年度", "用地面积(亩)", "实缴税金(万元)", "销售收入(万元)", "工业增加值(万元)",
                 "综合能耗(吨标准煤)", "用电量(万千瓦时)", "COD(吨)", "氨氮(吨)", "研发经费(万元)", "年平均职工人数"])
    for i in range(n):
        code = make_credit_code(f"91{COUNTY}{i:09d}")
        in_park = rnd.random() < 0.3
        rw.writerow([code, f"企业{i}", rnd.choice(TOWNSHIPS), rnd.choice(["C3311", "C2614", "C1713", "C3130"]),
                     "是" if in_park else "否", rnd.choice(PARKS) if in_park else "",
                     "是" if rnd.random() < 0.03 else "否", "是" if rnd.random() < 0.01 else "否"])
        land = rnd.randint(5, 2000) / 10
        revenue = rnd.randint(50, 80000)
        iw.writerow([code, YEAR, f"{land:.1f}", f"{rnd.randint(0, 3000) / 100:.2f}", revenue,
                     f"{revenue * rnd.randint(10, 35) / 100:.2f}", rnd.randint(10, 5000), f"{rnd.randint(5, 3000) / 10:.1f}",
                     f"{rnd.randint(0, 500) / 100:.2f}", f"{rnd.randint(0, 50) / 100:.2f}",
                     f"{revenue * rnd.randint(0, 5) / 100:.2f}", rnd.randint(3, 800)])
    return reg.getvalue().encode(), ind.getvalue().encode()


def outbox_backlog(runtime) -> int:
    with runtime.db.sessions() as s:
        return unpublished_count(s)


def outbox_rows(runtime) -> int:
    with runtime.db.sessions() as s:
        return s.execute(select(func.count()).select_from(runtime.tables["outbox"])).scalar_one()


def drain(runtime) -> tuple[int, float, int]:
    """(published, seconds, failed attempts): publish until the backlog is empty, retrying like the relay's
    own loop when Kafka is away for a while (the broker is shared with fault tests)."""
    started = time.perf_counter()
    sent, failures = 0, 0
    while True:
        try:
            n = runtime.relay.publish_batch()
        except Exception as exc:  # noqa: BLE001 - reported, then retried as OutboxRelay.run does
            failures += 1
            print(f"publish failed ({exc}); retrying", file=sys.stderr)
            runtime.relay._drop_producer()
            time.sleep(min(5.0, 0.1 * 2**failures))
            continue
        if n == 0 and outbox_backlog(runtime) == 0:
            return sent, time.perf_counter() - started, failures
        sent += n


def wait_published(runtime, timeout: float = 600) -> float:
    started = time.perf_counter()
    while outbox_backlog(runtime) > 0:
        if time.perf_counter() - started > timeout:
            raise TimeoutError("the relay did not publish everything")
        time.sleep(0.05)
    return time.perf_counter() - started


class Clock:
    """Wall and this process's CPU seconds of each phase."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.phases: dict[str, dict] = {}

    def lap(self, name: str) -> float:
        wall, cpu = time.perf_counter(), time.process_time()
        self.phases[name] = {"wall": round(wall - self.wall, 3), "cpu": round(cpu - self.cpu, 3)}
        self.wall, self.cpu = wall, cpu
        return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--enterprises", type=int, default=100_000)
    ap.add_argument("--db-url", default=None, help="default: a fresh SQLite file")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--relay-batch", type=int, default=2000)
    ap.add_argument("--relay", choices=("after", "concurrent"), default="after")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not KafkaProbe(args.bootstrap, ttl=0).reachable():
        sys.exit(f"Kafka is not reachable at {args.bootstrap}")
    tmp = tempfile.mkdtemp(prefix="cp-bench-")
    db_url = args.db_url or f"sqlite:///{tmp}/assessment.sqlite3"
    n = args.enterprises

    t = time.perf_counter()
    register_csv, indicators_csv = generate(n)
    print(f"generated {n} enterprises ({len(register_csv) + len(indicators_csv)} bytes of CSV) in {time.perf_counter() - t:.1f} s")

    settings = load_settings("assessment", AssessmentSettings, database_url=db_url, kafka_bootstrap_servers=args.bootstrap,
                             relay_batch_size=args.relay_batch, consumer_enabled=False)
    runtime, _ = build(settings)
    runtime.migrate()
    relay_process = RelayProcess(settings, db_url) if args.relay == "concurrent" else None
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()

    if relay_process:
        relay_process.start()
    clock = Clock()
    started, cpu_started = clock.wall, clock.cpu
    reg = import_file(runtime, register_csv, ImportOptions(kind="enterprises"), principal="bench")
    clock.lap("import_register")
    ind = import_file(runtime, indicators_csv, ImportOptions(kind="indicators", department="industry"), principal="bench")
    clock.lap("import_indicators")
    assert reg.rejected == 0 and ind.rejected == 0, (reg.bad_rows[:3], ind.bad_rows[:3])
    timings: dict = {}
    t = time.perf_counter()
    row, created = runtime.transaction(lambda uow: evaluate(uow.session, uow.outbox, COUNTY, YEAR, Actor("bench"),
                                                            datetime.now(timezone.utc), timings))
    evaluate_seconds = time.perf_counter() - t
    if not created:
        sys.exit(f"the county-year {COUNTY}/{YEAR} was already evaluated with the same inputs in this database, "
                 "so nothing was scored: give the bench a fresh --db-url")
    clock.lap("evaluate")
    failures = 0
    if relay_process:
        publish_seconds = wait_published(runtime)
        published = events = outbox_rows(runtime)
    else:
        events = outbox_backlog(runtime)
        published, publish_seconds, failures = drain(runtime)
    clock.lap("publish")
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if relay_process:
        relay_process.stop()
    if profiler:
        profiler.disable()
        for order in ("cumulative", "tottime"):
            pstats.Stats(profiler).sort_stats(order).print_stats(40)

    parse_s = reg.timings["parse_seconds"] + ind.timings["parse_seconds"]
    write_s = reg.timings["write_seconds"] + ind.timings["write_seconds"]
    result = {
        "bench": "assessment_import", "at": datetime.now(timezone.utc).isoformat(), "enterprises": n,
        "database": runtime.db.engine.dialect.name, "bootstrap": args.bootstrap, "relay": args.relay,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "parse": {"rows": reg.rows + ind.rows, "seconds": round(parse_s, 3), "rows_per_s": round((reg.rows + ind.rows) / parse_s)},
        "import_write": {"rows": reg.rows + ind.rows, "seconds": round(write_s, 3), "rows_per_s": round((reg.rows + ind.rows) / write_s)},
        "scoring": {"enterprises": row.enterprise_count, "seconds": round(timings["score_seconds"], 3),
                    "rows_per_s": round(row.enterprise_count / timings["score_seconds"])},
        "evaluation_total": {"seconds": round(evaluate_seconds, 3), "load_seconds": round(timings["load_seconds"], 3),
                             "build_events_seconds": round(timings["build_seconds"], 3),
                             "write_seconds": round(timings["write_seconds"], 3)},
        "publishing": {"events": published, "seconds": round(publish_seconds, 3),
                       "events_per_s": round(published / publish_seconds) if publish_seconds else None,
                       "share_of_end_to_end": round(publish_seconds / total, 3), "failed_attempts": failures},
        "phases": clock.phases,
        "end_to_end_seconds": round(total, 3),
        "process_cpu_seconds": round(cpu, 3),  # this process only (the relay's producer thread included in 'after')
        "class_counts": json.loads(row.class_counts),
        "content_hash": row.content_hash,
    }
    assert published == events, (published, events)
    runtime.db.dispose()
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if not profiler:  # the profiler about doubles the times: not figures to keep
        save(result)


def save(result: dict) -> None:
    """One entry per database and relay mode, so runs on SQLite and PostgreSQL stand side by side."""
    try:
        kept = json.loads(RESULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = {}
    if not isinstance(kept, dict) or "runs" not in kept:
        kept = {"runs": {}}
    kept["runs"][f"{result['database']}/{result['relay']}"] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(kept, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
