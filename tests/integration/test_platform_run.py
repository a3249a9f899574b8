"""`make run` brings up all four services, each answering /healthz, /readyz and /metrics, and stops cleanly."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["ledger", "quota", "settlement", "assessment"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.slow
def test_make_run_starts_all_services_and_stops_on_ctrl_c(tmp_path, kafka_bootstrap):
    ports = {s: _free_port() for s in SERVICES}
    env = dict(os.environ, COUNTYPOOL_DATA_DIR=str(tmp_path), KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    env.pop("DATABASE_URL", None)
    for s, p in ports.items():
        env[f"COUNTYPOOL_{s.upper()}_PORT"] = str(p)
    proc = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    out = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            out.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(out)
        assert "Press Ctrl-C" in text, text
        for s, p in ports.items():
            assert f"http://127.0.0.1:{p}" in text
            assert _get(f"http://127.0.0.1:{p}/healthz") == (200, f'{{"status":"ok","service":"{s}"}}')
            status, metrics = _get(f"http://127.0.0.1:{p}/metrics")
            assert status == 200 and "countypool_outbox_backlog" in metrics
            deadline = time.monotonic() + 30
            while _get(f"http://127.0.0.1:{p}/readyz")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _get(f"http://127.0.0.1:{p}/readyz")[0] == 200
            assert (tmp_path / f"{s}.sqlite3").exists(), "embedded default: one SQLite file per service"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    # make itself receives the SIGINT too (as with Ctrl-C in a terminal); the platform must still stop cleanly
    assert proc.returncode in (0, -signal.SIGINT, 2, 130), "".join(out) + rest
    assert "stopped." in rest
    for p in ports.values():
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", p), timeout=1).close()


@pytest.mark.slow
def test_make_run_starts_its_broker_where_the_local_bootstrap_names_it(tmp_path, kafka_bootstrap):
    """KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<another port> with nothing there: kafka.sh started on KAFKA_PORT (9092 from
    make), found the broker there, and the platform said it was running against a port where nothing answered."""
    from ops.platform import KAFKA_SH, Platform
    from shared.kafka_admin import KafkaProbe

    port = _free_port()
    platform = Platform(data_dir=tmp_path, env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "KAFKA_PORT": "9092",
                                                "KAFKA_CONTROLLER_PORT": str(_free_port())})
    try:
        platform.ensure_kafka()
        assert platform.started_kafka and KafkaProbe(f"127.0.0.1:{port}", ttl=0).reachable()
        assert KafkaProbe(kafka_bootstrap, ttl=0).reachable()  # the broker already running is not the one started
    finally:
        if platform.started_kafka:
            subprocess.run([str(KAFKA_SH), "stop"], env=platform.env, check=False)
    assert not KafkaProbe(f"127.0.0.1:{port}", ttl=0).reachable()
    assert KafkaProbe(kafka_bootstrap, ttl=0).reachable()
