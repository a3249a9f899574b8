"""A private Kafka broker, a private PostgreSQL server and the four services, for fault runs.

Everything here runs on its own ports and data directories (never the shared 9092 / 55432 that other tests
and engineers use), because a fault run stops and restarts the broker and the database server. The broker
and the server are the project's own scripts (deploy/kafka/kafka.sh, deploy/postgres/postgres.sh) with
KAFKA_PORT / KAFKA_CONTROLLER_PORT / KAFKA_DATA_DIR and PG_PORT / PG_DATA_DIR; the services are separate
processes started by ops.platform.Platform.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ops.platform import Platform

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
PG_SH = ROOT / "deploy" / "postgres" / "postgres.sh"
DEV_TOKENS = ROOT / "deploy" / "dev-tokens.json"
SERVICES = ("ledger", "quota", "settlement", "assessment")
ADMIN = {"Authorization": "Bearer dev-admin-token"}

DEFAULT_KAFKA_PORT = 29192
DEFAULT_CONTROLLER_PORT = 29193
DEFAULT_PG_PORT = 55532


class MissingPrerequisite(RuntimeError):
    """Something the fault run needs is not on this machine (a JDK, PostgreSQL's binaries, a free port)."""


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_prerequisites(kafka_port: int, controller_port: int, pg_port: int) -> None:
    """Raise MissingPrerequisite naming what is missing (the test fails in CI, skips elsewhere)."""
    problems = []
    java = os.environ.get("JAVA_HOME") and Path(os.environ["JAVA_HOME"], "bin", "java")
    if not (java and java.exists()) and not shutil.which("java"):
        problems.append("no java (a JDK 17+ runs the Kafka broker)")
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        problems.append("no PostgreSQL server binaries under /usr/lib/postgresql (Debian package postgresql)")
    for name, port in (("Kafka", kafka_port), ("Kafka controller", controller_port), ("PostgreSQL", pg_port)):
        if not port_free(port):
            problems.append(f"port {port} for the private {name} is in use")
    if problems:
        raise MissingPrerequisite("; ".join(problems))


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@dataclass
class Infra:
    """The private broker and database server of one run, under ``workdir``."""

    workdir: Path
    kafka_port: int = DEFAULT_KAFKA_PORT
    controller_port: int = DEFAULT_CONTROLLER_PORT
    pg_port: int = DEFAULT_PG_PORT
    log: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://countypool:countypool@127.0.0.1:{self.pg_port}/countypool"

    def service_db_url(self, service: str) -> str:
        return f"{self.database_url}_{service}"

    def kafka_env(self) -> dict[str, str]:
        return dict(os.environ, KAFKA_PORT=str(self.kafka_port), KAFKA_CONTROLLER_PORT=str(self.controller_port),
                    KAFKA_DATA_DIR=str(self.workdir / "kafka"), KAFKA_HEAP_OPTS="-Xmx384m -Xms192m",
                    KAFKA_READY_TIMEOUT="120")

    def pg_env(self) -> dict[str, str]:
        return dict(os.environ, PG_PORT=str(self.pg_port), PG_DATA_DIR=str(self.workdir / "postgres"),
                    PG_DATABASES=" ".join(f"countypool_{s}" for s in SERVICES), PG_STOP_TIMEOUT="30")

    def _run(self, script: Path, cmd: str, env: dict, timeout: float = 180) -> None:
        t0 = time.monotonic()
        r = subprocess.run([str(script), cmd], env=env, capture_output=True, text=True, timeout=timeout)
        self.log.append(f"{script.name} {cmd}: rc={r.returncode} in {time.monotonic() - t0:.1f}s")
        if r.returncode != 0:
            raise RuntimeError(f"{script.name} {cmd} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")

    # -- Kafka ---------------------------------------------------------------------------------------
    def start_kafka(self) -> None:
        self._run(KAFKA_SH, "start", self.kafka_env())

    def stop_kafka(self) -> None:
        self._run(KAFKA_SH, "stop", self.kafka_env())

    def kafka_pid(self) -> int | None:
        try:
            return int((self.workdir / "kafka" / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill_kafka(self) -> None:
        """An unclean broker stop: SIGKILL, no controlled shutdown."""
        pid = self.kafka_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        self.log.append(f"kafka SIGKILL pid {pid}")

    # -- PostgreSQL ----------------------------------------------------------------------------------
    def start_pg(self) -> None:
        self._run(PG_SH, "start", self.pg_env())

    def stop_pg(self) -> None:
        self._run(PG_SH, "stop", self.pg_env())

    def restart_pg(self) -> None:
        self._run(PG_SH, "restart", self.pg_env())

    def crash_pg(self) -> None:
        """An immediate shutdown (no checkpoint: crash recovery at the next start), then start."""
        pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
        cmd = [pg_ctl, "-D", str(self.workdir / "postgres"), "-m", "immediate", "-w", "-s", "stop"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd="/", timeout=60)
        self.log.append(f"pg_ctl stop -m immediate: rc={r.returncode} in {time.monotonic() - t0:.1f}s {r.stderr[-300:]}")
        self.start_pg()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_pg()
        self.start_kafka()

    def stop(self, fast: bool = False) -> None:
        """Stop both; ``fast``: SIGKILL the broker and an immediate PostgreSQL shutdown (the data is thrown away)."""
        if fast:
            try:
                self.kill_kafka()
                pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
                cmd = [pg_ctl, "-D", str(self.workdir / "postgres"), "-m", "immediate", "-w", "-s", "stop"]
                if os.geteuid() == 0:
                    cmd = ["runuser", "-u", "postgres", "--"] + cmd
                subprocess.run(cmd, capture_output=True, cwd="/", timeout=60)
            except Exception as exc:  # noqa: BLE001 - fall back to the scripts
                self.log.append(f"fast teardown: {exc}")
        for fn in (self.stop_kafka, self.stop_pg):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - tear down as much as we can
                self.log.append(f"teardown: {exc}")
        if (pid := self.kafka_pid()) is not None:  # a broker that ignored SIGTERM
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def make_workdir(prefix: str = "countypool-faults-") -> Path:
    """A directory the `postgres` system user can reach (pytest's tmp dirs are 0700 under root)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else None))
    d.chmod(0o755)
    return d


class Services:
    """The four services as separate processes (ops.platform.Platform) on the private broker and server."""

    def __init__(self, infra: Infra, workdir: Path, ports: dict[str, int] | None = None, extra_env: dict | None = None,
                 names: list[str] | None = None):
        self.infra = infra
        self.names = list(names or SERVICES)
        self.ports = ports or {s: free_port() for s in SERVICES}
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
            "KAFKA_PORT": str(infra.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(infra.controller_port),
            "KAFKA_DATA_DIR": str(infra.workdir / "kafka"),
            "DATABASE_URL": infra.database_url,
            "COUNTYPOOL_AUTH_TOKENS_FILE": str(DEV_TOKENS),
            "COUNTYPOOL_QUOTA_LEDGER_URL": f"http://127.0.0.1:{self.ports['ledger']}",
            "COUNTYPOOL_QUOTA_LEDGER_TOKEN": "dev-admin-token",
            # the fault stream's direct ledger commands come from /countypool/faults (the ledger's allow-list)
            "COUNTYPOOL_LEDGER_COMMAND_SOURCES": json.dumps(["/countypool/quota", "/countypool/settlement",
                                                             "/countypool/faults"]),
            "PYTHONUNBUFFERED": "1",
        }
        for s in SERVICES:
            env[f"COUNTYPOOL_{s.upper()}_PORT"] = str(self.ports[s])
            # explicit, so that a per-service URL in the caller's environment cannot point at the shared server
            env[f"COUNTYPOOL_{s.upper()}_DATABASE_URL"] = infra.service_db_url(s)
        env.update(extra_env or {})
        self.data_dir = workdir / "services"
        self.platform = Platform(data_dir=self.data_dir, env=env, services=self.names)
        self.starts = {s: 0 for s in self.names}
        self.unexpected_exits: list[str] = []

    def url(self, service: str) -> str:
        return self.platform.url(service)

    def pid(self, service: str) -> int | None:
        p = self.platform.procs.get(service)
        return p.pid if p and p.poll() is None else None

    def start_all(self, timeout: float = 120) -> None:
        for s in self.names:
            self.platform.start(s)
            self.starts[s] += 1
        for s in self.names:
            self.platform.wait_healthy(s, timeout=timeout)

    def rss_kb(self) -> dict[str, int]:
        """Resident memory of each running service process, from /proc (kB)."""
        out = {}
        for s in self.names:
            pid = self.pid(s)
            try:
                with open(f"/proc/{pid}/status") as f:
                    out[s] = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            except (OSError, StopIteration, TypeError):
                out[s] = None
        return out

    def threads(self) -> dict[str, int]:
        out = {}
        for s in self.names:
            pid = self.pid(s)
            try:
                with open(f"/proc/{pid}/status") as f:
                    out[s] = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
            except (OSError, StopIteration, TypeError):
                out[s] = None
        return out

    def start(self, service: str, timeout: float = 120) -> None:
        """Start (again) like a supervisor would: a start that exits at once (its database or broker away
        for a moment) is retried until healthy or ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            self.platform.start(service)
            self.starts[service] += 1
            try:
                self.platform.wait_healthy(service, timeout=max(5.0, deadline - time.monotonic()))
                return
            except RuntimeError as exc:
                last = exc
                self.platform.kill(service, signal.SIGKILL)
                time.sleep(1.0)
        raise RuntimeError(f"{service} did not come back within {timeout:.0f}s: {last}\n{self.log_tail(service)}")

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        self.platform.kill(service, sig)

    def signal(self, service: str, sig: int) -> None:
        p = self.platform.procs[service]
        if p.poll() is None:
            os.kill(p.pid, sig)

    def dead(self) -> list[str]:
        return self.platform.dead()

    def revive_dead(self) -> list[str]:
        """Services that exited on their own (not killed by us) are a finding: record and restart them."""
        dead = self.dead()
        for s in dead:
            self.unexpected_exits.append(f"{s} exited with {self.platform.procs[s].returncode}")
            self.start(s)
        return dead

    def stop(self, fast: bool = False) -> None:
        """SIGTERM and wait (``fast``: SIGKILL, for a run whose data is thrown away)."""
        for s, p in self.platform.procs.items():
            if p.poll() is None:
                try:  # SIGCONT first: a service left stopped by the slow-ledger fault would not see SIGTERM
                    os.kill(p.pid, signal.SIGKILL if fast else signal.SIGCONT)
                except ProcessLookupError:
                    pass
        if fast:
            for p in self.platform.procs.values():
                p.wait(timeout=30)
        self.platform.stop(stop_kafka=False)

    def log_path(self, service: str) -> Path:
        return self.data_dir / f"{service}.log"

    def log_tail(self, service: str, n: int = 40) -> str:
        return _tail(self.log_path(service), n)

    def log_findings(self) -> dict[str, dict[str, int]]:
        """WARNING/ERROR lines and tracebacks per service log, grouped by logger and normalised message
        (digits folded); the Kafka client's own connection errors while the broker is away are one group."""
        import json

        out: dict[str, dict[str, int]] = {}
        for s in self.names:
            counts: dict[str, int] = {}
            try:
                lines = self.log_path(s).read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                key = None
                if line.startswith("{"):
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue
                    if doc.get("level") not in ("WARNING", "ERROR", "CRITICAL"):
                        continue
                    logger = doc.get("logger", "")
                    if logger.startswith("kafka."):
                        key = f"{doc['level']} kafka client ({logger})"
                    else:
                        key = f"{doc['level']} {logger}: " + re.sub(r"\d+", "N", str(doc.get("msg", "")))[:140]
                elif line.startswith("Traceback") or re.match(r"^\w+(\.\w+)*(Error|Exception):", line):
                    key = "traceback: " + re.sub(r"\d+", "N", line)[:140]
                if key:
                    counts[key] = counts.get(key, 0) + 1
            out[s] = counts
        return out


def http_json(method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 30):
    """(status, parsed JSON or text) — stdlib only, so a stalled server shows as a timeout, not a hang."""
    import json

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={**ADMIN, "content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read().decode(errors="replace"), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def metrics(url: str, timeout: float = 5) -> dict[tuple[str, tuple], float]:
    """Prometheus text of one service -> {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    out: dict[tuple[str, tuple], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(3) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            continue
    return out
