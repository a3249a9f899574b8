"""Soak: the platform for N minutes at half the sustainable end-to-end rate (issue 8, "Load and soak").

Prints figures, never asserts timing. Runs on its OWN Kafka broker and PostgreSQL server (ports 29392/29393
and 55732 by default, data under /var/tmp), never the shared ones, and stops them at the end.

The four services run as separate processes; departments' QuotaReleaseSubmitted envelopes (fresh ids) go to
countypool.intake.quota at a fixed rate: quota takes each in as a lot, asks the ledger (linked intake and
retirement), the ledger posts and answers, settlement records the lots and buy-backs. The rate is half of
``sustained.events_per_s`` in bench/results/e2e_load.json (``--rate`` overrides; 50/s without either).

Every 10 s: resident memory (VmRSS from /proc/<pid>/status) and threads of each service process, consumer lag
of each service (its database positions against the topics' end offsets), outbox backlogs, events applied.
At the end, after the stream stops: time to drain, then checks -- every release booked as one lot, per-asset
ledger sums zero, the journal verifies, quota's reconciliation with the ledger agrees, no dead letters, no
service exited, the WARNING/ERROR lines of every service log (Kafka client chatter counted apart).

Usage: .venv/bin/python bench/soak.py [--minutes 20] [--rate R] [--out bench/results/soak.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from e2e_load import COUNTY, IntakeCounter, ReleaseFactory, ledger_conn  # noqa: E402
from shared.contracts import topics as T  # noqa: E402
from shared.outbox import make_producer  # noqa: E402
from tests.faults import stream as fstream  # noqa: E402
from tests.faults.infra import Infra, Services, free_port, http_json, make_workdir, port_free  # noqa: E402
from tests.faults.runner import Report, check_sums_and_chain, end_offsets, settle_snapshot, sql  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) in value per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return round(60 * sum((p[0] - mx) * (p[1] - my) for p in points) / den, 3) if den else None


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--rate", type=float, default=None)
    ap.add_argument("--from-results", type=Path, default=RESULTS / "e2e_load.json")
    ap.add_argument("--sample-seconds", type=float, default=10)
    ap.add_argument("--kafka-port", type=int, default=29392)
    ap.add_argument("--pg-port", type=int, default=55732)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = ap.parse_args()

    rate, rate_from = args.rate, "--rate"
    if rate is None:
        try:
            sustained = json.loads(args.from_results.read_text())["sustained"]["events_per_s"]
            rate, rate_from = sustained / 2, f"half of {sustained}/s sustained in {args.from_results.name}"
        except (OSError, KeyError, TypeError, ValueError):
            rate, rate_from = 50.0, "default (no e2e_load result)"
    kp = args.kafka_port if port_free(args.kafka_port) and port_free(args.kafka_port + 1) else free_port()
    cp = kp + 1 if kp == args.kafka_port else free_port()
    pp = args.pg_port if port_free(args.pg_port) else free_port()
    workdir = make_workdir("countypool-soak-")
    infra = Infra(workdir, kafka_port=kp, controller_port=cp, pg_port=pp)
    services = None
    result: dict = dict(started=datetime.now(timezone.utc).isoformat(), minutes=args.minutes, rate=rate,
                        rate_from=rate_from, samples=[])
    log(f"{args.minutes} min at {rate}/s ({rate_from}); data in {workdir}")
    try:
        gen_dir = fstream.generate(workdir / "generated")
        infra.start()
        services = Services(infra, workdir)
        services.start_all()
        st, body = http_json("PUT", f"{services.url('quota')}/v1/counties/{COUNTY}/policy", {"verification": "accept"})
        assert st == 200, (st, body)
        factory = ReleaseFactory(gen_dir, uuid.uuid4().hex[:6])
        producer = make_producer(infra.bootstrap, linger_ms=5, client_id="bench-soak")
        pids = {s: services.pid(s) for s in services.names}
        stop = threading.Event()
        sent = [0]
        sent_ids: list[str] = []  # appended by the sender; the counter takes what is new at each sample
        send_errors: Counter = Counter()

        def send() -> None:
            t0 = time.monotonic()
            end = t0 + args.minutes * 60
            while time.monotonic() < end and not stop.is_set():
                due = int((time.monotonic() - t0) * rate) - sent[0]
                if due > 0:
                    for rid, value in factory.make("soak", due):
                        sent_ids.append(rid)
                        try:
                            producer.send(T.INTAKE_QUOTA, key=rid.encode(), value=value)
                        except Exception as exc:  # noqa: BLE001
                            send_errors[type(exc).__name__] += 1
                    sent[0] += due
                time.sleep(0.01)
            producer.flush(timeout=60)

        sender = threading.Thread(target=send, daemon=True)
        t0 = time.monotonic()
        sender.start()
        with ledger_conn(infra) as conn:
            counter = IntakeCounter(conn, [])

            def intake_count(_conn) -> int:
                """Intake transfers committed, of the releases sent so far (only those not seen yet are asked for:
                a count(*) of the table would scan millions of rows by the end)."""
                new = sent_ids[counter.total:len(sent_ids)]
                counter.unseen.update(f"quota/intake/release:{rid}" for rid in new)
                counter.total += len(new)
                return counter.count()

            while sender.is_alive():
                time.sleep(args.sample_seconds)
                snap = settle_snapshot(infra, services)
                sample = dict(t=round(time.monotonic() - t0, 1), sent=sent[0], applied=intake_count(conn),
                              rss_kb=services.rss_kb(), threads=services.threads(),
                              lag={s: v["lag"] for s, v in snap["services"].items()},
                              backlog={s: v["outbox_backlog"] for s, v in snap["services"].items()})
                result["samples"].append(sample)
                if len(result["samples"]) % 6 == 1:
                    log(f"t={sample['t']:.0f}s sent {sample['sent']} applied {sample['applied']} lag {sample['lag']} "
                        f"rss MB { {k: round(v / 1024) for k, v in sample['rss_kb'].items() if v} }")
            sender.join()
            t_end = time.monotonic()
            while intake_count(conn) < sent[0] and time.monotonic() - t_end < 300:
                time.sleep(0.5)
            result["drain_seconds"] = round(time.monotonic() - t_end, 1)
            result["applied"] = intake_count(conn)
        producer.close()
        result["sent"] = sent[0]
        result["send_errors"] = dict(send_errors)
        result["achieved_rate"] = round(sent[0] / (args.minutes * 60), 1)

        # figures
        samples = result["samples"]
        warm = [x for x in samples if x["t"] >= min(60, args.minutes * 60 / 4)] or samples
        mem = {}
        for s in services.names:
            pts = [(x["t"], x["rss_kb"][s] / 1024) for x in warm if x["rss_kb"].get(s)]
            mem[s] = dict(rss_mb_start=round(pts[0][1], 1) if pts else None, rss_mb_end=round(pts[-1][1], 1) if pts else None,
                          rss_mb_max=round(max(p[1] for p in pts), 1) if pts else None,
                          slope_mb_per_min=slope_per_min(pts),
                          threads_start=warm[0]["threads"].get(s), threads_end=warm[-1]["threads"].get(s),
                          same_process=services.pid(s) == pids[s])
        result["memory"] = mem
        result["lag"] = {s: dict(max=max(x["lag"][s] for x in samples), end=samples[-1]["lag"][s]) for s in services.names}

        # checks
        rep = Report()
        time.sleep(3)
        snap = settle_snapshot(infra, services)
        rep.check(all(v["lag"] == 0 and v["outbox_backlog"] == 0 for v in snap["services"].values()),
                  f"not settled after the drain: {snap['services']}")
        lots = sql(infra, "quota", "SELECT count(*), count(*) FILTER (WHERE ledger_state = 'booked') FROM lots")[0]
        rep.check(lots[0] == sent[0] and lots[1] == lots[0], f"lots (all, booked) {lots} for {sent[0]} releases")
        check_sums_and_chain(infra, services, rep)
        st, rec = http_json("GET", f"{services.url('quota')}/v1/counties/{COUNTY}/reconciliation")
        rep.check(st == 200 and rec.get("agrees"), f"reconciliation: {st} {str(rec)[:300]}")
        ends = end_offsets(infra.bootstrap, [T.dlq(t) for t in T.ALL])
        dl = {t: n for (t, _), n in ends.items() if n}
        rep.check(not dl, f"dead letters: {dl}")
        rep.check(not services.dead(), f"services exited: {services.dead()}")
        findings = services.log_findings()
        result["log_findings"] = {s: {k: v for k, v in c.items()} for s, c in findings.items() if c}
        errors = {s: sum(v for k, v in c.items() if "kafka client" not in k and k.startswith(("ERROR", "traceback")))
                  for s, c in findings.items()}
        rep.check(not any(errors.values()), f"ERROR lines / tracebacks in service logs: {errors}")
        result["errors_in_logs"] = errors
        result["failures"] = rep.failures
    finally:
        if services is not None:
            services.stop(fast=True)
        infra.stop(fast=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        result["finished"] = datetime.now(timezone.utc).isoformat()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
    print_table(result)
    return 1 if result.get("failures") else 0


def print_table(r: dict) -> None:
    print(f"\nsoak: {r['minutes']} min at {r['rate']}/s ({r['rate_from']}); sent {r.get('sent')}, applied "
          f"{r.get('applied')}, drained in {r.get('drain_seconds')} s after the stream stopped")
    print(f"{'service':<11} {'RSS start MB':>12} {'RSS end MB':>10} {'max MB':>7} {'MB/min':>7} {'threads':>9} {'lag max':>8} {'lag end':>8}")
    for s, m in (r.get("memory") or {}).items():
        lag = r["lag"][s]
        print(f"{s:<11} {str(m['rss_mb_start']):>12} {str(m['rss_mb_end']):>10} {str(m['rss_mb_max']):>7} "
              f"{str(m['slope_mb_per_min']):>7} {str(m['threads_start']) + '->' + str(m['threads_end']):>9} "
              f"{lag['max']:>8} {lag['end']:>8}")
    print(f"errors in logs: {r.get('errors_in_logs')}")
    print("checks: " + ("all passed" if not r.get("failures") else "FAILED: " + "; ".join(r["failures"])))


if __name__ == "__main__":
    sys.exit(main())
