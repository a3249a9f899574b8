"""Ledger write throughput (HTTP batch API, Kafka commands, in-process) against plain SQLAlchemy inserts.

Prints figures, never asserts timing. On PostgreSQL, each scenario gets a throw-away database beside
TEST_DATABASE_URL's (or --pg-url's), dropped afterwards:

* baseline: transfer-like rows (id, debit, credit, asset, amount, code, timestamps) inserted with plain
            SQLAlchemy executemany into an unconstrained table, one transaction per batch of 1, 100, 1,000;
* http:     the real service as a subprocess (``services.ledger.main``), accounts opened with POST
            /v1/accounts and funded from an external account, then POST /v1/transfers with batches of 1
            (one client, and 4 concurrent clients: the service commits requests that arrive together in one
            transaction), 100 and 1,000 posted transfers, request bodies prebuilt; transfers/s and p50/p99
            request latency; CPU seconds of the service, of its relay process (``--relay-mode process``, the
            served default; ``thread`` keeps it in the service's process) and of the database's backends;
            and how long after the last answer the relay had published every outcome event;
* kafka:    the same service consuming TransfersRequested commands (1 transfer each, and 100 each) produced
            once the service is idle (its consumer owns every partition and has applied one sentinel command
            per partition); timed from the first send until the journal head (GET /v1/accounts/<id>
            as_of_seq) has every transfer;
* direct:   ``LedgerApp.submit`` in this process (no HTTP, requests pre-parsed) with a time split by phase
            and by SQL statement sent through SQLAlchemy (the write path sends its own through psycopg: their
            time is in its phases), to show where the service's time goes (--profile adds cProfile).

Kafka names are private to the run by default: bench.ledger.events.<run>, and per scenario the topic
bench.ledger.commands.<run>.<scenario> read by the group countypool-ledger-bench-<run>-<scenario>, all deleted
afterwards. The service's code is the same; only those names, read from shared.contracts.topics and the
settings at run time, differ. So the bench leaves nothing where tests read countypool.ledger.events from its
beginning, and cannot trade commands with another ledger (a test's) in the fixed group countypool-ledger.
``--kafka-topics shared`` uses countypool.ledger.commands and the group countypool-ledger as they are; ``--relay
off`` disables the relay, ``--relay shared`` publishes outcome events to the real countypool.ledger.events.

Usage:  .venv/bin/python bench/ledger_throughput.py [--accounts 1000] [--b1 1000] [--b100 5000] [--b1000 20000]
        [--kafka-single 5000] [--kafka-hundred 200] [--skip-http] [--skip-kafka] [--skip-direct] [--profile]
        [--relay-mode process|thread]
Results go to bench/results/ledger_throughput.json as well.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition  # noqa: E402
from sqlalchemy import (  # noqa: E402
    BigInteger, Column, DateTime, MetaData, String, Table, create_engine, insert,
)
from sqlalchemy.engine import make_url  # noqa: E402

from bench.support import DEFAULT_PG, DbClock, ScratchDatabases, percentile, records_in, wait_for_kafka  # noqa: E402
from services.ledger import handlers as ledger_handlers  # noqa: E402
from services.ledger.domain import NewAccount, TransferRequest  # noqa: E402
from services.ledger.handlers import LedgerApp  # noqa: E402
from services.ledger.main import MIGRATIONS  # noqa: E402
from services.ledger.storage.repository import LedgerRepository  # noqa: E402
from services.ledger.storage.tables import messaging  # noqa: E402
from shared import migrations  # noqa: E402
from shared.contracts import topics  # noqa: E402
from shared.contracts.ledger import TransfersRequested, TransferSpec  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.envelope import new_envelope  # noqa: E402
from shared.kafka_admin import ensure_topics  # noqa: E402
from shared.outbox import Outbox, make_producer, unpublished_count  # noqa: E402
from shared.unit_of_work import transactional  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ledger_throughput.json"
TOKENS = ROOT / "deploy" / "dev-tokens.json"
TOKEN = "dev-admin-token"  # admin: ledger:write and ledger:read
ASSET = "COD"  # scale 4: amounts "0.0001" .. "0.0100"
EXTERNAL = "external:bench-mint/COD"
EXTERNAL_ADDRESS = "external:bench-mint"
ACCOUNT_ADDRESS = "county:320612/bench"  # county accounts: debits must not exceed credits (checked)
FUNDING_UNITS = 10_000_000  # 1,000.0000 t each: far more than any run can spend
SHARED_GROUP = "countypool-ledger"  # fixed by the service (settings.consumer_group)


class KafkaNames:
    """Where the service reads commands and writes outcome events, and its consumer group."""

    def __init__(self, run: str, relay: str, kafka_topics: str):
        self.private_events = relay == "private"
        self.private_commands = kafka_topics == "private"
        self.run = run
        self.events = f"bench.ledger.events.{run}" if self.private_events else topics.LEDGER_EVENTS
        # private: a commands topic and a consumer group per scenario, so no scenario's service sees the
        # commands of the one before (a new group with no offsets would read its topic from the beginning)
        self.commands_topics: list[str] = []
        self.groups: list[str] = []

    def scenario(self, label: str) -> tuple[str, str]:
        """(commands topic, consumer group) of one scenario."""
        if not self.private_commands:
            return topics.LEDGER_COMMANDS, SHARED_GROUP
        topic, group = f"bench.ledger.commands.{self.run}.{label}", f"countypool-ledger-bench-{self.run}-{label}"
        self.commands_topics.append(topic)
        self.groups.append(group)
        return topic, group

    def launcher_args(self, commands: str | None = None, group: str | None = None) -> list[str]:
        private = self.private_commands and commands and group
        return [self.events if self.private_events else "", commands if private else "", group if private else ""]

    @property
    def private(self) -> list[str]:
        return ([self.events] if self.private_events else []) + \
               [t for c in self.commands_topics for t in (c, topics.dlq(c))]

# `python -m services.ledger.main` with private Kafka names: argv[1..3] = outcome events topic, commands
# topic, consumer group ("" keeps the real one). Set before the service's modules are imported; the code
# reads them at run time (topics.LEDGER_EVENTS per emit, main.TOPICS, settings.consumer_group).
LAUNCHER = (
    "import runpy, sys\n"
    "import shared.contracts.topics as t\n"
    "import shared.settings as s\n"
    "events, commands, group = sys.argv[1:4]\n"
    "if events:\n"
    "    t.LEDGER_EVENTS = events\n"
    "if commands:\n"
    "    t.LEDGER_COMMANDS = commands\n"
    "if group:\n"
    "    s.ServiceSettings.consumer_group = property(lambda self: group)\n"
    "sys.argv = ['services.ledger.main']\n"
    "runpy.run_module('services.ledger.main', run_name='__main__', alter_sys=True)\n"
)

log = logging.getLogger("bench")


# -- the data ------------------------------------------------------------------------------------------
def account_id(i: int) -> str:
    return f"county:320612/bench/{i:04d}/{ASSET}"


def units_text(units: int) -> str:
    return f"{units // 10_000}.{units % 10_000:04d}"


def transfer_plan(prefix: str, n: int, accounts: int, seed: int) -> list[tuple[str, str, str, int]]:
    """(id, debit, credit, units) of n posted transfers between random distinct accounts."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        dr, cr = rnd.sample(range(accounts), 2)
        out.append((f"{prefix}-{i:07d}", account_id(dr), account_id(cr), rnd.randint(1, 100)))
    return out


def spec_dict(t: tuple[str, str, str, int]) -> dict:
    return {"transfer_id": t[0], "debit_account": t[1], "credit_account": t[2], "asset": ASSET,
            "amount": units_text(t[3]), "code": "bench"}


def batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# -- PostgreSQL ---------------------------------------------------------------------------------------
def db_counts(url: str) -> dict:
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            out = {t: c.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
                   for t in ("transfers", "failed_transfers", "journal", "outbox", "inbox")}
            out["consumer_transactions"] = c.exec_driver_sql("SELECT count(DISTINCT processed_at) FROM inbox").scalar()
        return out
    finally:
        eng.dispose()


# -- baseline -----------------------------------------------------------------------------------------
def bench_baseline(url: str, plans: dict[int, list]) -> list[dict]:
    """Plain SQLAlchemy executemany of transfer-like rows into an unconstrained table (no keys, no indexes)."""
    md = MetaData()
    table = Table(
        "plain_transfers", md,
        Column("id", String(200)), Column("debit_account_id", String(200)), Column("credit_account_id", String(200)),
        Column("asset", String(20)), Column("amount", BigInteger), Column("code", String(100)),
        Column("timestamp", DateTime(timezone=True)), Column("recorded_at", DateTime(timezone=True)),
    )
    engine = create_engine(url)
    out = []
    try:
        md.create_all(engine)
        now = datetime.now(timezone.utc)
        for size, plan in plans.items():
            rows = [{"id": t[0], "debit_account_id": t[1], "credit_account_id": t[2], "asset": ASSET, "amount": t[3],
                     "code": "bench", "timestamp": now, "recorded_at": now} for t in plan]
            chunks = batches(rows, size)
            stmt = insert(table)
            lat = []
            with engine.connect() as conn:
                t0 = time.perf_counter()
                for chunk in chunks:
                    s = time.perf_counter()
                    with conn.begin():
                        conn.execute(stmt, chunk)
                    lat.append(time.perf_counter() - s)
                elapsed = time.perf_counter() - t0
            out.append({"path": "baseline", "batch": size, "clients": 1, "transfers": len(rows),
                        "requests": len(chunks), "seconds": elapsed, "transfers_per_s": len(rows) / elapsed,
                        "p50_ms": percentile(lat, 0.5) * 1e3, "p99_ms": percentile(lat, 0.99) * 1e3})
            print(f"  baseline batch {size:>5}: {len(rows) / elapsed:>9,.0f} rows/s", flush=True)
    finally:
        engine.dispose()
    return out


# -- the service as a process -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LedgerProcess:
    def __init__(self, db_url: str, bootstrap: str, *, consumer: bool, relay: str, names: KafkaNames,
                 log_dir: Path, label: str, commands: str | None = None, group: str | None = None,
                 relay_mode: str = "process"):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update({
            "COUNTYPOOL_LEDGER_DATABASE_URL": db_url,
            "COUNTYPOOL_LEDGER_PORT": str(self.port),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "COUNTYPOOL_AUTH_TOKENS_FILE": str(TOKENS),
            "COUNTYPOOL_LEDGER_LOG_JSON": "true",
            "COUNTYPOOL_LEDGER_CONSUMER_ENABLED": "true" if consumer else "false",
            "COUNTYPOOL_LEDGER_RELAY_ENABLED": "false" if relay == "off" else "true",
            "COUNTYPOOL_LEDGER_RELAY_PROCESS": "true" if relay_mode == "process" else "false",
            "PYTHONUNBUFFERED": "1",
        })
        patch = names.launcher_args(commands, group)
        if any(patch):
            self.cmd = [sys.executable, "-c", LAUNCHER, *patch]
        else:
            self.cmd = [sys.executable, "-m", "services.ledger.main"]
        self.env = env
        self.log_path = log_dir / f"ledger-{label}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "LedgerProcess":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ledger exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"ledger did not answer /healthz within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGINT, as Ctrl-C: uvicorn shuts down and re-raises it as KeyboardInterrupt, so ServiceRuntime.serve's
        finally (consumer leaves its group, relay stops) runs. After SIGTERM it would not: uvicorn re-raises
        SIGTERM with the default action, which ends the process before that finally."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        self._log.close()
        self.proc = None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def warnings(self) -> list[str]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            # the Kafka client's own chatter (metadata, slow selector tasks) is not the service's
            if (str(doc.get("level", "")).upper() in ("WARNING", "ERROR", "CRITICAL")
                    and not str(doc.get("logger", "")).startswith("kafka")):
                out.append(f"{doc.get('logger')}: {doc.get('msg', doc.get('message', line))}"[:300])
        return out


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc; 0 elsewhere). On a shared, busy
    machine this says more about the service's own cost than wall time does."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The live children of a process (the service's relay process among them; Linux /proc)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def children_cpu_seconds(pid: int) -> dict[int, float]:
    return {c: process_cpu_seconds(c) for c in child_pids(pid)}


def backend_cpu_seconds(url: str) -> dict[int, float]:
    """CPU seconds of every PostgreSQL backend connected to ``url``'s database, by pid (a server on this
    machine; {} when its processes are not readable here). Pooled connections live through a scenario, so
    the difference of two readings is what the database did for it."""
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            pids = [r[0] for r in c.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
    finally:
        eng.dispose()
    return {pid: process_cpu_seconds(pid) for pid in pids if Path(f"/proc/{pid}/stat").exists()}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(k, 0.0) for k, v in after.items())


def wait_published(url: str, timeout: float = 120) -> float | None:
    """Seconds until the outbox has no unpublished row (the relay caught up), or None after ``timeout``."""
    eng = create_engine(url)
    t0 = time.perf_counter()
    try:
        with eng.connect() as c:
            while time.perf_counter() - t0 < timeout:
                if not unpublished_count(c):
                    return time.perf_counter() - t0
                c.rollback()
                time.sleep(0.05)
        return None
    finally:
        eng.dispose()


def client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=120,
                        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})


def prepare_books(c: httpx.Client, accounts: int) -> int:
    """Open the external account and N county accounts, fund each from the external one; returns head seq."""
    specs = [{"account_id": EXTERNAL, "asset": ASSET, "address": EXTERNAL_ADDRESS}]
    specs += [{"account_id": account_id(i), "asset": ASSET, "address": ACCOUNT_ADDRESS} for i in range(accounts)]
    r = c.post("/v1/accounts", json={"accounts": specs})
    r.raise_for_status()
    if not r.json()["ok"]:
        raise RuntimeError(f"opening accounts failed: {r.text[:500]}")
    fund = [{"transfer_id": f"fund-{i:05d}", "debit_account": EXTERNAL, "credit_account": account_id(i),
             "asset": ASSET, "amount": units_text(FUNDING_UNITS), "code": "bench.fund"} for i in range(accounts)]
    for chunk in batches(fund, 5000):
        r = c.post("/v1/transfers", json={"transfers": chunk})
        r.raise_for_status()
        if not r.json()["ok"]:
            raise RuntimeError(f"funding failed: {r.text[:500]}")
    return head_seq(c)


def head_seq(c: httpx.Client) -> int:
    r = c.get(f"/v1/accounts/{EXTERNAL}")
    r.raise_for_status()
    return r.json()["as_of_seq"]


def post_bodies(base: str, bodies: list[bytes], clients: int) -> tuple[float, list[float], int]:
    """POST every body (round-robin over `clients` threads, each with its own connection); returns wall
    seconds, per-request latencies and the number of requests not answered 200 with ok=true."""
    lanes = [bodies[i::clients] for i in range(clients)]
    lat: list[list[float]] = [[] for _ in range(clients)]
    bad = [0] * clients
    go = threading.Barrier(clients + 1)

    def lane(k: int) -> None:
        with client(base) as c:
            c.get("/healthz")  # connection up, not timed
            go.wait()
            for body in lanes[k]:
                s = time.perf_counter()
                r = c.post("/v1/transfers", content=body)
                lat[k].append(time.perf_counter() - s)
                if r.status_code != 200 or b'"ok":true' not in r.content:
                    bad[k] += 1
                    if bad[k] == 1:
                        print(f"    ! {r.status_code}: {r.text[:300]}", flush=True)

    threads = [threading.Thread(target=lane, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return elapsed, [x for xs in lat for x in xs], sum(bad)


# -- Kafka ----------------------------------------------------------------------------------------------
def partitions_of(bootstrap: str, topic: str) -> list[int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parts = c.partitions_for_topic(topic)
            if parts:
                return sorted(parts)
            time.sleep(0.2)
        raise RuntimeError(f"topic {topic} has no partitions")
    finally:
        c.close()


def group_members(bootstrap: str, group: str) -> str:
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            return f"group {group}: {admin.describe_groups([group])}"[:600]
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - only a hint in an error message
        return f"group {group}: not described ({exc})"


def command_bytes(plan: list[tuple[str, str, str, int]], subject: str) -> bytes:
    cmd = TransfersRequested(transfers=[TransferSpec(**spec_dict(t)) for t in plan])
    return new_envelope(cmd, subject=subject, source="/countypool/quota").to_json()  # the ledger takes commands from quota and settlement only


def wait_head(c: httpx.Client, target: int, timeout: float, interval: float = 0.05) -> tuple[float | None, int]:
    """Poll the journal head until it reaches target: (monotonic time it was seen, head)."""
    deadline = time.monotonic() + timeout
    head = -1
    while time.monotonic() < deadline:
        try:
            head = head_seq(c)
        except httpx.HTTPError:
            head = -1
        if head >= target:
            return time.perf_counter(), head
        time.sleep(interval)
    return None, head


def fast_forward_group(bootstrap: str, produced: dict[int, int]) -> str:
    """(--kafka-topics shared) If the bench's service stopped before consuming every command it was sent, move
    the group past them, so that no other ledger (a test's) applies bench commands later. Only our own
    records are skipped."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=SHARED_GROUP, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topics.LEDGER_COMMANDS, p) for p in produced]
        moved = {}
        for tp in tps:
            committed = c.committed(tp)
            if committed is None or committed < produced[tp.partition]:
                moved[tp] = produced[tp.partition]
        if moved:
            from kafka.structs import OffsetAndMetadata

            c.assign(list(moved))
            c.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in moved.items()})
            moved_parts = sorted(tp.partition for tp in moved)
            return f"moved {SHARED_GROUP} past the bench's commands on partitions {moved_parts}"
        return ""
    finally:
        c.close(autocommit=False)


def cleanup_kafka(bootstrap: str, names: KafkaNames, skip_kafka: bool) -> None:
    """Delete the run's private topics and consumer group."""
    if not names.private:
        return
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    except Exception as exc:  # noqa: BLE001
        print(f"could not clean up Kafka: {exc}")
        return
    try:
        existing = set(admin.list_topics())
        doomed = [t for t in names.private if t in existing]
        if doomed:
            admin.delete_topics(doomed, raise_errors=False)
        if names.groups:
            try:
                admin.delete_groups(names.groups)
            except Exception as exc:  # noqa: BLE001 - an empty group expires by itself
                log.debug("could not delete groups %s: %s", names.groups, exc)
    except Exception as exc:  # noqa: BLE001
        print(f"could not delete {names.private}: {exc}")
    finally:
        admin.close()


# -- scenarios against the service -----------------------------------------------------------------------------
def bench_http(pg: ScratchDatabases, args, plans: dict, names: KafkaNames, log_dir: Path) -> list[dict]:
    runs = [tuple(int(x) for x in run.split("x")) for run in args.http_runs.split(",")]
    out = []
    for size, clients in runs:
        label = f"http-b{size}-c{clients}"
        plan = plans[size]
        bodies = [json.dumps({"transfers": [spec_dict(t) for t in chunk]}, separators=(",", ":")).encode()
                  for chunk in batches(plan, size)]
        with pg.database() as url:
            svc = LedgerProcess(url, args.bootstrap, consumer=False, relay=args.relay, names=names,
                                log_dir=log_dir, label=label, relay_mode=args.relay_mode)
            try:
                started = time.perf_counter()
                svc.start()
                with client(svc.base) as c:
                    head0 = prepare_books(c, args.accounts)
                if args.relay != "off":  # start idle: the setup's events published (and a relay process started)
                    wait_published(url)
                setup_s = time.perf_counter() - started
                cpu0 = process_cpu_seconds(svc.proc.pid)
                kids0 = children_cpu_seconds(svc.proc.pid)
                pg0 = backend_cpu_seconds(url)
                elapsed, lat, bad = post_bodies(svc.base, bodies, clients)
                cpu = process_cpu_seconds(svc.proc.pid) - cpu0
                # the relay's catch-up: from the last answer until every outcome event is published
                relay_lag = wait_published(url) if args.relay != "off" else None
                # the relay process (and multiprocessing's resource tracker), up to the end of its catch-up
                kids_cpu = cpu_delta(kids0, children_cpu_seconds(svc.proc.pid))
                pg_cpu = cpu_delta(pg0, backend_cpu_seconds(url))
                with client(svc.base) as c:
                    head1 = head_seq(c)
                counts = db_counts(url)
                warnings = svc.warnings()
            finally:
                svc.stop()
        n = len(plan)
        r = {"path": "http", "batch": size, "clients": clients, "transfers": n, "requests": len(bodies),
             "seconds": elapsed, "transfers_per_s": n / elapsed, "p50_ms": percentile(lat, 0.5) * 1e3,
             "p99_ms": percentile(lat, 0.99) * 1e3, "requests_not_ok": bad, "journal_entries_added": head1 - head0,
             "setup_seconds": setup_s, "db_counts": counts, "service_warnings": warnings[:10],
             "service_cpu_seconds": cpu, "transfers_per_service_cpu_s": n / cpu if cpu > 0 else None,
             "relay_process_cpu_seconds": kids_cpu, "relay_catch_up_seconds": relay_lag,
             "postgresql_backend_cpu_seconds": pg_cpu}
        out.append(r)
        lag = "relay off" if args.relay == "off" else (
            f"relay caught up {relay_lag:.1f} s later" if relay_lag is not None else "relay did not catch up")
        print(f"  http batch {size:>5} x{clients} client(s): {r['transfers_per_s']:>8,.0f} transfers/s  "
              f"p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  ({elapsed:.1f} s; service CPU {cpu:.2f} s, "
              f"{n / cpu if cpu > 0 else float('nan'):,.0f} transfers per CPU-s; relay process CPU {kids_cpu:.2f} s; "
              f"PostgreSQL backends CPU {pg_cpu:.2f} s; {lag})" + (f"  ! {bad} requests not ok" if bad else ""),
              flush=True)
        if head1 - head0 != n or counts["failed_transfers"]:
            print(f"    ! journal grew by {head1 - head0:,}, expected {n:,}; "
                  f"{counts['failed_transfers']:,} failed transfers", flush=True)
    return out


def bench_kafka(pg: ScratchDatabases, args, names: KafkaNames, log_dir: Path) -> list[dict]:
    runs = [(1, args.kafka_single), (100, args.kafka_hundred)]
    out = []
    for per_cmd, commands in runs:
        if commands <= 0:
            continue
        label = f"kafka-{per_cmd}"
        topic, group = names.scenario(label)
        if names.private_commands:
            ensure_topics(args.bootstrap, [topic], partitions=3)
        parts = partitions_of(args.bootstrap, topic)
        run = uuid.uuid4().hex[:8]
        plan = transfer_plan(f"k{per_cmd}-{run}", per_cmd * commands, args.accounts, seed=7 + per_cmd)
        values = [(f"cmd-{run}-{i}".encode(), command_bytes(chunk, f"cmd-{run}-{i}"))
                  for i, chunk in enumerate(batches(plan, per_cmd))]
        # partition chosen round-robin, so every partition (and the consumer's poll) gets a share
        values = [(parts[i % len(parts)], k, v) for i, (k, v) in enumerate(values)]
        produced: dict[int, int] = {}
        with pg.database() as url:
            svc = LedgerProcess(url, args.bootstrap, consumer=True, relay=args.relay, names=names,
                                log_dir=log_dir, label=label, commands=topic, group=group,
                                relay_mode=args.relay_mode)
            producer = make_producer(args.bootstrap)
            note = ""
            try:
                started = time.perf_counter()
                svc.start()
                with client(svc.base) as c:
                    prepare_books(c, args.accounts)
                    # one sentinel command per partition: once all are applied, the consumer owns every
                    # partition and has worked off anything older that its committed offsets left
                    sentinels = transfer_plan(f"sentinel-{run}", len(parts), args.accounts, seed=1)
                    for p, t in zip(parts, sentinels):
                        md = producer.send(topic, key=t[0].encode(), value=command_bytes([t], t[0]),
                                           partition=p).get(timeout=30)
                        produced[p] = md.offset + 1
                    deadline = time.monotonic() + args.kafka_join_timeout
                    pending = {t[0] for t in sentinels}
                    while pending and time.monotonic() < deadline:
                        pending = {tid for tid in pending if c.get(f"/v1/transfers/{tid}").status_code != 200}
                        time.sleep(0.1)
                    if pending:
                        service_says = "\n".join(svc.warnings()[-5:]) or svc.log_tail(5)
                        raise RuntimeError(f"the service did not apply the sentinel commands within "
                                           f"{args.kafka_join_timeout:.0f}s ({group_members(args.bootstrap, group)});"
                                           f" its log ends:\n{service_says}")
                    head0 = head_seq(c)
                    before = db_counts(url)
                    setup_s = time.perf_counter() - started
                    target = head0 + len(plan)
                    # the measurement: first send .. every transfer in the journal
                    t0 = time.perf_counter()
                    futures = [producer.send(topic, key=k, value=v, partition=p) for p, k, v in values]
                    producer.flush(timeout=120)
                    produce_s = time.perf_counter() - t0
                    for f in futures:
                        md = f.get(timeout=30)
                        produced[md.partition] = max(produced.get(md.partition, 0), md.offset + 1)
                    seen, head = wait_head(c, target, timeout=args.kafka_timeout)
                counts = db_counts(url)
                warnings = svc.warnings()
            finally:
                producer.close(timeout=5)
                svc.stop()
                try:
                    if produced and not names.private_commands:
                        note = fast_forward_group(args.bootstrap, produced)
                except Exception as exc:  # noqa: BLE001
                    note = f"could not check the group's offsets: {exc}"
                if note:
                    print(f"    ! {note}", flush=True)
        n = len(plan)
        if seen is None:
            print(f"  ! kafka {per_cmd}/command: only {head - head0:,} of {n:,} transfers within "
                  f"{args.kafka_timeout:.0f}s", flush=True)
            elapsed = float("nan")
        else:
            elapsed = seen - t0
        txs = counts["consumer_transactions"] - before["consumer_transactions"]
        r = {"path": "kafka", "batch": per_cmd, "clients": 1, "transfers": n, "requests": commands,
             "topic": topic, "group": group,
             "seconds": elapsed, "transfers_per_s": n / elapsed if seen else 0.0, "produce_seconds": produce_s,
             "consumer_transactions": txs, "transfers_per_consumer_tx": n / txs if txs else None,
             "journal_entries_added": head - head0, "setup_seconds": setup_s, "db_counts": counts,
             "service_warnings": warnings[:10], "note": note}
        out.append(r)
        per_tx = f"{n / txs:,.0f}" if txs else "?"
        print(f"  kafka {per_cmd:>3} transfer(s)/command, {commands:,} commands: "
              f"{r['transfers_per_s']:>8,.0f} transfers/s "
              f"({elapsed:.1f} s, produce {produce_s:.2f} s, {txs} consumer transactions, ~{per_tx} transfers each)",
              flush=True)
        if counts["failed_transfers"]:
            print(f"    ! {counts['failed_transfers']:,} failed transfers", flush=True)
        if counts["inbox"] != commands + len(parts):
            print(f"    ! the service consumed {counts['inbox']:,} commands, expected {commands + len(parts):,}",
                  flush=True)
        if warnings:
            print(f"    service warnings ({len(warnings)}): {warnings[0]}", flush=True)
    return out


# -- in-process: where the time goes -------------------------------------------------------------------------
class PhaseClock:
    """Wall time of the phases of LedgerApp.submit, by wrapping them in this process only."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._undo: list = []

    def wrap(self, owner, name: str, label: str) -> None:
        orig = getattr(owner, name, None)
        if orig is None:  # a phase this version of the service does not have
            return

        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)
        self._undo.append((owner, name, orig))

    def restore(self) -> None:
        for owner, name, orig in reversed(self._undo):
            setattr(owner, name, orig)
        self._undo.clear()


def bench_direct(pg: ScratchDatabases, args, plans: dict) -> tuple[list[dict], str | None]:
    out = []
    profile_text = None
    for size, plan in plans.items():
        with pg.database() as url:
            db = Database(url, "ledger")
            try:
                migrations.upgrade(db, MIGRATIONS)
                outbox = Outbox(messaging["outbox"], "ledger")
                app = LedgerApp(outbox)
                tx = lambda fn: transactional(db, outbox, fn)  # noqa: E731
                tx(lambda uow: app.open_accounts(uow.session, [NewAccount(EXTERNAL, ASSET, EXTERNAL_ADDRESS)] + [
                    NewAccount(account_id(i), ASSET, ACCOUNT_ADDRESS) for i in range(args.accounts)]))
                fund = [TransferRequest(f"fund-{i:05d}", EXTERNAL, account_id(i), FUNDING_UNITS, code="bench.fund")
                        for i in range(args.accounts)]
                assert tx(lambda uow: app.submit(uow.session, fund)).outcome.ok
                reqs = [TransferRequest(t[0], t[1], t[2], t[3], code="bench") for t in plan]
                chunks = batches(reqs, size)
                clock = DbClock(db.engine)
                phases = PhaseClock()
                phases.wrap(LedgerRepository, "lock_and_load", "lock head + load + lock view (one round trip)")
                phases.wrap(LedgerRepository, "lock_head", "lock journal head")
                phases.wrap(LedgerRepository, "load_view", "load + lock view")
                phases.wrap(ledger_handlers, "apply_batch", "engine (apply_batch)")
                phases.wrap(LedgerRepository, "persist_batch", "persist (transfers, balances, journal)")
                phases.wrap(LedgerApp, "_transfer_events", "build outcome envelopes")
                phases.wrap(Outbox, "add_rows", "outbox insert")
                lat = []
                not_ok = 0
                try:
                    clock.on = True
                    t0 = time.perf_counter()
                    for chunk in chunks:
                        s = time.perf_counter()
                        res = tx(lambda uow: app.submit(uow.session, chunk))
                        lat.append(time.perf_counter() - s)
                        not_ok += not res.outcome.ok
                    elapsed = time.perf_counter() - t0
                    clock.on = False
                finally:
                    phases.restore()
                if args.profile and size == max(plans):
                    extra = transfer_plan(f"prof-{size}", min(len(plan), 10_000), args.accounts, seed=99)
                    preqs = batches([TransferRequest(t[0], t[1], t[2], t[3], code="bench") for t in extra], size)
                    prof = cProfile.Profile()
                    prof.enable()
                    for chunk in preqs:
                        tx(lambda uow: app.submit(uow.session, chunk))
                    prof.disable()
                    buf = io.StringIO()
                    st = pstats.Stats(prof, stream=buf)
                    st.sort_stats("tottime").print_stats(25)
                    st.sort_stats("cumulative").print_stats(35)
                    profile_text = (f"direct batch {size}, {len(extra):,} transfers (cProfile slows everything)\n"
                                    + buf.getvalue())
            finally:
                db.dispose()
        n = len(plan)
        db_total = sum(clock.seconds.values())
        # the wrapped phases run one after the other inside submit (none nests in another), so they add up;
        # 'other' is the rest of the transaction (for batches of up to 64, the writes' one round trip too: they
        # are sent as a pipeline when its block ends, after persist and outbox insert have queued them)
        known = sum(phases.seconds.values()) + clock.seconds.get("COMMIT", 0.0)
        r = {"path": "direct", "batch": size, "clients": 1, "transfers": n, "requests": len(chunks),
             "seconds": elapsed, "transfers_per_s": n / elapsed, "p50_ms": percentile(lat, 0.5) * 1e3,
             "p99_ms": percentile(lat, 0.99) * 1e3, "batches_not_ok": not_ok,
             "db_seconds": db_total, "db_share": db_total / elapsed,
             "db_breakdown": {k: {"seconds": round(v, 4), "calls": clock.calls[k]}
                              for k, v in sorted(clock.seconds.items(), key=lambda kv: -kv[1])},
             "phase_seconds": {**{k: round(v, 4) for k, v in phases.seconds.items()},
                               "COMMIT": round(clock.seconds.get("COMMIT", 0.0), 4),
                               "other (session, begin, retry wrapper, metrics hook)": round(elapsed - known, 4)}}
        out.append(r)
        print(f"  direct batch {size:>5}: {r['transfers_per_s']:>8,.0f} transfers/s  "
              f"(db driver {r['db_share']:.0%} of {elapsed:.1f} s)", flush=True)
    return out, profile_text


# -- report ----------------------------------------------------------------------------------------------------
def print_report(rows: list[dict], baseline: dict[int, float], args) -> None:
    head = (f"{'path':<8} {'batch':>5} {'clients':>7} {'transfers':>9} {'seconds':>8} {'transfers/s':>11} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'baseline/s':>10} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ref = r.get("baseline_ref")
        base = baseline.get(ref) if ref else None
        p50 = f"{r['p50_ms']:8.1f}" if r.get("p50_ms") is not None else f"{'':>8}"
        p99 = f"{r['p99_ms']:8.1f}" if r.get("p99_ms") is not None else f"{'':>8}"
        batch = f"{r['batch']}" + ("/c" if r["path"] == "kafka" else "")
        base_s = f"{base:,.0f}" if base else ""
        ratio_s = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        print(f"{r['path']:<8} {batch:>5} {r['clients']:>7} {r['transfers']:>9,} {r['seconds']:>8.2f} "
              f"{r['transfers_per_s']:>11,.0f} {p50} {p99} {base_s:>10} {ratio_s:>6}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--b1", type=int, default=1000, help="transfers sent in batches of 1 (each client setting)")
    ap.add_argument("--b100", type=int, default=5000, help="transfers sent in batches of 100")
    ap.add_argument("--b1000", type=int, default=20000, help="transfers sent in batches of 1,000")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients of the second batch-1 run")
    ap.add_argument("--http-runs", default=None,
                    help="HTTP runs as batch x clients, comma-separated (default 1x1,1x<clients>,100x1,1000x1,1000x2)")
    ap.add_argument("--kafka-single", type=int, default=5000, help="commands of 1 transfer each")
    ap.add_argument("--kafka-hundred", type=int, default=200, help="commands of 100 transfers each")
    ap.add_argument("--kafka-timeout", type=float, default=120, help="seconds to wait for the last transfer")
    ap.add_argument("--kafka-join-timeout", type=float, default=90, help="seconds to wait for the consumer to be ready")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_PG),
                    help="a PostgreSQL server URL; throw-away databases are created beside its database")
    ap.add_argument("--relay", choices=("private", "off", "shared"), default="private",
                    help="private: outcome events go to a throw-away topic (default); off: relay disabled; "
                         "shared: the real countypool.ledger.events (leaves bench records there)")
    ap.add_argument("--relay-mode", choices=("process", "thread"), default="process",
                    help="process: the service's relay runs in its child process (the service's default when "
                         "served); thread: in the service's own process, as in-process tests run it")
    ap.add_argument("--kafka-topics", choices=("private", "shared"), default="private",
                    help="private: commands on a throw-away topic with a throw-away consumer group (default); "
                         "shared: countypool.ledger.commands and the group countypool-ledger")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-kafka", action="store_true")
    ap.add_argument("--skip-direct", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile an extra in-process batch-1,000 run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.http_runs is None:
        args.http_runs = f"1x1,1x{args.clients},100x1,1000x1,1000x2"
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)

    if make_url(args.pg_url).get_backend_name() != "postgresql":
        raise SystemExit("--pg-url must be a PostgreSQL URL")
    if not (args.skip_http and args.skip_kafka) or args.relay != "off":
        wait_for_kafka(args.bootstrap)
    started = time.perf_counter()
    sizes = {1: args.b1, 100: args.b100, 1000: args.b1000}
    plans = {size: transfer_plan(f"b{size}", n, args.accounts, seed=size) for size, n in sizes.items()}
    pg = ScratchDatabases(args.pg_url, "ledger")
    names = KafkaNames(uuid.uuid4().hex[:10], args.relay, args.kafka_topics)
    rows: list[dict] = []
    profile_text = None
    pg_settings = pg.settings()
    events_published = None
    try:
        if names.private_events:
            ensure_topics(args.bootstrap, [names.events], partitions=3)
        with tempfile.TemporaryDirectory(prefix="cp-ledger-bench-") as tmp:
            print("baseline: plain executemany into an unconstrained table ...", flush=True)
            with pg.database() as url:
                base_rows = bench_baseline(url, plans)
            if not args.skip_direct:
                print("direct: LedgerApp.submit in this process ...", flush=True)
                direct_rows, profile_text = bench_direct(pg, args, plans)
            else:
                direct_rows = []
            http_rows = []
            if not args.skip_http:
                print(f"http: the service as a subprocess, {args.accounts:,} accounts ...", flush=True)
                http_rows = bench_http(pg, args, plans, names, Path(tmp))
            kafka_rows = []
            if not args.skip_kafka:
                if names.private_commands:
                    where = (f"bench.ledger.commands.{names.run}.<scenario>, "
                             f"group countypool-ledger-bench-{names.run}-<scenario>")
                else:
                    where = f"{topics.LEDGER_COMMANDS}, group {SHARED_GROUP}"
                print(f"kafka: commands on {where} ...", flush=True)
                try:
                    kafka_rows = bench_kafka(pg, args, names, Path(tmp))
                except Exception as exc:  # noqa: BLE001 - report what ran
                    print(f"  ! kafka scenario failed: {exc}", flush=True)
            if names.private_events and args.relay != "off":
                events_published = records_in(args.bootstrap, names.events)
    finally:
        pg.close()
        cleanup_kafka(args.bootstrap, names, args.skip_kafka)

    baseline = {r["batch"]: r["transfers_per_s"] for r in base_rows}
    for r in direct_rows + http_rows:
        r["baseline_ref"] = r["batch"]
    for r in kafka_rows:
        r["baseline_ref"] = 1000  # a poll's transaction carries hundreds to thousands of transfers
    for r in direct_rows + http_rows + kafka_rows:
        ref = baseline.get(r["baseline_ref"])
        r["ratio"] = r["transfers_per_s"] / ref if ref else None
    rows = http_rows + kafka_rows + direct_rows + base_rows

    print()
    print(f"PostgreSQL {pg_settings['server_version']} (synchronous_commit={pg_settings['synchronous_commit']}, "
          f"fsync={pg_settings['fsync']}), {os.cpu_count()} cores, {args.accounts:,} accounts, relay {args.relay} "
          f"({args.relay_mode})")
    print_report(rows, baseline, args)
    print("\nratio = transfers/s of the path / baseline rows/s at the same batch size; kafka rows ('/c' = transfers")
    print("per command) are compared with baseline batch 1000: one consumer poll is one transaction of many commands.")
    b1000 = next((r for r in http_rows if r["batch"] == 1000), None)
    if b1000:
        print(f"goal (issue): >= 10,000 transfers/s at batch 1,000 and >= 0.4 of baseline -> http batch 1,000 "
              f"measured {b1000['transfers_per_s']:,.0f}/s, ratio {b1000['ratio']:.2f}")
    if direct_rows:
        print("\nwhere the time goes in LedgerApp.submit (direct, in-process): phases, then database driver time")
        for r in direct_rows:
            total = r["seconds"]
            phases = sorted(r["phase_seconds"].items(), key=lambda kv: -kv[1])
            parts = ", ".join(f"{k} {v / total:.0%}" for k, v in phases)
            print(f"  batch {r['batch']:>5}: {parts}")
            sql = ", ".join(f"{k} {v['seconds']:.2f}s/{v['calls']}" for k, v in list(r["db_breakdown"].items())[:8])
            print(f"  {'':>11} sql: {sql}")
    if events_published is not None:
        print(f"\noutcome events published by the services' relays to {names.events}: {events_published:,}")
    if profile_text:
        print("\n--- profile ---")
        print(profile_text)
    total = time.perf_counter() - started
    print(f"total bench time {total:.1f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": "ledger_throughput",
        "at": datetime.now(timezone.utc).isoformat(),
        "accounts": args.accounts,
        "transfers": {"batch_1": args.b1, "batch_100": args.b100, "batch_1000": args.b1000,
                      "kafka_single_commands": args.kafka_single, "kafka_hundred_commands": args.kafka_hundred},
        "relay": args.relay,
        "relay_mode": args.relay_mode,
        "kafka_topics": args.kafka_topics,
        "kafka_names": {"events": names.events,
                        "commands": names.commands_topics or ([topics.LEDGER_COMMANDS] if not args.skip_kafka else []),
                        "groups": names.groups or ([SHARED_GROUP] if not args.skip_kafka else [])},
        "bootstrap": args.bootstrap,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "postgresql": pg_settings,
        "results": rows,
        "goal": {"transfers_per_s_at_batch_1000": 10_000, "ratio_to_baseline": 0.4},
        "total_seconds": total,
    }
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp_out.replace(args.out)
    print(f"results written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
