"""Start the whole platform on this machine: Apache Kafka (unless one is already reachable or
KAFKA_BOOTSTRAP_SERVERS points elsewhere) and the four services as separate processes.

``python -m ops.platform run`` prints the URLs and stops everything cleanly on Ctrl-C (SIGINT/SIGTERM).
Data lives under COUNTYPOOL_DATA_DIR (default ./.data) and survives a restart.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from shared.kafka_admin import KafkaProbe
from shared.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ["ledger", "quota", "settlement", "assessment"]
DEV_TOKENS = ROOT / "deploy" / "dev-tokens.json"


def _port(service: str) -> int:
    return int(os.environ.get(f"COUNTYPOOL_{service.upper()}_PORT", DEFAULT_PORTS[service]))


def _wait_healthy(service: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    url = f"http://127.0.0.1:{_port(service)}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{service} exited with code {proc.returncode} (see {service}.log in the data dir)")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{service} did not answer {url} within {timeout:.0f}s")


def run(stop_kafka_on_exit: bool = True) -> int:
    data_dir = Path(os.environ.get("COUNTYPOOL_DATA_DIR", ROOT / ".data")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    env = dict(os.environ, COUNTYPOOL_DATA_DIR=str(data_dir), KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    env.setdefault("COUNTYPOOL_AUTH_TOKENS_FILE", str(DEV_TOKENS))
    env.setdefault("KAFKA_DATA_DIR", str(data_dir / "kafka"))

    started_kafka = False
    if not KafkaProbe(bootstrap, ttl=0).reachable():
        if bootstrap not in ("127.0.0.1:9092", "localhost:9092"):
            print(f"Kafka at {bootstrap} is not reachable", file=sys.stderr)
            return 1
        subprocess.run([str(ROOT / "deploy" / "kafka" / "kafka.sh"), "start"], check=True, env=env)
        started_kafka = True

    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def shutdown(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    code = 0
    try:
        for s in SERVICES:
            log = open(data_dir / f"{s}.log", "ab")
            procs[s] = subprocess.Popen([sys.executable, "-m", f"services.{s}.main"], cwd=ROOT, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for s in SERVICES:
            _wait_healthy(s, procs[s])
        print("CountyPool is running:")
        print(f"  kafka       {bootstrap}")
        for s in SERVICES:
            print(f"  {s:<11} http://127.0.0.1:{_port(s)}  (docs /docs, metrics /metrics, health /healthz)")
        print(f"  data        {data_dir}  (logs: <service>.log)")
        print(f"  dev tokens  {env['COUNTYPOOL_AUTH_TOKENS_FILE']}")
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping:
            for s, p in procs.items():
                if p.poll() is not None:
                    print(f"{s} exited with code {p.returncode}; stopping", file=sys.stderr)
                    code = 1
                    stopping = True
            time.sleep(0.3)
    except Exception as exc:  # noqa: BLE001
        print(f"start-up failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for s, p in procs.items():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if started_kafka and stop_kafka_on_exit:
            subprocess.run([str(ROOT / "deploy" / "kafka" / "kafka.sh"), "stop"], env=env)
        print("stopped.", flush=True)
    return code


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m ops.platform")
    ap.add_argument("command", choices=["run"])
    ap.add_argument("--keep-kafka", action="store_true", help="leave a Kafka broker we started running on exit")
    args = ap.parse_args()
    sys.exit(run(stop_kafka_on_exit=not args.keep_kafka))


if __name__ == "__main__":
    main()
