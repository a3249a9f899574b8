"""The platform for a demo: ``ops.platform.Platform`` on a fresh throw-away data directory (and, with
DATABASE_URL, fresh PostgreSQL databases), each service in a consumer group of its own that starts at the current
end of its topics (COUNTYPOOL_<SERVICE>_GROUP_ID), and ways to tell when everything has settled."""
from __future__ import annotations

import re
import shutil
import time
import urllib.request
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from ops.platform import SERVICES, Platform
from shared.contracts import topics as T
from shared.kafka_admin import ensure_topics
from shared.kafka_security import kafka_python_options

# What each service consumes (services/*/main.py).
CONSUMES = {
    "ledger": [T.LEDGER_COMMANDS],
    "quota": [T.INTAKE_QUOTA, T.ASSESSMENT_EVENTS, T.LEDGER_EVENTS],
    "settlement": [T.INTAKE_SETTLEMENT, T.QUOTA_EVENTS, T.ASSESSMENT_EVENTS, T.LEDGER_EVENTS],
    "assessment": [T.INTAKE_ASSESSMENT],
}
_METRIC = re.compile(r'^(countypool_[a-z_]+)(?:\{([^}]*)\})? ([-+0-9.eE]+|NaN)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class DemoPlatform(Platform):
    """``Platform`` whose services each join a consumer group of this demo run."""

    def __init__(self, data_dir: Path, env: dict | None = None, run_id: str | None = None):
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.group_suffix = f"demo-{self.run_id}"
        env = dict(env or {})
        for service in SERVICES:
            env[f"COUNTYPOOL_{service.upper()}_GROUP_ID"] = self.group(service)
        super().__init__(data_dir=data_dir, env=env)
        self.env.setdefault("COUNTYPOOL_LOG_JSON", "true")
        self.databases: list[str] = []  # PostgreSQL databases this demo made (dropped unless kept)

    def group(self, service: str) -> str:
        return f"countypool-{service}-{self.group_suffix}"


    def start_all(self) -> None:
        self.ensure_kafka()
        self.position_groups()
        for s in self.services:
            self.start(s)
        for s in self.services:
            self.wait_healthy(s, timeout=120)

    # -- kafka -------------------------------------------------------------------------------------
    def position_groups(self) -> None:
        """Commit each of our groups' offsets at the current end of its topics: the services (whose databases
        hold no positions yet) then resume there, and see only what this demo publishes."""
        ensure_topics(self.bootstrap)
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="countypool-demo", **kafka_python_options())
        probe = KafkaConsumer(bootstrap_servers=self.bootstrap, **kafka_python_options())
        try:
            for service in self.services:
                tps = [TopicPartition(t, p) for t in CONSUMES[service] for p in sorted(probe.partitions_for_topic(t) or ())]
                ends = probe.end_offsets(tps)
                result = admin.alter_group_offsets(self.group(service), {
                    tp: OffsetAndMetadata(off, "", -1) for tp, off in ends.items()})
                bad = {tp: err for tp, err in result.items() if getattr(err, "errno", 0)}
                if bad:
                    raise RuntimeError(f"could not position {self.group(service)}: {bad}")
        finally:
            probe.close()
            admin.close()

    def delete_groups(self) -> None:
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="countypool-demo", **kafka_python_options())
            try:
                admin.delete_groups([self.group(s) for s in self.services])
            finally:
                admin.close()
        except Exception:  # noqa: BLE001 - only tidiness: Kafka expires empty groups anyway
            pass

    # -- databases ---------------------------------------------------------------------------------
    def drop_databases(self) -> None:
        url = self.env.get("DATABASE_URL")
        if not url or not self.databases:
            return
        admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as c:
                for name in self.databases:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.dispose()

    def database_url(self, service: str) -> str:
        """The service's own database URL, as the service resolves it (shared/settings.py)."""
        own = self.env.get(f"COUNTYPOOL_{service.upper()}_DATABASE_URL")
        if own:
            return own
        shared = self.env.get("DATABASE_URL")
        if shared:
            u = make_url(shared)
            return u.set(database=f"{u.database}_{service}").render_as_string(hide_password=False)
        return f"sqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"

    # -- observing ---------------------------------------------------------------------------------
    def metrics(self, service: str) -> list[tuple[str, dict, float]]:
        with urllib.request.urlopen(f"{self.url(service)}/metrics", timeout=30) as r:
            text = r.read().decode()
        out = []
        for line in text.splitlines():
            m = _METRIC.match(line)
            if m:
                out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
        return out

    def group_lag(self, consumer: KafkaConsumer, admin: KafkaAdminClient) -> dict[str, int]:
        """Messages not yet applied (committed) by each of our groups, from Kafka's own offsets."""
        out = {}
        for service in self.services:
            tps = [TopicPartition(t, p) for t in CONSUMES[service] for p in sorted(consumer.partitions_for_topic(t) or ())]
            ends = consumer.end_offsets(tps)
            committed = admin.list_group_offsets({self.group(service): tps}).get(self.group(service), {})
            lag = 0
            for tp in tps:
                meta = committed.get(tp)
                lag += max(0, ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0))
            out[service] = lag
        return out


def fresh_database_url(url: str | None, run_id: str) -> str | None:
    """DATABASE_URL for a throw-away demo: the same server, database names of this run only
    (``<db>_demo<run>`` -> each service ``<db>_demo<run>_<service>``). SQLite URLs are not used (one file
    for four services would mix their tables): the services then keep their embedded default."""
    if not url:
        return None
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return None
    return u.set(database=f"{u.database}_demo{run_id}").render_as_string(hide_password=False)


def remove_data_dir(path: Path) -> None:
    for _ in range(3):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.5)


def clean_service_env(env: dict) -> list[str]:
    """Per-service database URLs point at databases that are not throw-away: a demo does not use them."""
    dropped = [k for k in env if re.fullmatch(r"COUNTYPOOL_(LEDGER|QUOTA|SETTLEMENT|ASSESSMENT)_DATABASE_URL", k)]
    for k in dropped:
        env.pop(k)
    return dropped

