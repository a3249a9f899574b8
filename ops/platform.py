"""Start the whole platform on this machine: Apache Kafka (unless one is already reachable or
KAFKA_BOOTSTRAP_SERVERS points elsewhere) and the four services as separate processes.

``python -m ops.platform run`` prints the URLs and stops everything cleanly on Ctrl-C (SIGINT/SIGTERM).
Data lives under COUNTYPOOL_DATA_DIR (default ./.data) and survives a restart. ``Platform`` is the same
thing as a class, used by the demo and the fault tests (which also kill and restart single services).
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
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"


class Platform:
    def __init__(self, data_dir: Path | None = None, env: dict | None = None, services: list[str] | None = None):
        base = dict(os.environ, **(env or {}))
        self.data_dir = Path(data_dir or base.get("COUNTYPOOL_DATA_DIR", ROOT / ".data")).resolve()
        self.bootstrap = base.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        base.update(COUNTYPOOL_DATA_DIR=str(self.data_dir), KAFKA_BOOTSTRAP_SERVERS=self.bootstrap)
        base.setdefault("COUNTYPOOL_AUTH_TOKENS_FILE", str(DEV_TOKENS))
        base.setdefault("KAFKA_DATA_DIR", str(self.data_dir / "kafka"))
        self.env = base
        self.services = services or SERVICES
        # quota reconciles against the ledger's balances: where the ledger is, and a token that may read it
        self.env.setdefault("COUNTYPOOL_QUOTA_LEDGER_URL", self.url("ledger"))
        self.env.setdefault("COUNTYPOOL_QUOTA_LEDGER_TOKEN", "dev-finance-token")
        self.procs: dict[str, subprocess.Popen] = {}
        self.started_kafka = False

    def port(self, service: str) -> int:
        return int(self.env.get(f"COUNTYPOOL_{service.upper()}_PORT", DEFAULT_PORTS[service]))

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port(service)}"

    # -- kafka -------------------------------------------------------------------------------------
    def ensure_kafka(self) -> None:
        if KafkaProbe(self.bootstrap, ttl=0).reachable():
            return
        host, _, port = self.bootstrap.split(",")[0].rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not port.isdigit():
            raise RuntimeError(f"Kafka at {self.bootstrap} is not reachable")
        # the local broker listens where KAFKA_BOOTSTRAP_SERVERS says: kafka.sh took KAFKA_PORT (9092 from make),
        # found the broker there and said nothing, and the services were left pointing at nothing
        env = dict(self.env, KAFKA_PORT=port)
        if port != self.env.get("KAFKA_PORT", "9092"):
            env.setdefault("KAFKA_CONTROLLER_PORT", str(int(port) + 1))
        subprocess.run([str(KAFKA_SH), "start"], check=True, env=env)
        self.started_kafka = True
        self.env = env  # to stop the same broker
        if not KafkaProbe(self.bootstrap, ttl=0).reachable():
            raise RuntimeError(f"Kafka at {self.bootstrap} is not reachable after kafka.sh start")

    # -- services ----------------------------------------------------------------------------------
    def start(self, service: str) -> subprocess.Popen:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / f"{service}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", f"services.{service}.main"], cwd=ROOT, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[service] = proc
        return proc

    def wait_healthy(self, service: str, timeout: float = 90) -> None:
        url = f"{self.url(service)}/healthz"
        proc = self.procs[service]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{service} exited with code {proc.returncode} (see {service}.log in {self.data_dir})")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{service} did not answer {url} within {timeout:.0f}s")

    def start_all(self) -> None:
        self.ensure_kafka()
        for s in self.services:
            self.start(s)
        for s in self.services:
            self.wait_healthy(s)

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.get(service)
        if proc and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=30)

    def restart(self, service: str) -> None:
        self.kill(service, signal.SIGTERM)
        self.start(service)
        self.wait_healthy(service)

    def dead(self) -> list[str]:
        return [s for s, p in self.procs.items() if p.poll() is not None]

    def stop(self, stop_kafka: bool = True) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.started_kafka and stop_kafka:
            subprocess.run([str(KAFKA_SH), "stop"], env=self.env)

    def banner(self) -> str:
        lines = ["CountyPool is running:", f"  kafka       {self.bootstrap}"]
        lines += [f"  {s:<11} {self.url(s)}  (docs /docs, metrics /metrics, health /healthz)" for s in self.services]
        lines += [f"  data        {self.data_dir}  (logs: <service>.log)",
                  f"  dev tokens  {self.env['COUNTYPOOL_AUTH_TOKENS_FILE']}"]
        return "\n".join(lines)


def run(stop_kafka_on_exit: bool = True) -> int:
    platform = Platform()
    stopping = False

    def shutdown(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    code = 0
    try:
        platform.start_all()
        print(platform.banner())
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping:
            dead = platform.dead()
            if dead:
                print(f"{', '.join(dead)} exited; stopping", file=sys.stderr)
                code = 1
                break
            time.sleep(0.3)
    except Exception as exc:  # noqa: BLE001
        print(f"start-up failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        platform.stop(stop_kafka=stop_kafka_on_exit)
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
