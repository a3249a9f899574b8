"""End-to-end load: department events -> quota -> ledger posted, at increasing rates until lag grows.

Issue 8, "Load and soak". Prints figures, never asserts timing. Runs on its OWN Kafka broker and PostgreSQL
server (ports 29292/29293 and 55632 by default, data under /var/tmp), never the shared ones, and stops them
at the end.

What flows: QuotaReleaseSubmitted envelopes (the generator's releases under fresh ids, from
/departments/ecology, /departments/development-reform, /departments/natural-resources) on
countypool.intake.quota. The quota service (its own process) takes each in as a lot and sends the ledger the
lot's linked chain through its outbox (a poll's lots share TransfersRequested commands of up to 400
transfers: services/quota/batch.py); the ledger service (its own process) posts
``quota/intake/release:<id>`` (and the retired share) and answers TransferPosted, which quota consumes
(lot booked). The county policy says ``verification: accept``.

Per step (rate r events/s for --step-seconds): events are sent paced every 5 ms by one producer with the
project's settings (idempotent, acks=all). Measured:

* visible latency: for ~300 sampled events per step, publish (send) time -> first moment a poller (every
  50 ms, one SQL query on the ledger's database, which is what GET /v1/transfers and the balances read)
  sees the intake transfer committed: p50 / p99 / max;
* applied latency: for every event, publish -> the ledger's own transfer timestamp;
* lag: events sent minus intake transfers posted, each second; the lag when the step ends and the time to
  drain it.

A step is *sustained* when the lag at its end is at most 2 s worth of events (or 200) and it drains within
5 s. Rates grow by --factor from --start until a step is not sustained (or --max-rate).

Baseline, same run: a bare kafka-python consumer (its own group, auto-commit off, max_poll_records 500 = the
services' consumer_max_records) reads the same envelopes from a topic of its own and, per poll, in one
transaction inserts the rows one release leaves in the two services' tables -- a release row, a lot row, two
transfer rows and two journal rows -- with psycopg executemany, then commits the offsets. Its drain rate of
--baseline-events preloaded events is the baseline; the table gives sustained / baseline. A burst of the
same size through the platform (all sent at once, timed until the last is visible) is reported beside it.

Usage: .venv/bin/python bench/e2e_load.py [--start 50] [--factor 1.6] [--max-rate 8000] [--step-seconds 20]
       [--baseline-events 20000] [--burst-events 20000] [--all-services] [--pg-fast] [--out FILE]
Results: bench/results/e2e_load.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform as pyplatform
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402

from bench.support import percentile  # noqa: E402
from shared.contracts import topics as T  # noqa: E402
from shared.kafka_admin import ensure_topics  # noqa: E402
from shared.outbox import make_producer  # noqa: E402
from tests.faults import stream as fstream  # noqa: E402
from tests.faults.infra import Infra, Services, free_port, http_json, make_workdir, port_free  # noqa: E402
from tests.faults.runner import end_offsets  # noqa: E402

RESULTS = ROOT / "bench" / "results"
COUNTY = "320612"
NS = uuid.UUID("2b0a3f7e-9a51-4c1e-8d2f-6a7b8c9d0e1f")


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ms(xs: list[float], fraction: float) -> float | None:
    """A percentile of latencies in seconds, in milliseconds; None (JSON null) when there are none."""
    return round(percentile(xs, fraction) * 1000, 1) if xs else None


class ReleaseFactory:
    """Fresh QuotaReleaseSubmitted envelopes (bytes) from the generator's releases."""

    def __init__(self, gen_dir: Path, run: str):
        lines = [json.loads(x) for x in open(gen_dir / "events" / f"{T.INTAKE_QUOTA}.jsonl", encoding="utf-8")]
        self.base = [e for e in lines if e["type"] == "countypool.QuotaReleaseSubmitted.v1"]
        self.run = run
        self.n = 0

    def make(self, tag: str, count: int) -> list[tuple[str, bytes]]:
        out = []
        for _ in range(count):
            e = self.base[self.n % len(self.base)]
            rid = f"{e['data']['release_id']}-{self.run}-{tag}-{self.n}"
            env = dict(e, id=str(uuid.uuid5(NS, rid)), subject=rid, data=dict(e["data"], release_id=rid))
            env["correlationid"] = env["id"]
            out.append((rid, json.dumps(env, ensure_ascii=False, separators=(",", ":")).encode()))
            self.n += 1
        return out


def ledger_conn(infra: Infra):
    """The bench's reads of the ledger's database. They must not cost what they measure: probes of a few hundred
    ids planned as scans of the whole (growing) transfers table, 20 times a second, took up to a third of a core
    by the end of a run. So this session never plans a sequential scan where the primary key serves."""
    conn = psycopg.connect(host="127.0.0.1", port=infra.pg_port, user="countypool", password="countypool",
                           dbname="countypool_ledger", autocommit=True)
    conn.execute("SET enable_seqscan = off")
    return conn


class IntakeCounter:
    """How many of these releases' intake transfers the ledger has committed. Each count asks only for those not
    seen yet, by primary key: work in proportion to what is still to come, not to the table (a count(*) of the
    intake transfers scanned the whole table every second, every 0.2 s while a burst drained)."""

    def __init__(self, conn, release_ids: list[str]):
        self.conn = conn
        self.total = len(release_ids)
        self.unseen = {f"quota/intake/release:{rid}" for rid in release_ids}

    def count(self) -> int:
        ids = list(self.unseen)
        for i in range(0, len(ids), 5000):
            found = self.conn.execute("SELECT id FROM transfers WHERE id = ANY(%s)", (ids[i:i + 5000],)).fetchall()
            self.unseen.difference_update(tid for (tid,) in found)
        return self.total - len(self.unseen)


def send_paced(producer, topic: str, events: list[tuple[str, bytes]], rate: float, sent_at: dict[str, float],
               progress: list[int]) -> float:
    """Send at ``rate``/s in 5 ms slices; record each event's wall-clock send time. Returns the duration."""
    t0 = time.monotonic()
    i = 0
    n = len(events)
    while i < n:
        due = min(n, int((time.monotonic() - t0) * rate) + 1)
        while i < due:
            rid, value = events[i]
            sent_at[rid] = time.time()
            producer.send(topic, key=rid.encode(), value=value)
            i += 1
        progress[0] = i
        time.sleep(0.005)
    producer.flush(timeout=60)
    return time.monotonic() - t0


class VisibilityPoller(threading.Thread):
    """Every 50 ms: which sampled intake transfers are committed in the ledger's database now?"""

    def __init__(self, infra: Infra, sample: dict[str, str]):
        super().__init__(daemon=True)
        self.infra = infra
        self.pending = dict(sample)  # transfer id -> release id
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with ledger_conn(self.infra) as conn:
            while not self.stop.is_set() and self.pending:
                ids = list(self.pending)
                rows = conn.execute("SELECT id FROM transfers WHERE id = ANY(%s)", (ids,)).fetchall()
                now = time.time()
                for (tid,) in rows:
                    self.seen[self.pending.pop(tid)] = now
                self.stop.wait(0.05)


def run_step(infra: Infra, producer, factory: ReleaseFactory, rate: float, seconds: float, tag: str) -> dict:
    n = max(1, int(rate * seconds))
    events = factory.make(tag, n)
    every = max(1, n // 300)
    sample = {f"quota/intake/release:{rid}": rid for k, (rid, _) in enumerate(events) if k % every == 0}
    with ledger_conn(infra) as conn:
        counter = IntakeCounter(conn, [rid for rid, _ in events])
        sent_at: dict[str, float] = {}
        poller = VisibilityPoller(infra, sample)
        poller.start()
        progress = [0]
        lags: list[tuple[float, int]] = []
        done_box: dict = {}
        sender = threading.Thread(target=lambda: done_box.update(
            took=send_paced(producer, T.INTAKE_QUOTA, events, rate, sent_at, progress)), daemon=True)
        t0 = time.monotonic()
        sender.start()
        while sender.is_alive():
            time.sleep(1.0)
            lags.append((round(time.monotonic() - t0, 1), progress[0] - counter.count()))
        sender.join()
        lag_end = n - counter.count()
        t_end = time.monotonic()
        drain_deadline = t_end + max(30.0, seconds * 1.5)
        while counter.count() < n and time.monotonic() < drain_deadline:
            time.sleep(0.2)
        visible = counter.count()
        drain = time.monotonic() - t_end if visible >= n else None
        poller.stop.set()
        poller.join(5)
        # applied latency for every event: the ledger's own timestamp of the transfer
        ids = [f"quota/intake/release:{rid}" for rid, _ in events]
        rows = [r for i in range(0, len(ids), 5000)
                for r in conn.execute("SELECT id, timestamp FROM transfers WHERE id = ANY(%s)", (ids[i:i + 5000],))]
    applied = [r[1].timestamp() - sent_at[r[0].split(":", 1)[1]] for r in rows if r[0].split(":", 1)[1] in sent_at]
    vis = [poller.seen[rid] - sent_at[rid] for rid in poller.seen if rid in sent_at]
    sustained = lag_end <= max(2 * rate, 200) and drain is not None and drain <= 5.0
    took = done_box.get("took") or seconds
    out = dict(rate=rate, events=n, send_seconds=round(took, 2), achieved_send_rate=round(n / took, 1),
               lag_at_end=lag_end, drain_seconds=round(drain, 2) if drain is not None else None,
               all_visible=visible >= n, sustained=sustained,
               visible_latency_ms=dict(samples=len(vis), p50=ms(vis, 0.5), p99=ms(vis, 0.99), max=ms(vis, 1)),
               applied_latency_ms=dict(samples=len(applied), p50=ms(applied, 0.5), p99=ms(applied, 0.99), max=ms(applied, 1)),
               lag_per_second=lags)
    log(f"rate {rate:>7.0f}/s: lag at end {lag_end}, drain {out['drain_seconds']}s, visible p50/p99 "
        f"{out['visible_latency_ms']['p50']}/{out['visible_latency_ms']['p99']} ms -> {'sustained' if sustained else 'NOT sustained'}")
    return out


def cpu_seconds(infra: Infra, services: Services) -> dict[str, float]:
    """CPU time (user + system) so far of each service process with its children (the ledger's relay runs in
    one), the broker, and this bench's PostgreSQL server (also split by the database its backends serve)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid) -> list[str]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return []

    def of(pid) -> float:
        fields = stat(pid)
        return (int(fields[11]) + int(fields[12])) / tick if len(fields) > 12 else 0.0

    children: dict[str, list[str]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and len(fields := stat(d)) > 1:
            children.setdefault(fields[1], []).append(d)

    def tree(pid) -> float:
        return of(pid) + sum(tree(c) for c in children.get(str(pid), []))

    out = {s: tree(services.pid(s)) for s in services.names}
    out["kafka"] = of(infra.kafka_pid())
    # this bench's own server only (other servers on the machine are not ours): its postmaster, with what its
    # exited children (autovacuum workers, ended connections) used, and each backend by its database
    try:
        postmaster = int((infra.workdir / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        postmaster = None
    pg = 0.0
    if postmaster is not None:
        fields = stat(postmaster)
        pg = of(postmaster) + ((int(fields[13]) + int(fields[14])) / tick if len(fields) > 14 else 0.0)
        for c in children.get(str(postmaster), []):
            used = tree(c)
            pg += used
            try:
                with open(f"/proc/{c}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
            except OSError:
                continue
            for s in services.names:
                if f" countypool_{s} " in cmd:
                    out[f"postgres:{s}"] = out.get(f"postgres:{s}", 0.0) + used
    out["postgres"] = pg  # the postmaster and its backends; postgres:<service>, the backends of its database
    return out


def burst(infra: Infra, services: Services, producer, factory: ReleaseFactory, n: int) -> dict:
    """All at once; timed until the last is visible. Also where the CPU went and which consumer lagged."""
    events = factory.make("burst", n)
    lags = []
    with ledger_conn(infra) as conn:
        counter = IntakeCounter(conn, [rid for rid, _ in events])
        cpu0 = cpu_seconds(infra, services)
        t0 = time.monotonic()
        for rid, value in events:
            producer.send(T.INTAKE_QUOTA, key=rid.encode(), value=value)
        producer.flush(timeout=120)
        sent = time.monotonic() - t0
        deadline = time.monotonic() + 900
        next_lag = time.monotonic()
        while counter.count() < n and time.monotonic() < deadline:
            if time.monotonic() >= next_lag:
                next_lag += 10
                lags.append(dict(t=round(time.monotonic() - t0), applied=counter.count(),
                                 lag=service_lag(infra, services)))
            time.sleep(0.2)
        took = time.monotonic() - t0
        done = counter.count()
        cpu1 = cpu_seconds(infra, services)
    cpu = {k: round(cpu1[k] - cpu0.get(k, 0), 1) for k in cpu1}
    r = dict(events=n, send_seconds=round(sent, 2), seconds=round(took, 2), all_visible=done >= n,
             events_per_s=round(done / took, 1), cpu_seconds=cpu,
             cpu_share_of_wall={k: round(v / took, 2) for k, v in cpu.items()},
             cpu_ms_per_event={k: round(1000 * v / max(done, 1), 2) for k, v in cpu.items()}, lag=lags)
    log(f"platform burst: {n} events in {took:.1f}s = {r['events_per_s']}/s; CPU ms per event {r['cpu_ms_per_event']}")
    return r


def service_lag(infra: Infra, services: Services) -> dict[str, int]:
    from tests.faults.runner import CONSUMES, sql

    ends = end_offsets(infra.bootstrap, sorted({t for s in services.names for t in CONSUMES[s]}))
    out = {}
    for s in services.names:
        pos = {(t, p): o for t, p, o in sql(infra, s, "SELECT topic, partition, next_offset FROM consumer_positions")}
        out[s] = sum(max(0, e - pos.get(tp, 0)) for tp, e in ends.items() if tp[0] in CONSUMES[s])
    return out


BASELINE_DDL = """
CREATE TABLE IF NOT EXISTS releases (release_id text PRIMARY KEY, enterprise text NOT NULL, township text NOT NULL,
  county text NOT NULL, asset text NOT NULL, amount bigint NOT NULL, reason text NOT NULL, basis text NOT NULL,
  status text NOT NULL, digest text NOT NULL, received_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS lots (lot_id text PRIMARY KEY, county text NOT NULL, asset text NOT NULL, amount bigint NOT NULL,
  retired bigint NOT NULL, remaining bigint NOT NULL, source_ref text NOT NULL, ledger_state text NOT NULL,
  created_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (id text PRIMARY KEY, debit text NOT NULL, credit text NOT NULL, asset text NOT NULL,
  amount bigint NOT NULL, code text NOT NULL, status text NOT NULL, ts timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS journal (seq bigserial PRIMARY KEY, kind text NOT NULL, transfer_id text NOT NULL,
  payload text NOT NULL, recorded_at timestamptz NOT NULL, hash text NOT NULL);
"""


def baseline(infra: Infra, factory: ReleaseFactory, n: int, batch: int = 500) -> dict:
    """A bare consumer inserting the rows one release leaves, one transaction per poll."""
    import hashlib

    topic = f"bench.baseline.{factory.run}"
    ensure_topics(infra.bootstrap, [topic], partitions=3)
    producer = make_producer(infra.bootstrap)
    for rid, value in factory.make("base", n):
        producer.send(topic, key=rid.encode(), value=value)
    producer.flush(timeout=120)
    producer.close()
    admin = psycopg.connect(host="127.0.0.1", port=infra.pg_port, user="countypool", password="countypool",
                            dbname="postgres", autocommit=True)
    admin.execute("DROP DATABASE IF EXISTS bench_baseline")
    admin.execute("CREATE DATABASE bench_baseline")
    admin.close()
    conn = psycopg.connect(host="127.0.0.1", port=infra.pg_port, user="countypool", password="countypool",
                           dbname="bench_baseline")
    conn.execute(BASELINE_DDL)
    conn.commit()
    c = KafkaConsumer(topic, bootstrap_servers=infra.bootstrap, group_id=f"bench-baseline-{factory.run}",
                      enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=batch,
                      fetch_max_bytes=64 * 1024 * 1024)
    done = 0
    t0 = None
    polls = 0
    prev = "0" * 64
    while done < n:
        polled = c.poll(timeout_ms=500, max_records=batch)
        recs = [r for tp in polled for r in polled[tp]]
        if not recs:
            continue
        if t0 is None:
            t0 = time.monotonic()
        now = datetime.now(timezone.utc)
        rel, lots, trs, jr = [], [], [], []
        for r in recs:
            env = json.loads(r.value)
            d = env["data"]
            amount = fstream.quota_units(d["asset"], d["amount"])
            retired = -(-amount * 2000 // 10000) if d["asset"] not in ("LAND", "ENERGY") else 0
            lot = f"release:{d['release_id']}"
            digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()
            rel.append((d["release_id"], d["enterprise_credit_code"], d["township_code"], d["county_code"], d["asset"],
                        amount, d["reason"], d["basis"], "accepted", digest, now))
            lots.append((lot, d["county_code"], d["asset"], amount, retired, amount - retired, d["enterprise_credit_code"],
                         "booked", now))
            for tid, debit, credit, units, code in (
                    (f"quota/intake/{lot}", f"external:rights-register/{d['asset']}", f"county:{COUNTY}/pool/{d['asset']}", amount, "quota_release_intake"),
                    (f"quota/retire/{lot}", f"county:{COUNTY}/pool/{d['asset']}", f"county:{COUNTY}/retired/{d['asset']}", retired or 1, "quota_retire")):
                trs.append((tid, debit, credit, d["asset"], units, code, "posted", now))
                payload = json.dumps({"id": tid, "debit": debit, "credit": credit, "amount": units}, sort_keys=True)
                prev = hashlib.sha256((prev + payload).encode()).hexdigest()
                jr.append(("transfer_posted", tid, payload, now, prev))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO releases VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING", rel)
            cur.executemany("INSERT INTO lots VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING", lots)
            cur.executemany("INSERT INTO transfers VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING", trs)
            cur.executemany("INSERT INTO journal (kind, transfer_id, payload, recorded_at, hash) VALUES (%s,%s,%s,%s,%s)", jr)
        conn.commit()
        c.commit()
        done += len(recs)
        polls += 1
    took = time.monotonic() - t0
    c.close()
    conn.close()
    r = dict(events=n, seconds=round(took, 2), events_per_s=round(n / took, 1), polls=polls,
             mean_batch=round(n / polls, 1))
    log(f"baseline: {n} events in {took:.1f}s = {r['events_per_s']}/s ({polls} polls)")
    return r


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/e2e_load.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--start", type=float, default=50)
    ap.add_argument("--factor", type=float, default=1.6)
    ap.add_argument("--max-rate", type=float, default=8000)
    ap.add_argument("--step-seconds", type=float, default=20)
    ap.add_argument("--baseline-events", type=int, default=20000)
    ap.add_argument("--burst-events", type=int, default=20000)
    ap.add_argument("--all-services", action="store_true", help="run settlement and assessment too (they consume quota's events)")
    ap.add_argument("--pg-fast", action="store_true", help="PostgreSQL with fsync/synchronous_commit off")
    ap.add_argument("--kafka-port", type=int, default=29292)
    ap.add_argument("--pg-port", type=int, default=55632)
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    ap.add_argument("--out", type=Path, default=RESULTS / "e2e_load.json")
    args = ap.parse_args()

    kp = args.kafka_port if port_free(args.kafka_port) and port_free(args.kafka_port + 1) else free_port()
    cp = kp + 1 if kp == args.kafka_port else free_port()
    pp = args.pg_port if port_free(args.pg_port) else free_port()
    workdir = make_workdir("countypool-bench-")
    infra = Infra(workdir, kafka_port=kp, controller_port=cp, pg_port=pp)
    if args.pg_fast:
        os.environ["PG_FAST"] = "1"
    names = ["ledger", "quota", "settlement", "assessment"] if args.all_services else ["ledger", "quota"]
    services = None
    result: dict = dict(started=datetime.now(timezone.utc).isoformat(), host=dict(cpus=os.cpu_count(), python=pyplatform.python_version()),
                        services=names, step_seconds=args.step_seconds, pg_fast=args.pg_fast, steps=[])
    try:
        gen_dir = fstream.generate(workdir / "generated")
        infra.start()
        services = Services(infra, workdir, names=names)
        services.start_all()
        st, body = http_json("PUT", f"{services.url('quota')}/v1/counties/{COUNTY}/policy", {"verification": "accept"})
        assert st == 200, (st, body)
        run = uuid.uuid4().hex[:6]
        factory = ReleaseFactory(gen_dir, run)
        producer = make_producer(infra.bootstrap, linger_ms=5, client_id="bench-e2e")
        log("warm-up")
        run_step(infra, producer, factory, 50, 4, "warm")
        rate = args.start
        best = None
        while rate <= args.max_rate:
            step = run_step(infra, producer, factory, rate, args.step_seconds, f"s{int(rate)}")
            result["steps"].append(step)
            if not step["sustained"]:
                break
            best = step
            rate = round(rate * args.factor)
        if best is not None and result["steps"][-1] is not best:  # one step between the last good and the first bad
            mid = round((best["rate"] + result["steps"][-1]["rate"]) / 2)
            if mid > best["rate"]:
                step = run_step(infra, producer, factory, mid, args.step_seconds, f"m{mid}")
                result["steps"].append(step)
                if step["sustained"]:
                    best = step
        result["sustained"] = dict(events_per_s=best["rate"] if best else None,
                                   visible_latency_ms=best and best["visible_latency_ms"],
                                   applied_latency_ms=best and best["applied_latency_ms"])
        result["platform_burst"] = burst(infra, services, producer, factory, args.burst_events)
        producer.close()
        result["rss_kb_end"] = services.rss_kb()
        services.stop()
        services = None
        result["baseline"] = baseline(infra, factory, args.baseline_events)
        b = result["baseline"]["events_per_s"]
        result["ratio_sustained_to_baseline"] = round(best["rate"] / b, 3) if best and b else None
        result["ratio_burst_to_baseline"] = round(result["platform_burst"]["events_per_s"] / b, 3) if b else None
    finally:
        if services is not None:
            services.stop()
        infra.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        result["finished"] = datetime.now(timezone.utc).isoformat()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    print_table(result)
    return 0


def print_table(r: dict) -> None:
    print(f"\nend-to-end: department release -> quota -> ledger posted ({', '.join(r['services'])} running; "
          f"{r['host']['cpus']} CPUs, PG_FAST={r['pg_fast']})")
    print(f"{'rate/s':>8} {'sent/s':>8} {'lag@end':>8} {'drain s':>8} {'vis p50':>8} {'vis p99':>8} {'app p50':>8} {'app p99':>8}  verdict")
    for s in r["steps"]:
        v, a = s["visible_latency_ms"], s["applied_latency_ms"]
        print(f"{s['rate']:>8.0f} {s['achieved_send_rate']:>8.0f} {s['lag_at_end']:>8} {str(s['drain_seconds']):>8} "
              f"{str(v['p50']):>8} {str(v['p99']):>8} {str(a['p50']):>8} {str(a['p99']):>8}  {'ok' if s['sustained'] else 'lag grows'}")
    su = r.get("sustained") or {}
    print(f"highest sustained: {su.get('events_per_s')} events/s (visible p50/p99 "
          f"{(su.get('visible_latency_ms') or {}).get('p50')}/{(su.get('visible_latency_ms') or {}).get('p99')} ms)")
    if r.get("platform_burst"):
        b = r["platform_burst"]
        print(f"platform burst:    {b['events_per_s']} events/s ({b['events']} events); CPU ms per event "
              f"{b.get('cpu_ms_per_event')}; CPU share of wall time {b.get('cpu_share_of_wall')}")
    if r.get("baseline"):
        print(f"baseline:          {r['baseline']['events_per_s']} events/s (bare consumer, same rows, batches of up to 500)")
        print(f"sustained/baseline {r.get('ratio_sustained_to_baseline')}, burst/baseline {r.get('ratio_burst_to_baseline')} "
              f"(issue 8 goal: >= 5000/s and >= 0.5)")


if __name__ == "__main__":
    sys.exit(main())
