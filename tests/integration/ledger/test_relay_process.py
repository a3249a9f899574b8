"""The ledger served as in production: its outbox relay runs in a child process. Outcome events reach Kafka,
the service's own /metrics still counts them, and the child never outlives the service (not even a
SIGKILL of it); Ctrl-C on the whole process group stops both cleanly."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from shared.contracts import topics
from tests.support.machinery import read_all
from tests.support.services import ADMIN, TOKENS, wait_for

ROOT = Path(__file__).resolve().parents[3]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.update(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:  # a thread that ended since the listing
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and 'service="ledger"' in line)


@pytest.fixture
def served(db_url, kafka_bootstrap, tmp_path):
    port = _port()
    env = dict(os.environ, COUNTYPOOL_LEDGER_DATABASE_URL=db_url, COUNTYPOOL_LEDGER_PORT=str(port),
               KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, COUNTYPOOL_AUTH_TOKENS_FILE=str(TOKENS),
               COUNTYPOOL_LEDGER_CONSUMER_ENABLED="false", COUNTYPOOL_DATA_DIR=str(tmp_path))
    log = open(tmp_path / "ledger.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "services.ledger.main"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is None and _up(base), timeout=90, what="the ledger answering")
        yield proc, base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_events_are_published_by_the_relay_process_and_counted_by_the_service(served, kafka_bootstrap):
    proc, base = served
    relay = wait_for(lambda: [c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()],
                     what="the relay process")
    tag = uuid.uuid4().hex[:8]
    county = f"{uuid.uuid4().int % 900000 + 100000}"
    pool, mint = f"county:{county}/pool/COD", "external:rights-register/COD"
    with httpx.Client(base_url=base, headers=ADMIN, timeout=30) as c:
        r = c.post("/v1/accounts", json={"accounts": [
            {"account_id": mint, "asset": "COD", "address": "external:rights-register"},
            {"account_id": pool, "asset": "COD", "address": f"county:{county}/pool"}]})
        assert r.json()["ok"], r.text
        ids = [f"rp-{tag}-{i}" for i in range(3)]
        r = c.post("/v1/transfers", json={"transfers": [
            {"transfer_id": t, "debit_account": mint, "credit_account": pool, "asset": "COD", "amount": "1.5",
             "code": "test"} for t in ids]})
        assert r.json()["ok"], r.text
        wait_for(lambda: _metric(c.get("/metrics").text, "countypool_events_published_total") >= 5
                 and _metric(c.get("/metrics").text, "countypool_outbox_backlog") == 0,
                 what="the relay process's counts in the service's metrics")
    records = read_all(kafka_bootstrap, topics.LEDGER_EVENTS, expect=10**9, timeout=60,
                       until=lambda rs: set(ids) <= {r.key.decode() for r in rs if r.key})
    posted = [json.loads(r.value) for r in records if r.key and r.key.decode() in ids]
    assert sorted(e["subject"] for e in posted) == ids and {e["type"] for e in posted} == {"countypool.TransferPosted.v1"}
    assert _alive(relay[0])


@pytest.mark.slow
def test_the_relay_process_does_not_outlive_a_killed_service(served):
    proc, _ = served
    relay = wait_for(lambda: list(_children(proc.pid)), what="the relay process")
    proc.kill()  # SIGKILL: no clean-up code of the service runs
    proc.wait(10)
    wait_for(lambda: not any(_alive(p) for p in relay), timeout=15, what="the relay process exiting")


@pytest.mark.slow
def test_ctrl_c_on_the_process_group_stops_service_and_relay(served):
    proc, _ = served
    relay = wait_for(lambda: list(_children(proc.pid)), what="the relay process")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(30) in (0, -signal.SIGINT, 130)
    wait_for(lambda: not any(_alive(p) for p in relay), timeout=15, what="the relay process exiting")
