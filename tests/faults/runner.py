"""One fault run: infrastructure up, setup inputs settled, the stream driven at a fixed rate while faults are
injected, everything settled, then every effect and invariant checked. Used by tests/faults/test_faults_short.py
(inside `make test`) and tests/faults/run_full.py (`make test-faults`).

Faults (all on the run's private broker, server and service processes, at seeded random moments):

- ``kill``         SIGKILL of one service, down 0.5-3 s, then started again (as a supervisor would, retried until
                   healthy);
- ``kafka_restart``  deploy/kafka/kafka.sh stop + start (controlled shutdown);
- ``kafka_kill``   SIGKILL of the broker, then kafka.sh start (unclean: the log is recovered);
- ``pg_restart``   deploy/postgres/postgres.sh restart (fast shutdown: every connection of every service drops);
- ``pg_crash``     pg_ctl stop -m immediate (no checkpoint: crash recovery), then postgres.sh start;
- ``ledger_pause`` SIGSTOP of the ledger process for some seconds, then SIGCONT: it answers nothing meanwhile
                   (HTTP hangs, its consumer stops polling; past the consumer's Kafka session timeout -- 45 s,
                   kafka-python's default -- it loses its partitions and must rejoin and resume from its
                   database positions). Meanwhile quota's reconciliation, which reads the ledger over HTTP, is
                   called: it must answer (503 ledger_unavailable), not hang;
- ``ledger_throttle`` SIGSTOP/SIGCONT alternating every 100 ms for some seconds: the ledger runs at about half
                   speed without stopping, so it answers slowly and lag builds up.

Besides the Kafka stream, the county acts over HTTP while the faults happen (``Demand``): quota requests of
admitted projects are posted (retried until answered) and allocation rounds run; the rest of the requests and
a last round follow once settled. With ``kill_during_finalize`` settlement is SIGKILLed part-way through the
finalization of the 2025 statement and asked again.

Checks, once settled: each input's effects counted by the input's own id where each service stores them
(exactly once, with the amounts the inputs and the run's own policy -- RETIRE_SHARE_BP -- imply, never figures
read back from the service under test); stored values equal to what was sent; every ledger account's balances
rebuilt from the journal and from the transfers; every stored statement re-hashed from its lines. "effects
checked" counts only what a check compared with its expectation.
"""
from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from kafka import KafkaConsumer, TopicPartition

from shared.amounts import parse_amount
from shared.contracts import topics as T
from shared.outbox import make_producer, unpublished_count
from tests.faults.infra import SERVICES, Infra, Services, http_json, metrics
from tests.faults.stream import COUNTY, LEDGER_SCALE, QUOTA_SCALE, Stream, quota_units

CONSUMES = {
    "ledger": [T.LEDGER_COMMANDS],
    "quota": [T.INTAKE_QUOTA, T.ASSESSMENT_EVENTS, T.LEDGER_EVENTS],
    "settlement": [T.INTAKE_SETTLEMENT, T.QUOTA_EVENTS, T.ASSESSMENT_EVENTS, T.LEDGER_EVENTS],
    "assessment": [T.INTAKE_ASSESSMENT],
}


def log(msg: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the stream ----------------------------------------------------------------------------------------------
class Driver(threading.Thread):
    """Sends the stream at a fixed rate (inputs/s) with the project's producer settings (idempotent,
    acks=all). A send the broker did not acknowledge is sent again (same id and body) until it is: the
    department's at-least-once. After a stall (broker down) it resumes the rate without a burst."""

    def __init__(self, bootstrap: str, stream: Stream, rate: float):
        super().__init__(name="faults-driver", daemon=True)
        self.bootstrap = bootstrap
        self.stream = stream
        self.rate = rate
        self.sent = 0
        self.dup_sent = 0
        self.resent = 0
        self.send_errors: Counter = Counter()
        self.acked: set[int] = set()
        self.started_at = 0.0
        self.finished_at = 0.0
        self.error: BaseException | None = None
        self._pending: dict[int, object] = {}
        self._producer = None

    def _producer_(self):
        if self._producer is None:
            self._producer = make_producer(self.bootstrap, max_block_ms=5000, request_timeout_ms=10000,
                                           client_id="faults-driver")
        return self._producer

    def _send(self, idx: int) -> None:
        inp = self.stream.inputs[idx]
        while True:
            try:
                fut = self._producer_().send(inp.topic, key=inp.key.encode(), value=inp.value)
                self._pending.setdefault(idx, [])
                self._pending[idx].append(fut)
                return
            except Exception as exc:  # noqa: BLE001 - broker away: wait and try again
                self.send_errors[type(exc).__name__] += 1
                time.sleep(0.5)

    def _collect(self, block: bool = False) -> None:
        for idx, futs in list(self._pending.items()):
            done_ok = False
            for f in list(futs):
                if not f.is_done and block:
                    try:
                        f.get(timeout=30)
                    except Exception:  # noqa: BLE001
                        pass
                if f.is_done:
                    futs.remove(f)
                    if f.succeeded():
                        done_ok = True
                    else:
                        self.send_errors[type(f.exception).__name__] += 1
            if done_ok:
                self.acked.add(idx)
            if not futs:
                del self._pending[idx]
                if idx not in self.acked:
                    self.resent += 1
                    self._send(idx)

    def run(self) -> None:
        try:
            dup_at: dict[int, list[int]] = defaultdict(list)
            n = len(self.stream.inputs)
            for d in self.stream.duplicates:
                dup_at[min(n - 1, d + 37)].append(d)  # the same input again, a little later
            self.started_at = time.monotonic()
            next_t = self.started_at
            for i in range(n):
                now = time.monotonic()
                if next_t > now:
                    time.sleep(next_t - now)
                else:
                    next_t = max(next_t, now - 1.0)
                self._send(i)
                self.sent += 1
                for d in dup_at.get(i, ()):
                    self._send(d)
                    self.dup_sent += 1
                next_t += 1.0 / self.rate
                if i % 50 == 0:
                    self._collect()
            deadline = time.monotonic() + 300
            while self._pending and time.monotonic() < deadline:
                try:
                    self._producer_().flush(timeout=30)
                except Exception as exc:  # noqa: BLE001
                    self.send_errors[type(exc).__name__] += 1
                self._collect(block=True)
            self.finished_at = time.monotonic()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
        finally:
            if self._producer is not None:
                try:
                    self._producer.close(timeout=10)
                except Exception:  # noqa: BLE001
                    pass

    @property
    def unacked(self) -> int:
        return len(self.stream.inputs) - len(self.acked)


# -- faults --------------------------------------------------------------------------------------------------
@dataclass
class Fault:
    at: float  # seconds after the stream started
    kind: str
    target: str = ""
    param: float = 0.0
    started: float | None = None
    took: float | None = None
    note: str = ""


def plan_faults(rng: random.Random, duration: float, *, kills_per_service: int, kafka_restarts: int,
                kafka_kills: int, pg_restarts: int, pg_crashes: int, ledger_pauses: list[float], ledger_throttles: list[float],
                window: tuple[float, float] = (0.05, 0.8)) -> list[Fault]:
    faults = [Fault(0, "kill", s, rng.uniform(0.5, 3.0)) for s in SERVICES for _ in range(kills_per_service)]
    faults += [Fault(0, "kafka_restart") for _ in range(kafka_restarts)]
    faults += [Fault(0, "kafka_kill", param=rng.uniform(1.0, 3.0)) for _ in range(kafka_kills)]
    faults += [Fault(0, "pg_restart") for _ in range(pg_restarts)]
    faults += [Fault(0, "pg_crash") for _ in range(pg_crashes)]
    faults += [Fault(0, "ledger_pause", "ledger", p) for p in ledger_pauses]
    faults += [Fault(0, "ledger_throttle", "ledger", p) for p in ledger_throttles]
    rng.shuffle(faults)
    # random moments, spread over the stream, the last one well before it ends
    times = sorted(rng.uniform(window[0] * duration, window[1] * duration) for _ in faults)
    for f, t in zip(faults, times):
        f.at = round(t, 2)
    return faults


class Injector(threading.Thread):
    """Carries the plan out, one fault at a time, in time order (a fault that runs past the next one's moment
    delays it)."""

    def __init__(self, infra: Infra, services: Services, faults: list[Fault], t0: Callable[[], float]):
        super().__init__(name="faults-injector", daemon=True)
        self.infra, self.services, self.faults, self.t0 = infra, services, faults, t0
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.probes: list[dict] = []

    def run(self) -> None:
        try:
            for f in self.faults:
                wait = self.t0() + f.at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                f.started = time.monotonic() - self.t0()
                t = time.monotonic()
                self._do(f)
                f.took = round(time.monotonic() - t, 2)
                log(f"fault {f.kind} {f.target} at {f.started:.1f}s took {f.took:.1f}s {f.note}")
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
            log(f"injector failed: {exc!r}")
        finally:
            self.done.set()

    def _do(self, f: Fault) -> None:
        s, infra = self.services, self.infra
        if f.kind == "kill":
            s.kill(f.target, signal.SIGKILL)
            time.sleep(f.param)
            s.start(f.target)
        elif f.kind == "kafka_restart":
            infra.stop_kafka()
            infra.start_kafka()
        elif f.kind == "kafka_kill":
            infra.kill_kafka()
            time.sleep(f.param)
            infra.start_kafka()
        elif f.kind == "pg_restart":
            infra.restart_pg()
        elif f.kind == "pg_crash":
            infra.crash_pg()
        elif f.kind == "ledger_pause":
            # meanwhile quota's reconciliation asks the stopped ledger: it must answer (503), not hang
            def probe() -> None:
                t = time.monotonic()
                r = _try_http("GET", f"{s.url('quota')}/v1/counties/{COUNTY}/reconciliation", timeout=60)
                self.probes.append(dict(probe=f"reconciliation while the ledger is stopped {f.param:.0f}s",
                                        status=r[0], seconds=round(time.monotonic() - t, 1),
                                        reason=r[1].get("reason") if isinstance(r[1], dict) else str(r[1])[:100]))

            th = threading.Thread(target=probe, daemon=True)
            s.signal("ledger", signal.SIGSTOP)
            try:
                th.start()
                time.sleep(f.param)
            finally:
                s.signal("ledger", signal.SIGCONT)
            th.join(70)
        elif f.kind == "ledger_throttle":
            end = time.monotonic() + f.param
            try:
                while time.monotonic() < end:
                    s.signal("ledger", signal.SIGSTOP)
                    time.sleep(0.1)
                    s.signal("ledger", signal.SIGCONT)
                    time.sleep(0.1)
            finally:
                s.signal("ledger", signal.SIGCONT)
        else:
            raise ValueError(f.kind)
        # a service that died on its own during the fault (not one we killed) is restarted and recorded
        for dead in s.dead():
            f.note += f" [{dead} exited by itself: {s.platform.procs[dead].returncode}]"
            s.unexpected_exits.append(f"{dead} during {f.kind}")
            s.start(dead)


class Demand(threading.Thread):
    """The county's side of the stream, over HTTP while it flows (when it has sent the given shares): quota
    requests of admitted projects, and allocation rounds. Each call is retried like an operator would until
    quota answers; a request re-posted after a lost answer must be answered 200 (same id, same body), and a
    round whose answer was lost may have run: the next one finds fewer waiting requests."""

    def __init__(self, services: Services, driver: "Driver", plan: list[tuple[float, str, list | None]]):
        super().__init__(name="faults-demand", daemon=True)
        self.services, self.driver, self.plan = services, driver, plan
        self.log: list[dict] = []
        self.accepted: list[str] = []
        self.refused: Counter = Counter()
        self.error: BaseException | None = None

    def _call(self, method: str, path: str, body, ok: tuple, timeout: float = 180):
        deadline = time.monotonic() + timeout
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            r = _try_http(method, f"{self.services.url('quota')}{path}", body, timeout=60)
            if r[0] in ok or (isinstance(r[0], int) and 400 <= r[0] < 500):
                return r, tries
            time.sleep(1)
        return ("gave up", None), tries

    def post_requests(self, bodies: list[dict]) -> None:
        retried = 0
        for body in bodies:
            (status, out), tries = self._call("POST", "/v1/requests", body, (200, 201))
            retried += tries > 1
            if status in (200, 201):
                self.accepted.append(body["request_id"])
            else:
                self.refused[f"{status} {out.get('reason') if isinstance(out, dict) else out}"] += 1
        self.log.append(dict(action="requests", posted=len(bodies), retried=retried))
        log(f"posted {len(bodies)} quota requests ({retried} after a retry)")

    def run_one(self, label: str) -> None:
        (status, out), tries = self._call("POST", f"/v1/counties/{COUNTY}/rounds", None, (201,))
        if status == 201:
            d = dict(Counter(x["outcome"] for x in out["decisions"]))
            self.log.append(dict(action="round", label=label, seq=out["seq"], tries=tries, decisions=d))
            log(f"round {out['seq']} ({label}): {d} after {tries} tries")
        else:
            self.log.append(dict(action="round", label=label, failed=True, tries=tries, status=status, answer=str(out)[:200]))

    def run(self) -> None:
        try:
            n = len(self.driver.stream.inputs)
            for share, action, arg in self.plan:
                while self.driver.is_alive() and self.driver.sent < share * n:
                    time.sleep(0.2)
                if action == "requests":
                    self.post_requests(arg)
                else:
                    self.run_one(f"at {int(share * 100)}% of the stream")
        except BaseException as exc:  # noqa: BLE001
            self.error = exc


def check_demand(infra: Infra, services: Services, stream: Stream, rep: Report, rounds: "Demand") -> None:
    """Every granted request is reserved (pending in the ledger) or, once every approval it needs arrived,
    allocated (posted, the lots consumed, settlement told); every approval recorded; nothing twice."""
    reqs = {r[0]: r for r in sql(infra, "quota", "SELECT request_id, project_id, state, reason FROM quota_requests")}
    rep.check(set(reqs) == set(stream.accepted_requests), f"quota holds {len(reqs)} requests, {len(stream.accepted_requests)} were posted")
    lines: dict[str, list] = defaultdict(list)
    for rid, asset, amount, kind in sql(infra, "quota", "SELECT request_id, asset, amount, approval_kind FROM request_lines"):
        lines[rid].append((asset, amount, kind))
    decisions: dict[str, list] = defaultdict(list)
    for rid, outcome in sql(infra, "quota", "SELECT d.request_id, d.outcome FROM round_decisions d JOIN rounds r "
                                           "ON r.round_id = d.round_id ORDER BY r.seq"):
        decisions[rid].append(outcome)
    approvals_in: dict[str, set] = defaultdict(set)
    for i in stream.inputs:
        if i.kind == "approval":
            approvals_in[i.data["project_id"]].add(i.data["kind"])
    check_approvals_as_sent(infra, [i for i in stream.inputs if i.kind == "approval"], rep)

    tr = {r[0]: r[1:] for r in sql(infra, "ledger", "SELECT id, status, amount, credit_account_id FROM transfers "
                                                    "WHERE id LIKE 'quota/reserve/%%' OR id LIKE 'quota/post/%%' OR id LIKE 'quota/void%%'")}
    jcount = Counter(r[0] for r in sql(infra, "ledger", "SELECT transfer_id FROM journal WHERE transfer_id LIKE 'quota/%%'"))
    allocs = {(r[0], r[1]): r[2] for r in sql(infra, "quota", "SELECT request_id, asset, amount FROM allocations")}
    s_allocs = {r[0] for r in sql(infra, "settlement", "SELECT allocation_id FROM quota_allocations")}
    exp_alloc: dict[str, int] = defaultdict(int)
    exp_res: dict[str, int] = defaultdict(int)
    project_alloc: dict[str, int] = defaultdict(int)
    wrong, states = [], Counter()
    granted: list[tuple[str, str, int, str]] = []  # (request, asset, amount, reserved | allocated)
    for rid, (_, project, state, reason) in reqs.items():
        states[state] += 1
        d = decisions.get(rid, [])
        needed = {k for _, _, k in lines[rid]}
        if "granted" in d:
            want = "allocated" if needed <= approvals_in[project] else "reserved"
            if d.count("granted") != 1 or d[-1] != "granted":
                wrong.append((rid, "decisions", d))
        elif d:
            want = "rejected"
        else:
            want = "requested"
        if state != want:
            wrong.append((rid, state, want, reason, d))
            continue
        for asset, amount, _ in lines[rid]:
            if want in ("reserved", "allocated"):
                granted.append((rid, asset, amount, want))
            res = tr.get(f"quota/reserve/{rid}/{asset}")
            post = tr.get(f"quota/post/{rid}/{asset}")
            if want == "reserved":
                exp_res[asset] += amount
                if res is None or res[0] != "pending" or res[1] != amount or post is not None:
                    wrong.append((rid, asset, "reserve", res, post))
            elif want == "allocated":
                exp_alloc[asset] += amount
                project_alloc[f"project:{project}/{asset}"] += amount
                if (res is None or res[0] != "posted_pending" or post is None or post[0] != "posted" or post[1] != amount
                        or jcount[f"quota/post/{rid}/{asset}"] != 1 or jcount[f"quota/reserve/{rid}/{asset}"] != 1):
                    wrong.append((rid, asset, "post", res, post, jcount[f"quota/post/{rid}/{asset}"]))
                if allocs.get((rid, asset)) != amount or f"{rid}:{asset}" not in s_allocs:
                    wrong.append((rid, asset, "allocation", allocs.get((rid, asset)), f"{rid}:{asset}" in s_allocs))
            elif res is not None or post is not None:
                wrong.append((rid, asset, "transfer for a request never granted", res, post))
    rep.check(not wrong, f"{len(wrong)} requests not where their decisions and approvals put them, e.g. {wrong[:4]}")
    rep.effects("quota requests in the state their decisions and approvals imply", len(reqs) - len({w[0] for w in wrong}))
    extra = [k for k in allocs if reqs.get(k[0], (None, None, None))[2] != "allocated"]
    rep.check(not extra, f"allocations of requests not allocated: {extra[:3]}")
    extra = [a for a in s_allocs if a.rsplit(":", 1)[0] not in reqs or reqs[a.rsplit(":", 1)[0]][2] != "allocated"]
    rep.check(not extra, f"settlement allocations of requests not allocated: {extra[:3]}")
    rep.counts["request states"] = dict(states)
    check_grants_applied_once(infra, granted, rep)

    st, pool = http_json("GET", f"{services.url('quota')}/v1/counties/{COUNTY}/pool")
    for a in pool["assets"] if st == 200 else []:
        asset = a["asset"]
        rep.check(quota_units(asset, a["allocated"]) == exp_alloc[asset] and quota_units(asset, a["reserved"]) == exp_res[asset],
                  f"pool {asset}: allocated {a['allocated']} reserved {a['reserved']}, the requests say "
                  f"{exp_alloc[asset]} / {exp_res[asset]} units")
        pend = sql(infra, "ledger", "SELECT debits_pending FROM accounts WHERE id = %s", (f"county:{COUNTY}/pool/{asset}",))
        rep.check((pend[0][0] if pend else 0) == exp_res[asset], f"ledger pending on the {asset} pool {pend} != reserved {exp_res[asset]}")
    bal = {r[0]: r[1] for r in sql(infra, "ledger", "SELECT id, credits_posted - debits_posted FROM accounts WHERE id LIKE 'project:%%'")}
    wrong = [(k, bal.get(k), v) for k, v in project_alloc.items() if bal.get(k) != v]
    rep.check(not wrong, f"project accounts != their allocations: {wrong[:3]}")
    rep.effects("project accounts holding exactly their allocations", len(project_alloc) - len(wrong))
    rep.check(not any(r.get("failed") for r in rounds.log), f"rounds that never ran: {rounds.log}")
    rep.check(rounds.error is None, f"the demand thread failed: {rounds.error!r}")
    rep.check(not [k for k in rounds.refused if "reused" in k], f"a re-posted request was refused: {dict(rounds.refused)}")


def check_approvals_as_sent(infra: Infra, approvals: list, rep: Report) -> None:
    have = {f"{r[0]}/{r[1]}": (r[2], r[3].isoformat()) for r in sql(
        infra, "quota", "SELECT project_id, kind, document_ref, granted_on FROM project_approvals")}
    bad = [(i.ident, have.get(i.ident)) for i in approvals
           if have.get(i.ident) != (i.data["document_ref"], i.data["granted_on"])]
    rep.check(not bad, f"{len(bad)} approvals lost or recorded otherwise than sent, e.g. {bad[:3]}")
    rep.effects("approvals recorded as sent", len(approvals) - len(bad))


SETTLEMENT_UNIT_SCALE = 6  # settlement keeps allocated quantities at 6 decimals, whatever the asset's own scale


def check_grants_applied_once(infra: Infra, granted: list[tuple[str, str, int, str]], rep: Report) -> None:
    """Each granted request line's effects counted by its request id where they are stored (no key holds these
    to one): the reserve and post quota asked for, the transfers the ledger made for the request and announced,
    quota's QuotaAllocated events and the lots it consumed, settlement's allocations."""
    asked = transfers_asked(infra, "quota")
    moves = ledger_moves_by_ref(infra, ("quota_reserve", "quota_allocate"))
    pending, posted = ledger_outcomes(infra, "TransferPending"), ledger_outcomes(infra, "TransferPosted")
    announced: dict[tuple, list] = defaultdict(list)
    for d in outbox_events(infra, "quota", "QuotaAllocated"):
        announced[(d["request_id"], d["asset"])].append(quota_units(d["asset"], d["amount"]))
    settled: dict[tuple, list] = defaultdict(list)
    for rid, asset, units in sql(infra, "settlement", "SELECT request_id, asset, amount_units FROM quota_allocations"):
        settled[(rid, asset)].append(units)
    consumed = {(r[0], r[1]): int(r[2]) for r in sql(
        infra, "quota", "SELECT request_id, asset, sum(amount) FROM consumptions GROUP BY request_id, asset")}
    bad = []
    for rid, asset, amount, state in granted:
        done = state == "allocated"
        ids = (f"quota/reserve/{rid}/{asset}", f"quota/post/{rid}/{asset}")
        once = [amount] if done else []
        want = dict(asked=(1, int(done)), reserve=[amount], allocate=once, outcomes=(1, int(done)), announced=once,
                    settled=[amount * 10 ** (SETTLEMENT_UNIT_SCALE - QUOTA_SCALE[asset])] if done else [],
                    consumed=amount if done else 0)
        got = dict(asked=(asked[ids[0]], asked[ids[1]]), reserve=moves.get(("quota_reserve", rid, asset), []),
                   allocate=moves.get(("quota_allocate", rid, asset), []), outcomes=(pending[ids[0]], posted[ids[1]]),
                   announced=announced.get((rid, asset), []), settled=settled.get((rid, asset), []),
                   consumed=consumed.get((rid, asset), 0))
        diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        if diff:
            bad.append((rid, asset, diff))
    rep.check(not bad, f"{len(bad)} granted request lines whose effects are not there exactly once ((got, expected) "
                       f"per effect), e.g. {bad[:3]}")
    rep.effects("granted request lines with each effect exactly once (transfers, outcomes, events, settlement)",
                len(granted) - len(bad))


# -- settling ------------------------------------------------------------------------------------------------
def pg(infra: Infra, service: str):
    return psycopg.connect(host="127.0.0.1", port=infra.pg_port, user="countypool", password="countypool",
                           dbname=f"countypool_{service}", autocommit=True, connect_timeout=5)


def unpublished(infra: Infra, service: str) -> int:
    engine = create_engine(f"postgresql+psycopg://countypool:countypool@127.0.0.1:{infra.pg_port}/countypool_{service}",
                           poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            return unpublished_count(conn)
    finally:
        engine.dispose()


def sql(infra: Infra, service: str, query: str, params=None) -> list[tuple]:
    with pg(infra, service) as conn:
        return conn.execute(query, params).fetchall()


def end_offsets(bootstrap: str, names: list[str]) -> dict[tuple[str, int], int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        tps = [TopicPartition(t, p) for t in names for p in (c.partitions_for_topic(t) or [])]
        return {(tp.topic, tp.partition): off for tp, off in c.end_offsets(tps).items()} if tps else {}
    finally:
        c.close()


def settle_snapshot(infra: Infra, services: Services) -> dict:
    names = sorted({t for ts in CONSUMES.values() for t in ts} | set(T.ALL) | {T.dlq(t) for t in T.ALL})
    ends = end_offsets(infra.bootstrap, names)
    snap: dict = {"ends": ends, "services": {}}
    for s in SERVICES:
        backlog = unpublished(infra, s)
        pos = {(t, p): o for t, p, o in sql(infra, s, "SELECT topic, partition, next_offset FROM consumer_positions")}
        lag = sum(max(0, end - pos.get(tp, 0)) for tp, end in ends.items() if tp[0] in CONSUMES[s])
        try:
            m = metrics(services.url(s))
            m_backlog = sum(v for (n, _), v in m.items() if n == "countypool_outbox_backlog")
            m_lag = sum(v for (n, _), v in m.items() if n == "countypool_consumer_lag")
        except OSError:
            m_backlog = m_lag = None
        snap["services"][s] = dict(outbox_backlog=backlog, lag=lag, metric_backlog=m_backlog, metric_lag=m_lag)
    return snap


def wait_settled(infra: Infra, services: Services, timeout: float) -> tuple[dict, float]:
    """Until two snapshots 1.5 s apart show every outbox empty, every consumer at the end of its topics (from
    the positions in its database), the same end offsets, and the services' own gauges at 0."""
    t0 = time.monotonic()
    prev = None
    last = None
    last_log = time.monotonic()
    while time.monotonic() - t0 < timeout:
        services.revive_dead()
        try:
            snap = settle_snapshot(infra, services)
        except Exception as exc:  # noqa: BLE001 - the broker or server is still coming back
            log(f"settle: {exc!r}")
            time.sleep(1)
            continue
        last = snap
        if time.monotonic() - last_log > 5:
            last_log = time.monotonic()
            log("settling: " + ", ".join(f"{k} backlog {v['outbox_backlog']} lag {v['lag']} (gauges {v['metric_backlog']}/{v['metric_lag']})"
                                         for k, v in snap["services"].items()))
        quiet = all(v["outbox_backlog"] == 0 and v["lag"] == 0 for v in snap["services"].values())
        gauges = all(v["metric_backlog"] == 0 and (v["metric_lag"] or 0) == 0 for v in snap["services"].values())
        if quiet and gauges and prev is not None and prev["ends"] == snap["ends"]:
            return snap, time.monotonic() - t0
        prev = snap if quiet else None
        time.sleep(1.5)
    raise AssertionError(f"not settled after {timeout:.0f}s: {json.dumps(last and last['services'])}")


# -- checks --------------------------------------------------------------------------------------------------
@dataclass
class Report:
    counts: dict = field(default_factory=dict)  # what the run did (setup, demand): shown, never summed as checked
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict = field(default_factory=dict)  # effects a check compared with what it expected, by check

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)

    def effects(self, name: str, n: int) -> None:
        self.checked[name] = self.checked.get(name, 0) + n


def _ledger_units(asset: str, text: str) -> int:
    from shared.amounts import parse_amount

    scale = LEDGER_SCALE.get(asset, QUOTA_SCALE.get(asset))
    return parse_amount(text, scale, allow_zero=True, allow_negative=True)


def check_all(infra: Infra, services: Services, stream: Stream, rep: Report) -> None:
    inputs = stream.inputs
    by_kind: dict[str, list] = defaultdict(list)
    for i in inputs:
        by_kind[i.kind].append(i)

    # --- quota: each release -> accepted, one lot, booked, its amount as released, retired as the policy says
    expected_lots = expected_releases(stream)
    rel_ids = [e.release_id for e in expected_lots.values()]
    rows = {r[0]: r for r in sql(infra, "quota", "SELECT release_id, status, amount, asset FROM releases WHERE release_id = ANY(%s)", (rel_ids,))}
    lots = {r[0]: r for r in sql(infra, "quota",
                                 "SELECT lot_id, asset, amount, retired, remaining, ledger_state, basis FROM lots")}
    missing = [r for r in rel_ids if r not in rows]
    rep.check(not missing, f"{len(missing)} releases lost in quota, e.g. {missing[:3]}")
    not_accepted = [r for r in rel_ids if r in rows and rows[r][1] != "accepted"]
    rep.check(not not_accepted, f"{len(not_accepted)} releases not accepted: {[(r, rows[r][1]) for r in not_accepted[:3]]}")
    lot_missing = [lid for lid in expected_lots if lid not in lots]
    rep.check(not lot_missing, f"{len(lot_missing)} lots missing, e.g. {lot_missing[:3]}")
    extra_lots = [lid for lid in lots if lid not in expected_lots]
    rep.check(not extra_lots, f"{len(extra_lots)} lots nobody released, e.g. {extra_lots[:3]}")
    wrong = [lid for lid, e in expected_lots.items() if lid in lots and lots[lid][2] != e.units]
    rep.check(not wrong, f"{len(wrong)} lots with another amount than released, e.g. {wrong[:3]}")
    unbooked = [lid for lid in expected_lots if lid in lots and lots[lid][5] != "booked"]
    rep.check(not unbooked, f"{len(unbooked)} lots not booked by the ledger: {[(l, lots[l][5]) for l in unbooked[:3]]}")
    rep.effects("releases -> accepted release + booked lot", len(rel_ids) - len(set(missing) | set(not_accepted)))
    check_lots_retired_by_policy(expected_lots, lots, rep)

    # --- ledger: quota's intake and retire transfers, posted once, with the amounts the inputs and policy imply
    tr = {r[0]: r for r in sql(infra, "ledger", "SELECT id, debit_account_id, credit_account_id, asset, amount, status FROM transfers")}
    failed = {r[0]: r[1] for r in sql(infra, "ledger", "SELECT id, result FROM failed_transfers")}
    jcount = Counter(r[0] for r in sql(infra, "ledger", "SELECT transfer_id FROM journal WHERE kind <> 'account_created'"))
    bad = []
    for lid, e in expected_lots.items():
        want = [(f"quota/intake/{lid}", f"county:{COUNTY}/pool/{e.asset}", e.units)]
        if e.retired:
            want.append((f"quota/retire/{lid}", f"county:{COUNTY}/retired/{e.asset}", e.retired))
        elif f"quota/retire/{lid}" in tr:  # nothing to retire: no transfer either
            bad.append((f"quota/retire/{lid}", tr[f"quota/retire/{lid}"][4:], "retired nothing"))
        for tid, credit, units in want:
            t = tr.get(tid)
            if t is None or t[2] != credit or t[4] != units or t[5] != "posted" or jcount[tid] != 1:
                bad.append((tid, t and t[4:], units, jcount[tid], failed.get(tid)))
    rep.check(not bad, f"{len(bad)} quota intake/retire transfers wrong/lost/doubled, e.g. {bad[:3]}")
    rep.effects("quota intake/retire transfers posted once", sum(2 if e.retired else 1 for e in expected_lots.values()) - len(bad))
    check_releases_applied_once(infra, expected_lots, rep)

    # --- ledger: direct commands
    bad = []
    for tid, (debit, credit, asset, units) in stream.ledger_expect_posted.items():
        t = tr.get(tid)
        if t is None or (t[1], t[2], t[3], t[4], t[5]) != (debit, credit, asset, units, "posted") or jcount[tid] != 1:
            bad.append((tid, t, jcount[tid], failed.get(tid)))
    rep.check(not bad, f"{len(bad)} ledger command transfers wrong/lost/doubled, e.g. {bad[:3]}")
    rep.effects("ledger command transfers posted once", len(stream.ledger_expect_posted) - len(bad))
    bad = [(tid, failed.get(tid), tid in tr, jcount[tid]) for tid, reason in stream.ledger_expect_failed.items()
           if failed.get(tid) != reason or tid in tr or jcount[tid]]
    rep.check(not bad, f"{len(bad)} unfunded transfers not refused as expected, e.g. {bad[:3]}")
    rep.effects("unfunded transfers refused, never journaled", len(stream.ledger_expect_failed) - len(bad))
    check_command_outcomes_once(infra, stream, rep)
    ours = [t for t in tr if t.startswith(f"ft-{stream.run}-")]
    rep.check(len(ours) == len(stream.ledger_expect_posted), f"ledger holds {len(ours)} transfers of ours, expected {len(stream.ledger_expect_posted)}")
    doubled = [t for t, n in jcount.items() if n > 1]  # (a pending transfer's expiry would add one: none here)
    rep.check(not doubled, f"{len(doubled)} transfer ids journaled more than once, e.g. {doubled[:3]}")
    rep.effects("journal entries, one per transfer id", len(jcount) - len(doubled))

    # expected balances of the FT accounts, exactly
    want: dict[str, int] = defaultdict(int)
    for debit, credit, asset, units in stream.ledger_expect_posted.values():
        want[debit] -= units
        want[credit] += units
    have = {r[0]: r[1] for r in sql(infra, "ledger", "SELECT id, credits_posted - debits_posted FROM accounts WHERE id = ANY(%s)",
                                    (sorted(want),))}
    wrong = [(a, have.get(a), w) for a, w in want.items() if have.get(a) != w]
    rep.check(not wrong, f"{len(wrong)} command accounts with another balance than the commands imply, e.g. {wrong[:3]}")
    rep.effects("command account balances exact", len(want) - len(wrong))

    # --- per-asset sums zero: the API over every address kind, and the table
    per_asset: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    seen_accounts = 0
    for prefix in ("external:", "issuance:", "county:", "township:", "park:", "enterprise:", "project:", "retired:"):
        st, body = http_json("GET", f"{services.url('ledger')}/v1/balances?address_prefix={prefix}&limit=10000")
        rep.check(st == 200, f"GET balances {prefix}: {st} {str(body)[:200]}")
        for b in body if st == 200 else []:
            per_asset[b["asset"]] += _ledger_units(b["asset"], b["balance"])
            pending[b["asset"]] += _ledger_units(b["asset"], b["debits_pending"]) - _ledger_units(b["asset"], b["credits_pending"])
            seen_accounts += 1
    n_accounts = sql(infra, "ledger", "SELECT count(*) FROM accounts")[0][0]
    rep.check(seen_accounts == n_accounts, f"balances API showed {seen_accounts} accounts, the table has {n_accounts}")
    rep.check(all(v == 0 for v in per_asset.values()), f"per-asset sums (API) not zero: {dict(per_asset)}")
    rep.check(all(v == 0 for v in pending.values()), f"per-asset pending sums not zero: {dict(pending)}")
    table = sql(infra, "ledger", "SELECT asset, sum(credits_posted - debits_posted), sum(credits_pending - debits_pending) "
                                 "FROM accounts GROUP BY asset")
    rep.check(all(r[1] == 0 and r[2] == 0 for r in table), f"per-asset sums (table) not zero: {table}")
    neg = sql(infra, "ledger", "SELECT id, credits_posted - debits_posted - debits_pending FROM accounts "
                               "WHERE debits_must_not_exceed_credits AND credits_posted - debits_posted - debits_pending < 0")
    rep.check(not neg, f"constrained accounts below zero: {neg[:3]}")
    rep.effects("assets summing to zero", len(per_asset))
    check_balances_rebuilt(infra, rep)

    # --- the pool: released - retired - allocated - reserved = available; and the ledger agrees
    st, pool = http_json("GET", f"{services.url('quota')}/v1/counties/{COUNTY}/pool")
    rep.check(st == 200, f"GET pool: {st} {pool}")
    exp_rel: dict[str, int] = defaultdict(int)
    exp_ret: dict[str, int] = defaultdict(int)
    for e in expected_lots.values():  # from the inputs and the policy: quota's own lots are what is checked
        exp_rel[e.asset] += e.units
        exp_ret[e.asset] += e.retired
    if st == 200:  # every asset a lot was released in has its line (one left out would be checked by nothing)
        rep.check({a["asset"] for a in pool["assets"]} >= set(exp_rel),
                  f"pool answer lacks assets: {sorted(set(exp_rel) - {a['asset'] for a in pool['assets']})}")
    for a in pool["assets"] if st == 200 else []:
        asset = a["asset"]
        u = {k: quota_units(asset, a[k]) for k in ("released", "retired", "allocated", "reserved", "available", "incoming")}
        rep.check(u["released"] - u["retired"] - u["allocated"] - u["reserved"] == u["available"],
                  f"pool {asset}: released - retired - allocated - reserved != available: {a}")
        rep.check(u["released"] == exp_rel[asset] and u["retired"] == exp_ret[asset] and u["incoming"] == 0,
                  f"pool {asset}: {a} but the releases and the policy say released {exp_rel[asset]}, retired {exp_ret[asset]}")
        bal = {r[0]: r[1] for r in sql(infra, "ledger", "SELECT id, credits_posted - debits_posted FROM accounts WHERE id = ANY(%s)",
                                       ([f"county:{COUNTY}/pool/{asset}", f"county:{COUNTY}/retired/{asset}"],))}
        rep.check(bal.get(f"county:{COUNTY}/pool/{asset}", 0) == u["released"] - u["retired"] - u["allocated"],
                  f"ledger pool account {asset} = {bal.get(f'county:{COUNTY}/pool/{asset}')} != released - retired - allocated")
        rep.check(bal.get(f"county:{COUNTY}/retired/{asset}", 0) == u["retired"], f"ledger retired account {asset} != {u['retired']}")
    rep.effects("pool assets balanced against lots and ledger", len(pool["assets"]) if st == 200 else 0)

    st, rec = http_json("GET", f"{services.url('quota')}/v1/counties/{COUNTY}/reconciliation")
    rep.check(st == 200 and rec["agrees"] and rec["in_flight"] == 0 and not rec["differences"],
              f"reconciliation: {st} {json.dumps(rec)[:600]}")
    rep.effects("reconciliation difference zero", 1 if st == 200 and rec["agrees"] else 0)

    # counted first: the verification must cover every row there was (none missing below the head) and end at the head
    rows = sql(infra, "ledger", "SELECT count(*), coalesce(max(seq), 0) FROM journal")[0]
    st, ver = http_json("GET", f"{services.url('ledger')}/v1/journal/verify", timeout=120)
    rep.check(st == 200 and ver.get("ok") is True and rows[0] == rows[1] and ver.get("head_seq") == ver.get("checked")
              and ver.get("checked", 0) >= rows[1], f"journal verify: {st} {ver}; the journal had {rows[0]} rows up to "
                                                    f"seq {rows[1]} before it")
    rep.effects("journal entries verified", (ver or {}).get("checked", (ver or {}).get("entries", 0)) if st == 200 else 0)

    # --- settlement: receipts, lots, buy-backs
    check_receipts_stored_as_sent(infra, by_kind["receipt"], rep)
    s_lots = {r[0] for r in sql(infra, "settlement", "SELECT lot_id FROM quota_lots")}
    lost = [lid for lid in expected_lots if lid not in s_lots]
    rep.check(not lost and len(s_lots) == len(lots), f"settlement knows {len(s_lots)} lots, quota {len(lots)}; lost e.g. {lost[:3]}")
    rep.effects("lots known to settlement", len(expected_lots) - len(lost))
    paid = {lid for lid, e in expected_lots.items() if e.paid}
    bb = {r[0] for r in sql(infra, "settlement", "SELECT buyback_id FROM buybacks")}
    rep.check(bb == {f"buyback:{lid}" for lid in paid}, f"buy-backs {len(bb)} != paid lots {len(paid)}")
    # (the id is the key: how many each lot has is counted in check_releases_applied_once)
    rep.effects("buy-backs for the paid lots and no other", len(bb & {f'buyback:{lid}' for lid in paid}))

    # --- assessment: registrations and indicator parts, as sent and announced once
    check_registrations_as_sent(infra, by_kind["register"] + [i for i in stream.setup if i.kind == "register"], rep)
    check_indicator_parts_as_sent(infra, by_kind["indicators"], rep)

    # --- every input taken by its consumer (the inbox's key keeps an id once: a constraint, not a check;
    # what was applied once is counted by the inputs' own ids in each check above)
    check_inputs_applied(infra, stream.inputs + stream.setup, rep)

    # --- dead letters: none expected for this stream
    from ops.kafka_ops import dead_letters

    dl = {}
    ends = end_offsets(infra.bootstrap, [T.dlq(t) for t in T.ALL])
    for t in T.ALL:
        if not any(n for (topic, _), n in ends.items() if topic == T.dlq(t)):
            continue
        letters = dead_letters(infra.bootstrap, t, limit=100000)
        if letters:
            dl[t] = Counter(d.reason for d in letters)
            rep.notes.append(f"dead letters on {t}: {dict(dl[t])}; e.g. {letters[0].error[:300]}")
    rep.check(not dl, f"dead letters: { {t: dict(c) for t, c in dl.items()} }")


# -- effects by the inputs' own ids ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LotExpect:
    """What one release input says its lot must hold, by the run's policy."""

    release_id: str
    asset: str
    units: int
    retired: int
    paid: bool


def expected_releases(stream: Stream) -> dict[str, LotExpect]:
    """Per lot id (quota names a release's lot ``release:<release id>``), from the inputs and RETIRE_SHARE_BP."""
    out = {}
    for i in stream.inputs:
        if i.kind == "release":
            asset, units = i.data["asset"], quota_units(i.data["asset"], i.data["amount"])
            out[f"release:{i.ident}"] = LotExpect(i.ident, asset, units, expected_retired(asset, units),
                                                  i.data["basis"] == "paid")
    return out


def outbox_events(infra: Infra, service: str, name: str) -> list[dict]:
    """The data of every event of one type the service wrote (its outbox is its event store: never pruned)."""
    rows = sql(infra, service, "SELECT envelope FROM outbox WHERE event_type LIKE %s", (f"countypool.{name}.v%",))
    return [json.loads(r[0])["data"] for r in rows]


def transfers_asked(infra: Infra, service: str) -> Counter:
    """How many commands the service sent the ledger carried each transfer id."""
    return Counter(t["transfer_id"] for d in outbox_events(infra, service, "TransfersRequested") for t in d["transfers"])


def ledger_outcomes(infra: Infra, name: str) -> Counter:
    """How many outcome events of one kind the ledger announced per transfer id (a post's event is keyed by its
    pending transfer, so the id is read from the data)."""
    return Counter(d["transfer_id"] for d in outbox_events(infra, "ledger", name))


def ledger_moves_by_ref(infra: Infra, codes: tuple[str, ...]) -> dict[tuple[str, str, str], list[int]]:
    """(code, ref, asset) -> amounts of the ledger's transfers of those codes: quota names the lot or request a
    transfer is for in its refs, so a second transfer for one input shows whatever its id."""
    out: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for code, refs, asset, amount in sql(infra, "ledger", "SELECT code, refs, asset, amount FROM transfers WHERE code = ANY(%s)",
                                         (list(codes),)):
        for ref in json.loads(refs):
            out[(code, ref, asset)].append(amount)
    return out


def check_lots_retired_by_policy(expected_lots: dict[str, LotExpect], lots: dict, rep: Report) -> None:
    wrong = [(lid, lots[lid][1], lots[lid][2], lots[lid][3], e.retired) for lid, e in expected_lots.items()
             if lid in lots and lots[lid][3] != e.retired]
    rep.check(not wrong, f"{len(wrong)} lots retired otherwise than the policy's share of their release, rounded up "
                         f"(lot, asset, amount, retired, expected), e.g. {wrong[:3]}")
    rep.effects("lots retired exactly the policy's share (rounded up)", sum(lid in lots for lid in expected_lots) - len(wrong))
    rep.counts["lots whose retired share rounds up"] = sum(
        1 for e in expected_lots.values() if e.units * RETIRE_SHARE_BP.get(e.asset, 0) % 10_000)


def check_releases_applied_once(infra: Infra, expected_lots: dict[str, LotExpect], rep: Report) -> None:
    """Each release's effects counted by the release's (or its lot's) id where they are stored; no key holds any
    of these counts to one: quota's lots by origin, quota's events by release or lot, the transfers quota asked
    for and the ledger made (by the lot they name) and announced, settlement's buy-backs by lot."""
    lots_by_origin: dict[str, list[int]] = defaultdict(list)
    for origin, amount in sql(infra, "quota", "SELECT origin_id, amount FROM lots"):
        lots_by_origin[origin].append(amount)
    released = Counter(d["release_id"] for d in outbox_events(infra, "quota", "QuotaReleased"))
    created: dict[str, list] = defaultdict(list)
    for d in outbox_events(infra, "quota", "LotCreated"):
        created[d["lot_id"]].append((quota_units(d["asset"], d["amount"]), quota_units(d["asset"], d["retired"])))
    retired: dict[str, list] = defaultdict(list)
    for d in outbox_events(infra, "quota", "QuotaRetired"):
        retired[d["lot_id"]].append(quota_units(d["asset"], d["amount"]))
    owed = Counter(d["lot_id"] for d in outbox_events(infra, "quota", "BuybackOwed"))
    asked = transfers_asked(infra, "quota")
    moves = ledger_moves_by_ref(infra, ("quota_release_intake", "quota_retire"))
    posted = ledger_outcomes(infra, "TransferPosted")
    bought = Counter(r[0] for r in sql(infra, "settlement", "SELECT lot_id FROM buybacks"))
    bad = []
    for lid, e in expected_lots.items():
        ret = [e.retired] if e.retired else []
        ids = (f"quota/intake/{lid}", f"quota/retire/{lid}")
        want = dict(lot=[e.units], released=1, created=[(e.units, e.retired)], retired=ret, owed=int(e.paid),
                    asked=(1, len(ret)), intake=[e.units], retire=ret, posted=(1, len(ret)), bought=int(e.paid))
        got = dict(lot=lots_by_origin.get(e.release_id, []), released=released[e.release_id], created=created.get(lid, []),
                   retired=retired.get(lid, []), owed=owed[lid], asked=(asked[ids[0]], asked[ids[1]]),
                   intake=moves.get(("quota_release_intake", lid, e.asset), []), retire=moves.get(("quota_retire", lid, e.asset), []),
                   posted=(posted[ids[0]], posted[ids[1]]), bought=bought[lid])
        diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        if diff:
            bad.append((lid, diff))
    rep.check(not bad, f"{len(bad)} releases whose effects are not there exactly once ((got, expected) per effect), e.g. {bad[:3]}")
    rep.effects("releases with each effect exactly once (lot, events, transfers, outcomes, buy-back)", len(expected_lots) - len(bad))


def check_command_outcomes_once(infra: Infra, stream: Stream, rep: Report) -> None:
    """The run's own ledger commands: each transfer announced once, posted or rejected as expected (the ledger
    answers a command again only when it is applied again)."""
    posted, rejected = ledger_outcomes(infra, "TransferPosted"), ledger_outcomes(infra, "TransferRejected")
    bad = [(t, posted[t], rejected[t]) for t in stream.ledger_expect_posted if (posted[t], rejected[t]) != (1, 0)]
    bad += [(t, posted[t], rejected[t]) for t in stream.ledger_expect_failed if (posted[t], rejected[t]) != (0, 1)]
    rep.check(not bad, f"{len(bad)} command transfers not announced exactly once (id, posted, rejected), e.g. {bad[:3]}")
    rep.effects("ledger command outcomes announced once",
                len(stream.ledger_expect_posted) + len(stream.ledger_expect_failed) - len(bad))


def check_receipts_stored_as_sent(infra: Infra, receipts: list, rep: Report) -> None:
    """Every field as sent (a receipt taken with another amount would pass a presence check), and each
    correction linked once to the receipt it replaces."""
    ids = [i.ident for i in receipts]
    have = {r[0]: tuple(r[1:]) for r in sql(
        infra, "settlement", "SELECT receipt_id, enterprise, month, tax_kind, amount_fen, corrects, event_id FROM tax_receipts "
                             "WHERE receipt_id = ANY(%s)", (ids,))}
    lost = [r for r in ids if r not in have]
    rep.check(not lost, f"{len(lost)} tax receipts lost, e.g. {lost[:3]}")
    wrong = [(i.ident, have[i.ident]) for i in receipts if i.ident in have and have[i.ident] != (
        i.data["enterprise_credit_code"], i.data["month"], i.data["tax_kind"], parse_amount(i.data["amount"], 2),
        i.data.get("corrects"), i.event_id)]
    rep.check(not wrong, f"{len(wrong)} tax receipts stored otherwise than sent, e.g. {wrong[:3]}")
    rep.effects("tax receipts stored as sent", len(ids) - len(lost) - len(wrong))
    fixes = {i.data["corrects"]: i.ident for i in receipts if i.data.get("corrects")}
    links = sql(infra, "settlement", "SELECT receipt_id, corrected_by FROM tax_receipts WHERE receipt_id = ANY(%s)", (list(fixes),))
    by_corrects = Counter(r[0] for r in sql(infra, "settlement", "SELECT corrects FROM tax_receipts WHERE corrects = ANY(%s)",
                                             (list(fixes),)))
    linked = {r[0]: r[1] for r in links}
    bad = [(orig, linked.get(orig), fix, by_corrects[orig]) for orig, fix in fixes.items()
           if linked.get(orig) != fix or by_corrects[orig] != 1]
    rep.check(not bad, f"{len(bad)} corrections not linked once to the receipt they replace (receipt, corrected_by, "
                       f"correction, corrections stored), e.g. {bad[:3]}")
    rep.effects("tax receipt corrections linked once", len(fixes) - len(bad))


# Indicator figures' integer units (services/assessment/domain/enterprise.py documents them): decimals kept.
INDICATOR_SCALE = {"land": 4, "tax": 2, "revenue": 2, "value_added": 2, "rnd": 2, "energy": 3, "electricity": 0,
                   "employees": 0}
EMISSIONS_SCALE = 4  # 'emissions.<pollutant>' in t, kept in 0.0001 t


def indicator_units(fields: dict[str, str]) -> dict[str, int]:
    return {k: parse_amount(v, EMISSIONS_SCALE if k.startswith("emissions.") else INDICATOR_SCALE[k], allow_zero=True,
                            allow_negative=True) for k, v in fields.items()}


def check_registrations_as_sent(infra: Infra, registers: list, rep: Report) -> None:
    """Each EnterpriseReported stored with the values sent, and registered (announced) once."""
    codes = [i.ident for i in registers]
    have = {r[0]: (r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7]) for r in sql(
        infra, "assessment", "SELECT credit_code, name, township_code, in_park, park_id, industry_code, flags, scale "
                             "FROM enterprises WHERE credit_code = ANY(%s)", (codes,))}
    announced = Counter(d["credit_code"] for d in outbox_events(infra, "assessment", "EnterpriseRegistered"))
    bad = []
    for i in registers:
        d = i.data
        want = (d["name"], d["township_code"], d["in_park"], d.get("park_id"), d["industry_code"], sorted(d.get("flags") or []),
                d.get("scale"))
        if have.get(i.ident) != want or announced[i.ident] != 1:
            bad.append((i.ident, have.get(i.ident), want, announced[i.ident]))
    rep.check(not bad, f"{len(bad)} enterprises not registered as sent, once (code, stored, sent, events), e.g. {bad[:3]}")
    rep.effects("enterprises registered as sent, announced once", len(codes) - len(bad))


def check_indicator_parts_as_sent(infra: Infra, parts: list, rep: Report) -> None:
    """Each IndicatorsReported stored as its figures' exact units, and recorded (announced) once with them."""
    have = {f"{r[0]}/{r[1]}/{r[2]}": json.loads(r[3]) for r in sql(
        infra, "assessment", "SELECT credit_code, year, department, figures FROM indicator_parts")}
    announced: dict[str, list] = defaultdict(list)
    for d in outbox_events(infra, "assessment", "IndicatorsRecorded"):
        announced[f"{d['credit_code']}/{d['year']}/{d['department']}"].append(indicator_units(d["fields"]))
    bad = []
    for i in parts:
        want = indicator_units(i.data["fields"])
        if have.get(i.ident) != want or announced.get(i.ident) != [want]:
            bad.append((i.ident, have.get(i.ident), want, announced.get(i.ident)))
    rep.check(not bad, f"{len(bad)} indicator parts not stored as sent, once (part, stored, sent, events), e.g. {bad[:3]}")
    rep.effects("indicator parts stored as sent, announced once", len(parts) - len(bad))


CONSUMER_OF = {T.INTAKE_QUOTA: "quota", T.INTAKE_SETTLEMENT: "settlement", T.INTAKE_ASSESSMENT: "assessment",
               T.LEDGER_COMMANDS: "ledger"}


def check_inputs_applied(infra: Infra, inputs: list, rep: Report) -> None:
    """Every input's event id in its consumer's inbox as applied: not lost, not ignored, not failed."""
    by_service: dict[str, list[str]] = defaultdict(list)
    for i in inputs:
        by_service[CONSUMER_OF[i.topic]].append(i.event_id)
    bad = []
    for service, ids in by_service.items():
        got = dict(sql(infra, service, "SELECT event_id, outcome FROM inbox WHERE event_id = ANY(%s)", (ids,)))
        bad += [(service, e, got.get(e)) for e in ids if got.get(e) != "applied"]
    rep.check(not bad, f"{len(bad)} inputs not applied by their consumer (service, event id, inbox outcome), e.g. {bad[:3]}")
    rep.effects("inputs applied by their consumer (inbox)", len(inputs) - len(bad))


# -- ledger balances rebuilt -----------------------------------------------------------------------------------
BALANCE_FIELDS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def balances_from_journal(infra: Infra) -> dict[str, list[int]]:
    """Per account the four figures summed from the journal's deltas (a transfer's debit side moves its debit
    account, its credit side its credit account; the chain verification holds the deltas to the hashed payload)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for acct, dp, dpo in sql(infra, "ledger", "SELECT debit_account_id, sum(d_debits_pending), sum(d_debits_posted) "
                                             "FROM journal WHERE debit_account_id IS NOT NULL GROUP BY 1"):
        out[acct][0], out[acct][1] = int(dp), int(dpo)
    for acct, cp, cpo in sql(infra, "ledger", "SELECT credit_account_id, sum(d_credits_pending), sum(d_credits_posted) "
                                             "FROM journal WHERE credit_account_id IS NOT NULL GROUP BY 1"):
        out[acct][2], out[acct][3] = int(cp), int(cpo)
    return out


def balances_from_transfers(infra: Infra) -> dict[str, list[int]]:
    """Per account the four figures from the transfers as they stand: a pending transfer still pending holds its
    amount; a posted one (plain, or the post of a pending transfer, which carries the posted amount) moved it;
    voided, expired and resolved pending transfers hold nothing."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for debit, credit, amount, pending, status in sql(
            infra, "ledger", "SELECT debit_account_id, credit_account_id, amount, pending, status FROM transfers"):
        if pending and status == "pending":
            out[debit][0] += amount
            out[credit][2] += amount
        elif not pending and status == "posted":
            out[debit][1] += amount
            out[credit][3] += amount
    return out


def check_balances_rebuilt(infra: Infra, rep: Report) -> None:
    """Every account's pending and posted debits and credits as the journal and the transfers add up, account by
    account (sums per asset being zero would not show one account credited for another)."""
    table = {r[0]: list(r[1:]) for r in sql(infra, "ledger", f"SELECT id, {', '.join(BALANCE_FIELDS)} FROM accounts")}
    for source, rebuilt in (("journal", balances_from_journal(infra)), ("transfers", balances_from_transfers(infra))):
        unknown = sorted(set(rebuilt) - set(table))
        rep.check(not unknown, f"the {source} moves {len(unknown)} accounts the ledger does not have, e.g. {unknown[:3]}")
        wrong = [(a, dict(zip(BALANCE_FIELDS, v)), rebuilt.get(a, [0, 0, 0, 0])) for a, v in table.items()
                 if v != rebuilt.get(a, [0, 0, 0, 0])]
        rep.check(not wrong, f"{len(wrong)} accounts whose balances the {source} does not add up to "
                             f"(account, table, rebuilt), e.g. {wrong[:3]}")
        rep.effects(f"ledger accounts rebuilt from the {source}", len(table) - len(wrong))


# -- the pool policy the run sets -----------------------------------------------------------------------------
# Retired share per asset in basis points, set by the run and kept here: the checker's expectations come from
# this table and the inputs, never from quota's own figures. Shares differ per asset (a mix-up shows) and most
# do not divide amounts evenly (the rounding rule shows).
RETIRE_SHARE_BP = {"LAND": 0, "ENERGY": 500, "COD": 2000, "NH3N": 2500, "SO2": 1500, "NOX": 2000, "VOCS": 3333}


def setup_quota_policy(services: Services) -> None:
    url = f"{services.url('quota')}/v1/counties/{COUNTY}/policy"
    status, body = http_json("PUT", url, {"verification": "accept", "retire_share_bp": RETIRE_SHARE_BP})
    assert status == 200, (status, body)
    status, body = http_json("GET", url)  # what is in force, not what the answer echoed
    assert status == 200 and body["retire_share_bp"] == RETIRE_SHARE_BP and body["verification"] == "accept", (status, body)


def expected_retired(asset: str, units: int) -> int:
    """The policy's rule (services/quota/domain/lots.py): the share *must* be retired, so a fraction of a
    smallest unit is retired too -- rounded up, per lot."""
    whole, rest = divmod(units * RETIRE_SHARE_BP.get(asset, 0), 10_000)
    return whole + (1 if rest else 0)


# -- settlement statements -----------------------------------------------------------------------------------
def setup_settlement(services: Services, stream: Stream, rep: Report) -> None:
    st, out = http_json("PUT", f"{services.url('settlement')}/v1/counties/{COUNTY}/settlement-policy",
                        {"policy_id": "faults", "compensation_bp": 3000, "township_weight": 4, "park_weight": 3,
                         "fund_weight": 3})
    assert st in (200, 201), (st, out)
    n = 0
    for body in stream.agreements:
        if body.get("version", 1) != 1:
            continue
        body = dict(body)
        st, out = http_json("POST", f"{services.url('settlement')}/v1/agreements", body)
        if st in (200, 201):
            n += 1
        else:
            rep.notes.append(f"agreement {body.get('agreement_id')}: {st} {str(out)[:200]}")
    rep.counts["agreements recorded (setup)"] = n


def _try_http(*args, **kw):
    try:
        return http_json(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - the server was killed under the request
        return ("no answer", repr(exc))


def check_statements(infra: Infra, services: Services, rep: Report, period: str = "2025",
                     kill_during_finalize: bool = True) -> None:
    """Draft twice (same content hash); finalize with that hash (with ``kill_during_finalize``: settlement is
    SIGKILLed part-way through a first finalization, restarted, and asked again); every money line posted
    once in the ledger; after a restart of settlement the finalized statement answers the same hash."""
    url = services.url("settlement")
    draft = f"{url}/v1/counties/{COUNTY}/periods/{period}/draft"
    final = f"{url}/v1/counties/{COUNTY}/periods/{period}/finalize"
    st1, d1 = http_json("POST", draft, {}, timeout=300)
    t = time.monotonic()
    st2, d2 = http_json("POST", draft, {}, timeout=300)
    took = time.monotonic() - t
    rep.check(st1 == 200 and st2 == 200, f"draft {period}: {st1} {str(d1)[:300]} / {st2} {str(d2)[:300]}")
    if st1 != 200 or st2 != 200:
        return
    h = d1.get("content_hash")
    rep.check(h and h == d2.get("content_hash"), f"two drafts of {period}: {h} vs {d2.get('content_hash')}")
    rep.counts["statement lines"] = d1.get("line_count")
    restarted = False
    if kill_during_finalize:
        box: dict = {}
        th = threading.Thread(target=lambda: box.update(r=_try_http("POST", final, {"expected_content_hash": h})),
                              daemon=True)
        th.start()
        delay = random.uniform(0.1, 0.9) * took  # a draft computes what finalization computes, then it stores
        time.sleep(delay)
        services.kill("settlement", signal.SIGKILL)
        th.join(30)
        services.start("settlement")
        restarted = True
        r = box.get("r") or ("no answer", "")
        rep.notes.append(f"finalize SIGKILLed after {delay:.2f}s (a draft takes {took:.2f}s): the first call "
                         f"{'answered ' + str(r[0]) if r[0] != 'no answer' else 'got no answer'}")
    st, fin = http_json("POST", final, {"expected_content_hash": h}, timeout=300)
    rep.check(st == 200 and fin.get("content_hash") == h and fin.get("status") == "finalized",
              f"finalize {period}: {st} {str(fin)[:400]}")
    if st != 200:
        return
    postings = sql(infra, "settlement", "SELECT transfer_id FROM ledger_postings WHERE period = %s", (period,))
    ids = [p[0] for p in postings]
    rep.check(bool(ids), "finalization asked the ledger for nothing")
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        n = sql(infra, "ledger", "SELECT count(*) FROM transfers WHERE id = ANY(%s) AND status = 'posted'", (ids,))[0][0]
        states = Counter(r[0] for r in sql(infra, "settlement", "SELECT status FROM ledger_postings WHERE period = %s", (period,)))
        if n == len(ids) and set(states) == {"posted"}:
            break
        time.sleep(1)
    j = Counter(r[0] for r in sql(infra, "ledger", "SELECT transfer_id FROM journal WHERE transfer_id = ANY(%s)", (ids,)))
    rep.check(n == len(ids) and all(j[i] == 1 for i in ids),
              f"settlement money lines in the ledger: {n} of {len(ids)} posted; journaled {sum(j.values())}")
    rep.check(set(states) == {"posted"}, f"settlement's view of its postings: {dict(states)}")
    rep.effects("settlement money lines posted once", n)
    if not restarted:
        services.kill("settlement", signal.SIGKILL)
        services.start("settlement")
    st, again = http_json("POST", final, {"expected_content_hash": h}, timeout=300)
    st3, page = http_json("GET", f"{url}/v1/counties/{COUNTY}/periods/{period}/statement?limit=1")
    got = (page or {}).get("content_hash")
    rep.check(st == 200 and again.get("content_hash") == h and st3 == 200 and got == h,
              f"statement hash after restart: finalize {st} {str(again)[:200]}, GET {st3} {got}")
    rep.effects("statement hash reproduced (draft x2, finalize, after restart)", 1 if got == h else 0)
    # (the answers above all read the stored header: check_every_statement hashes the stored lines)


def draft_next_year(services: Services, rep: Report, closed: str) -> str:
    """A second statement: the year after the one just finalized (a draft must start where the last closed
    period ended), drafted twice: the same hash. It holds what the finalization left, e.g. the run's allocations."""
    label = str(int(closed) + 1)
    draft = f"{services.url('settlement')}/v1/counties/{COUNTY}/periods/{label}/draft"
    (st1, d1), (st2, d2) = http_json("POST", draft, {}, timeout=300), http_json("POST", draft, {}, timeout=300)
    ok = st1 == st2 == 200 and d1.get("content_hash") == d2.get("content_hash")
    rep.check(ok, f"two drafts of {label}: {st1} {str(d1)[:300]} / {st2} {str(d2)[:300]}")
    rep.effects("statement hash reproduced (draft x2 of the next year)", int(ok))
    return label


def check_every_statement(infra: Infra, rep: Report, expected: set[str]) -> None:
    """Every statement settlement stores, final or draft: its stored lines hash to its header's hash."""
    heads = sql(infra, "settlement", "SELECT period, status, content_hash, line_count FROM statements "
                                     "WHERE county_code = %s ORDER BY period", (COUNTY,))
    rep.check(expected <= {h[0] for h in heads}, f"statements stored {[h[:2] for h in heads]}, the run made {sorted(expected)}")
    for period, status, h, n in heads:
        lines, recomputed = stored_statement_hash(infra, period)
        ok = recomputed == h and lines == n
        rep.check(ok, f"statement {period} ({status}): its {lines} stored lines hash to {recomputed}, the header "
                      f"says {h} over {n} lines")
        rep.effects("statement lines re-hashed from the database", lines if ok else 0)
    rep.counts["statements re-hashed"] = {period: f"{status}, {n} lines" for period, status, _, n in heads}


def stored_statement_hash(infra: Infra, period: str) -> tuple[int, str]:
    """The content hash of the finalized statement's stored lines, computed here with the domain's canonical JSON
    (not the service's one-pass tally) and party totals summed here from the money lines."""
    from services.settlement.domain.lines import LineKind, PartyTotal
    from services.settlement.domain.periods import Period
    from services.settlement.domain.statement import content_hash
    from services.settlement.storage.statements import StatementsRepository

    engine = create_engine(f"postgresql+psycopg://countypool:countypool@127.0.0.1:{infra.pg_port}/countypool_settlement",
                           poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with Session(engine) as s:
            lines = list(StatementsRepository(s).stream_lines(COUNTY, period))
    finally:
        engine.dispose()
    receivable: Counter = Counter()
    payable: Counter = Counter()
    for ln in lines:
        if ln.kind is not LineKind.STATISTICS_SHARE:
            receivable[ln.payee] += ln.amount_fen
            payable[ln.payer] += ln.amount_fen
    totals = [PartyTotal(p, receivable[p], payable[p]) for p in sorted(set(receivable) | set(payable))]
    return len(lines), content_hash(COUNTY, Period.parse(period), lines, totals)


def wait_quiet(infra: Infra, services: Services, service: str, timeout: float = 60) -> None:
    """One service's outbox published and its consumer at the end of its topics."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = settle_snapshot(infra, services)["services"][service]
        if snap["outbox_backlog"] == 0 and snap["lag"] == 0:
            return
        time.sleep(1)
    raise AssertionError(f"{service} not quiet after {timeout:.0f}s")


# -- the whole run -------------------------------------------------------------------------------------------
@dataclass
class RunConfig:
    name: str
    releases: int
    ledger: int
    receipts: int
    assessment: int
    rate: float
    kills_per_service: int
    kafka_restarts: int
    kafka_kills: int
    pg_restarts: int
    ledger_pauses: list[float]
    ledger_throttles: list[float]
    pg_crashes: int = 0
    kill_during_finalize: bool = True
    service_env: dict = field(default_factory=dict)  # extra environment of the service processes (experiments)
    fault_window: tuple[float, float] = (0.05, 0.8)  # faults start within these shares of the stream's duration
    settle_timeout: float = 180
    seed: int = 20261129
    statements: bool = True


def run(cfg: RunConfig, workdir: Path, gen_dir: Path, infra: Infra | None = None, out: Path | None = None) -> Report:
    from tests.faults import stream as stream_mod

    rep = Report()
    timings: dict[str, float] = {}
    t_all = time.monotonic()
    import logging

    kafka_log = logging.getLogger("kafka")
    kafka_level = kafka_log.level
    kafka_log.setLevel(logging.ERROR)  # this process's probes: their client chatter while the broker is away
    rng = random.Random(cfg.seed)
    infra = infra or Infra(workdir)
    services = None
    try:
        t = time.monotonic()
        stream_mod.generate(gen_dir)
        st = stream_mod.build(gen_dir, run=f"r{cfg.seed % 100000}", releases=cfg.releases, ledger=cfg.ledger,
                              receipts=cfg.receipts, assessment=cfg.assessment, seed=cfg.seed)
        timings["generate"] = time.monotonic() - t
        t = time.monotonic()
        infra.start()
        timings["infra start"] = time.monotonic() - t
        t = time.monotonic()
        services = Services(infra, workdir, extra_env=cfg.service_env)
        services.start_all()
        timings["services start"] = time.monotonic() - t
        log(f"services up: { {s: services.url(s) for s in SERVICES} }; logs in {services.data_dir}")

        # setup (no faults): policy accept, agreements, the enterprises receipts need
        t = time.monotonic()
        setup_quota_policy(services)
        if cfg.statements:
            setup_settlement(services, st, rep)
        setup_stream = Stream(run=st.run, inputs=st.setup, setup=[], duplicates=[], agreements=[])
        d = Driver(infra.bootstrap, setup_stream, rate=2000)
        d.start()
        d.join()
        assert d.error is None and d.unacked == 0, (d.error, d.unacked)
        if st.requests:
            admitted = 0
            for body in st.projects:
                status, out_ = http_json("POST", f"{services.url('assessment')}/v1/projects", body)
                assert status in (200, 201), (status, out_)
                admitted += bool(out_.get("admitted"))
            rep.counts["projects admitted (setup)"] = admitted
        wait_settled(infra, services, timeout=120)
        timings["setup"] = time.monotonic() - t

        # the stream, with faults
        duration = len(st.inputs) / cfg.rate
        faults = plan_faults(rng, duration, kills_per_service=cfg.kills_per_service, kafka_restarts=cfg.kafka_restarts,
                             kafka_kills=cfg.kafka_kills, pg_restarts=cfg.pg_restarts, pg_crashes=cfg.pg_crashes,
                             ledger_pauses=cfg.ledger_pauses,
                             ledger_throttles=cfg.ledger_throttles, window=cfg.fault_window)
        log(f"stream: {len(st.inputs)} inputs {st.count()} + {len(st.duplicates)} duplicates at {cfg.rate}/s "
            f"(~{duration:.0f}s); {len(faults)} faults planned (seed {cfg.seed})")
        driver = Driver(infra.bootstrap, st, cfg.rate)
        t = time.monotonic()
        driver.start()
        while not driver.started_at:
            time.sleep(0.01)
        injector = Injector(infra, services, faults, lambda: driver.started_at)
        injector.start()
        half = len(st.requests) // 2
        rounds = Demand(services, driver, [(0.5, "requests", st.requests[:half]), (0.75, "round", None),
                                           (0.92, "round", None)] if st.requests else [])
        rounds.start()
        driver.join()
        injector.join()
        rounds.join()
        timings["stream + faults"] = time.monotonic() - t
        if driver.error:
            raise driver.error
        if injector.error:
            raise injector.error
        rep.check(driver.unacked == 0, f"{driver.unacked} inputs never acknowledged by Kafka")

        t = time.monotonic()
        snap, took = wait_settled(infra, services, timeout=cfg.settle_timeout)
        timings["settle"] = took
        if st.requests:  # the other half of the requests and a round over the settled pool
            rounds.post_requests(st.requests[half:])
            rounds.run_one("after settling")
            wait_settled(infra, services, timeout=cfg.settle_timeout)
        st.accepted_requests[:] = rounds.accepted
        if rounds.refused:
            rep.notes.append(f"quota requests refused at the door: {dict(rounds.refused)}")
        rep.counts["quota requests posted over HTTP"] = len(rounds.accepted)
        t = time.monotonic()
        check_all(infra, services, st, rep)
        if st.requests:
            check_demand(infra, services, st, rep, rounds)
        if cfg.statements:
            check_statements(infra, services, rep, kill_during_finalize=cfg.kill_during_finalize)
            check_every_statement(infra, rep, {"2025", draft_next_year(services, rep, closed="2025")})
            wait_quiet(infra, services, "ledger")
            # after finalization's money moved: sums still zero, chain still verifies, balances still add up
            post = Report()
            check_sums_and_chain(infra, services, post)
            check_balances_rebuilt(infra, post)
            rep.failures += [f"after finalization: {f}" for f in post.failures]
            for name, n in post.checked.items():
                rep.effects(f"{name} (after finalization)", n)
        timings["checks"] = time.monotonic() - t

        rep.counts = {
            "inputs sent": len(st.inputs),
            "inputs by kind": st.count(),
            "setup inputs": len(st.setup),
            "duplicates sent on purpose": driver.dup_sent,
            "re-sent after a failed send": driver.resent,
            "send errors": dict(driver.send_errors),
            "county actions (requests, rounds)": [r for r in rounds.log],
            "faults injected": len(faults),
            "faults by kind": dict(Counter(f.kind for f in faults)),
            "service starts": dict(services.starts),
            "unexpected service exits": list(services.unexpected_exits),
            "setup and demand": dict(rep.counts),
            "effects checked": dict(rep.checked),
            "effects checked (total)": sum(rep.checked.values()),
        }
        rep.counts["faults"] = [dict(at=f.started, kind=f.kind, target=f.target, param=round(f.param, 2), took=f.took, note=f.note)
                                for f in faults]
        rep.counts["probes"] = injector.probes
        for p in injector.probes:
            rep.check(p["status"] in (200, 503) and p["seconds"] < 30, f"probe failed: {p}")
        findings = {}
        for name, c in services.log_findings().items():
            kafka = sum(v for k, v in c.items() if "kafka client" in k)
            other = dict(sorted(((k, v) for k, v in c.items() if "kafka client" not in k), key=lambda kv: -kv[1]))
            findings[name] = {**({"kafka client warnings/errors (broker away)": kafka} if kafka else {}), **other}
        rep.counts["log findings"] = findings
        rep.check(not services.unexpected_exits, f"services exited on their own: {services.unexpected_exits}")
    finally:
        kafka_log.setLevel(kafka_level)
        timings["total"] = time.monotonic() - t_all
        rep.counts["durations (s)"] = {k: round(v, 1) for k, v in timings.items()}
        if services is not None:
            services.stop(fast=True)
        infra.stop(fast=True)
        rep.counts["infra log"] = infra.log[-40:]
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(dict(config=cfg.__dict__, failures=rep.failures, notes=rep.notes, **rep.counts),
                                      indent=2, ensure_ascii=False, default=str))
    print_report(cfg, rep)
    return rep


def check_sums_and_chain(infra: Infra, services: Services, rep: Report) -> None:
    table = sql(infra, "ledger", "SELECT asset, sum(credits_posted - debits_posted), sum(credits_pending - debits_pending) "
                                 "FROM accounts GROUP BY asset")
    rep.check(all(r[1] == 0 and r[2] == 0 for r in table), f"per-asset sums not zero: {table}")
    # counted first: the verification must cover every row there was (none missing below the head) and end at the head
    rows = sql(infra, "ledger", "SELECT count(*), coalesce(max(seq), 0) FROM journal")[0]
    st, ver = http_json("GET", f"{services.url('ledger')}/v1/journal/verify", timeout=120)
    rep.check(st == 200 and ver.get("ok") is True and rows[0] == rows[1] and ver.get("head_seq") == ver.get("checked")
              and ver.get("checked", 0) >= rows[1], f"journal verify: {st} {ver}; the journal had {rows[0]} rows up to "
                                                    f"seq {rows[1]} before it")


def print_report(cfg: RunConfig, rep: Report) -> None:
    c = rep.counts
    lines = [f"== fault run '{cfg.name}' =="]
    for k in ("inputs sent", "inputs by kind", "setup inputs", "duplicates sent on purpose", "re-sent after a failed send",
              "send errors", "faults injected", "faults by kind", "service starts", "unexpected service exits",
              "effects checked (total)"):
        if k in c:
            lines.append(f"  {k:<30} {c[k]}")
    for k, v in (c.get("effects checked") or {}).items():
        lines.append(f"    {k:<60} {v}")
    if c.get("setup and demand"):
        lines.append(f"  setup and demand (not checks)  {json.dumps(c['setup and demand'], ensure_ascii=False)}")
    for f in c.get("faults", []):
        lines.append(f"    fault {f['kind']:<16} {f['target']:<11} at {f['at'] or 0:6.1f}s took {f['took']}s {f['note']}")
    for p in c.get("probes", []):
        lines.append(f"    probe: {p}")
    lines.append(f"  durations (s)                  {c.get('durations (s)')}")
    if c.get("log findings"):
        lines.append(f"  log findings                   {json.dumps(c['log findings'], ensure_ascii=False)[:1500]}")
    for n in rep.notes:
        lines.append(f"  note: {n}")
    lines.append(f"  FAILURES ({len(rep.failures)}):" if rep.failures else "  all checks passed")
    lines += [f"    - {f}" for f in rep.failures]
    print("\n".join(lines), flush=True)
