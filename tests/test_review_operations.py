"""Review of the operator's path: what README.md tells an engineer to set works as written.

Settings named in the README exist (and every setting a service reads is documented); the manifests set only
settings that exist; every Kafka client gets the same login; a PostgreSQL URL with TLS parameters and a password
with special characters works through migrations, the relay's child process and the CLI; a wrong value gives an
error naming its variable; alert rules use labels the metrics really carry.
"""
from __future__ import annotations

import importlib
import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from shared.settings import DEFAULT_PORTS, ServiceSettings, load_settings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("ledger", "quota", "settlement", "assessment")
TOKENS = ROOT / "deploy" / "dev-tokens.json"
KAFKA_VARS = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
              "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")
# Deployment-wide variables the README names, and the field each fills
DEPLOYMENT_WIDE = {"KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers", "DATABASE_URL": "database_url",
                   "COUNTYPOOL_DATA_DIR": "data_dir", "COUNTYPOOL_AUTH_TOKENS_FILE": "auth_tokens_file",
                   "COUNTYPOOL_AUTH_JWT_SECRET": "auth_jwt_secret", "COUNTYPOOL_AUTH_JWT_AUDIENCE": "auth_jwt_audience",
                   "COUNTYPOOL_AUTH_JWT_ISSUER": "auth_jwt_issuer", "COUNTYPOOL_INTAKE_SIGNATURES": "intake_signatures"}
CLI_VARS = {"COUNTYPOOL_TOKEN", *(f"COUNTYPOOL_{s.upper()}_URL" for s in SERVICES)}


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.main")
    return getattr(module, f"{service.capitalize()}Settings", ServiceSettings)


def fields_of(service: str) -> set[str]:
    return set(settings_class(service).model_fields) - {"service"}


def is_known_variable(name: str) -> bool:
    if name in DEPLOYMENT_WIDE or name in KAFKA_VARS or name in CLI_VARS:
        return True
    for service in SERVICES:
        prefix = f"COUNTYPOOL_{service.upper()}_"
        if name.startswith(prefix) and name[len(prefix):].lower() in fields_of(service):
            return True
    return False


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*KAFKA_VARS, *DEPLOYMENT_WIDE, *(v for v in os.environ if v.startswith("COUNTYPOOL_"))):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ------------------------------------------------------------------------------------ README <-> settings
def _readme_tokens() -> set[str]:
    text = (ROOT / "README.md").read_text() + (ROOT / "services" / "quota" / "README.md").read_text()
    return set(re.findall(r"`([A-Z_][A-Z0-9_<>]*)`", text))


def _settings_table() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("| variable | meaning (default) |")
    return text[start:text.index("\n\n", start)]


def test_every_variable_of_the_readme_settings_table_is_read():
    """Each name in the README's settings table (with <SERVICE> expanded, `_X` continuing the row's prefix) is a
    field the service's settings read, or a variable the code reads itself."""
    unknown = []
    for row in _settings_table().splitlines()[2:]:
        names = re.findall(r"`([A-Z_<>]+)`", row.split("|")[1])
        prefix = "COUNTYPOOL_<SERVICE>_" if "<SERVICE>" in names[0] else next(
            (f"COUNTYPOOL_{s.upper()}_" for s in SERVICES if names[0].startswith(f"COUNTYPOOL_{s.upper()}_")), "")
        for name in names:
            name = prefix + name[1:] if name.startswith("_") else name
            expanded = [name.replace("<SERVICE>", s.upper()) for s in SERVICES] if "<SERVICE>" in name else [name]
            unknown += [n for n in expanded if not is_known_variable(n)]
    assert not unknown, f"the README's settings table names variables nothing reads: {unknown}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_a_service_reads_is_documented(service):
    tokens = _readme_tokens()
    wide = {field: var for var, field in DEPLOYMENT_WIDE.items()}
    undocumented = []
    for field in sorted(fields_of(service)):
        upper = field.upper()
        forms = {f"COUNTYPOOL_<SERVICE>_{upper}", f"COUNTYPOOL_{service.upper()}_{upper}", f"_{upper}", wide.get(field)}
        if service == "quota":
            forms.add(upper)  # services/quota/README.md lists COUNTYPOOL_QUOTA_* without the prefix
        if not forms & tokens:
            undocumented.append(f"COUNTYPOOL_{service.upper()}_{upper}")
    assert not undocumented, f"{service} reads settings no README documents: {undocumented}"


# ------------------------------------------------------------------------------------ manifests <-> settings
def _k8s_env_names() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc["kind"] == "ConfigMap":
                out += [(f"{path.name} ConfigMap {doc['metadata']['name']}", k) for k in doc.get("data", {})]
            if doc["kind"] == "Deployment":
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    out += [(f"{path.name} {doc['metadata']['name']}", e["name"]) for e in c.get("env", [])]
            if doc["kind"] == "Secret" and doc["metadata"]["name"] == "countypool-databases":
                out += [(f"{path.name} Secret countypool-databases", k) for k in doc.get("stringData", {})]
    return out


def _compose_env_names() -> list[tuple[str, str]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return [(f"docker-compose {name}", k) for name in SERVICES for k in compose["services"][name].get("environment", {})]


def test_manifests_set_only_settings_that_exist():
    """A misspelt variable in a manifest is ignored by pydantic-settings (extra="ignore"): the default is used."""
    wrong = [f"{where}: {name}" for where, name in _k8s_env_names() + _compose_env_names() if not is_known_variable(name)]
    assert not wrong, "manifests set variables no setting reads:\n  " + "\n  ".join(wrong)


def test_k8s_database_urls_keep_tls_through_the_settings(clean_env):
    """The example Secret's URLs ask for sslmode=verify-full: the URL the service connects with must keep it."""
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "secrets.example.yaml").read_text()) if d]
    (urls,) = [d["stringData"] for d in docs if d["metadata"]["name"] == "countypool-databases"]
    for service in SERVICES:
        url = urls[f"COUNTYPOOL_{service.upper()}_DATABASE_URL"]
        clean_env.setenv(f"COUNTYPOOL_{service.upper()}_DATABASE_URL", url)
        resolved = make_url(load_settings(service, settings_class(service)).resolved_database_url())
        assert resolved.query.get("sslmode") == "verify-full", service
        assert resolved.database == f"countypool_{service}"


# ------------------------------------------------------------------------------------ Kafka clients
class _Recorder:
    """Stands in for a Kafka client class: records how it was made."""

    def __init__(self, calls: list, kind: str):
        self.calls, self.kind = calls, kind

    def __call__(self, *args, **kwargs):
        self.calls.append((self.kind, args, kwargs))
        return _FakeClient()


class _FakeClient:
    def subscribe(self, *a, **k):
        pass

    def list_topics(self, *a, **k):
        from shared.contracts import topics as T

        return [*T.ALL, *(T.dlq(t) for t in T.ALL)]

    def close(self, *a, **k):
        pass


def _login_of(kind: str, args, kwargs) -> tuple:
    if kind == "python":
        return (kwargs.get("security_protocol"), kwargs.get("sasl_mechanism"), kwargs.get("sasl_plain_username"),
                kwargs.get("sasl_plain_password"), kwargs.get("ssl_cafile"))
    cfg = args[0] if args else kwargs
    return ((cfg.get("security.protocol") or "").upper() or None, cfg.get("sasl.mechanism"), cfg.get("sasl.username"),
            cfg.get("sasl.password"), cfg.get("ssl.ca.location"))


def test_every_kafka_client_gets_the_same_sasl_ssl_login(clean_env, tmp_path, kafka_bootstrap):
    """The README: one set of variables for every client (consumers, their dead-letter producer, the relay, the
    readiness probe, the lag monitor, topic creation, the CLI). Each client is made with the same protocol,
    mechanism, user, password and CA."""
    import confluent_kafka
    import confluent_kafka.admin

    import ops.kafka_ops as kafka_ops
    import shared.consumer as consumer_mod
    import shared.kafka_admin as kafka_admin_mod
    import shared.outbox as outbox_mod
    from shared.consumer_lag import GroupLag
    from shared.kafka_admin import KafkaProbe, ensure_topics

    ca = tmp_path / "county-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    pw_file = tmp_path / "kafka-password"
    pw_file.write_text("s3cret:with@chars%\n")
    for k, v in {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                 "KAFKA_SASL_USERNAME": "countypool-ledger", "KAFKA_SASL_PASSWORD_FILE": str(pw_file),
                 "KAFKA_SSL_CAFILE": str(ca)}.items():
        clean_env.setenv(k, v)
    calls: list = []
    py, rd = _Recorder(calls, "python"), _Recorder(calls, "librdkafka")
    clean_env.setattr(consumer_mod, "KafkaConsumer", py)
    clean_env.setattr(outbox_mod, "KafkaProducer", py)
    clean_env.setattr(kafka_admin_mod, "KafkaAdminClient", py)
    clean_env.setattr(kafka_ops, "KafkaConsumer", py)
    clean_env.setattr(kafka_ops, "KafkaAdminClient", py)
    clean_env.setattr(confluent_kafka, "Producer", rd)
    clean_env.setattr(confluent_kafka, "Consumer", rd)
    clean_env.setattr(confluent_kafka.admin, "AdminClient", rd)

    from services.ledger.main import LedgerSettings, build

    settings = load_settings("ledger", LedgerSettings, database_url=f"sqlite:///{tmp_path / 'l.sqlite3'}",
                             kafka_bootstrap_servers=kafka_bootstrap)
    runtime, _app = build(settings)
    try:
        runtime.consumer._ensure_consumer()  # the service's consumer
    finally:
        runtime.db.dispose()
    outbox_mod.make_producer(kafka_bootstrap)  # dead letters, the CLI's redrive
    outbox_mod.RelaySender(kafka_bootstrap)  # the relay
    KafkaProbe(kafka_bootstrap, ttl=0).reachable()  # /readyz
    GroupLag(service="ledger", bootstrap=kafka_bootstrap, group_id="g", topics=["t"],
             stored_positions=dict)._ensure_client()  # the lag monitor
    ensure_topics(kafka_bootstrap)  # topic creation at start-up
    kafka_ops._reader(kafka_bootstrap)  # the CLI's lag and dlq
    kinds = [k for k, _, _ in calls]
    assert kinds.count("python") >= 4 and kinds.count("librdkafka") >= 3, kinds
    logins = {_login_of(*c) for c in calls}
    assert logins == {("SASL_SSL", "SCRAM-SHA-512", "countypool-ledger", "s3cret:with@chars%", str(ca))}, logins


# ------------------------------------------------------------------------------------ values that cannot work
def test_database_url_without_a_database_name_does_not_become_none_service(clean_env):
    """README: DATABASE_URL names a server; each service uses `countypool_<service>` on it (the URL's database name
    plus `_<service>`). A URL without a database name (postgresql+psycopg://user:pw@db:5432) gave 'None_ledger'."""
    clean_env.setenv("DATABASE_URL", "postgresql+psycopg://countypool:pw@db:5432")
    for service in SERVICES:
        database = make_url(load_settings(service, settings_class(service)).resolved_database_url()).database
        assert database not in (f"None_{service}", f"_{service}"), f"{service}: database {database!r}"


def test_a_lowercase_log_level_does_not_crash_the_service(clean_env):
    """COUNTYPOOL_<SERVICE>_LOG_LEVEL=debug is accepted by the settings, then serve() crashes in configure_logging with
    "ValueError: Unknown level: 'debug'", a message that does not name the variable."""
    from shared.logs import configure_logging

    clean_env.setenv("COUNTYPOOL_LEDGER_LOG_LEVEL", "debug")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        try:
            settings = load_settings("ledger", settings_class("ledger"))
        except Exception as exc:  # refused at load: fine if it names the variable
            assert "log_level" in str(exc).lower()
            return
        configure_logging("ledger", settings.log_level, settings.log_json)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_a_port_that_is_not_a_number_is_refused_naming_the_variable(clean_env):
    """A stray COUNTYPOOL_LEDGER_PORT (e.g. tcp://10.0.0.5:8001 from Kubernetes service links, which the k8s README warns
    about) stops the service with "invalid literal for int()", naming neither the variable nor the setting."""
    clean_env.setenv("COUNTYPOOL_LEDGER_PORT", "tcp://10.0.0.5:8001")
    with pytest.raises(Exception) as caught:
        load_settings("ledger", settings_class("ledger"))
    assert "COUNTYPOOL_LEDGER_PORT" in str(caught.value) or "port" in str(caught.value).lower(), str(caught.value)


def test_cli_with_an_unparseable_database_url_says_so_in_one_line(tmp_path):
    """ops/cli.py promises one line and status 2 for "a database URL SQLAlchemy cannot parse". A password with an
    unescaped ':' or '/' (the README never says to percent-encode it) ends in a traceback and status 1, which for
    `replay` means "rows differ"."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTYPOOL_") and k not in KAFKA_VARS}
    env["DATABASE_URL"] = "postgresql+psycopg://countypool:p@ss:w/rd@127.0.0.1:55432/countypool"
    res = subprocess.run([sys.executable, "-m", "ops.cli", "replay", "ledger"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, f"status {res.returncode}:\n{res.stderr[-1500:]}"
    assert "DATABASE_URL" in res.stderr
    assert "w/rd" not in res.stderr, "the error repeats part of the password"


# ------------------------------------------------------------------------------------ PostgreSQL URL end to end
PASSWORD = "p@ss:w/rd%1 é"


@pytest.fixture
def special_role(pg_server_url):
    """A login role whose password holds @ : / % and a space, may create its databases; dropped afterwards."""
    base = make_url(pg_server_url)
    role, dbname = f"cp_review_{uuid.uuid4().hex[:8]}", f"cp_review_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{PASSWORD}'".replace("%", "%%"))
    url = (f"postgresql+psycopg://{role}:{quote(PASSWORD, safe='')}@{base.host}:{base.port}/{dbname}"
           f"?sslmode=prefer&application_name=countypool-review")
    try:
        yield url, dbname
    finally:
        with admin.connect() as c:
            for suffix in SERVICES:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{dbname}_{suffix}" WITH (FORCE)')
            c.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def test_database_url_with_special_password_and_tls_parameters_works_everywhere(special_role, kafka_bootstrap, clean_env):
    """DATABASE_URL as the README shows it, with a percent-encoded password holding @ : / % and query parameters:
    the ledger migrates, its relay (a child process, given the URL as a string) publishes, and `countypool replay`
    opens the same database."""
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    from services.ledger.main import LedgerSettings, build
    from shared.metrics import EVENTS_PUBLISHED
    from tests.support.services import ADMIN, wait_for

    url, dbname = special_role
    clean_env.setenv("DATABASE_URL", url)
    clean_env.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    clean_env.setenv("COUNTYPOOL_AUTH_TOKENS_FILE", str(TOKENS))
    settings = load_settings("ledger", LedgerSettings, consumer_enabled=False)
    runtime, app = build(settings)
    published = EVENTS_PUBLISHED.labels("ledger", "countypool.ledger.events")
    before = published._value.get()
    try:
        assert runtime.db.engine.url.database == f"{dbname}_ledger"
        runtime.migrate()
        with runtime.db.engine.connect() as c:
            assert c.execute(text("SELECT current_setting('application_name')")).scalar() == "countypool-review"
        runtime.start_background(relay_process=True)
        with TestClient(app) as client:
            acct = f"external:review-{uuid.uuid4().hex[:8]}/COD"
            r = client.post("/v1/accounts", headers=ADMIN,
                            json={"accounts": [{"account_id": acct, "asset": "COD", "address": acct.split("/")[0]}]})
            assert r.status_code == 200, r.text
            wait_for(lambda: published._value.get() > before, timeout=60, what="the relay process to publish")
            assert runtime.relay_process is not None and runtime.relay_process.restarts == 0
    finally:
        runtime.stop_background()
        runtime.db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTYPOOL_") and k not in KAFKA_VARS}
    env.update(DATABASE_URL=url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap)
    res = subprocess.run([sys.executable, "-m", "ops.cli", "replay", "ledger"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert "rebuilt read models equal the live ones" in res.stdout


# ------------------------------------------------------------------------------------ alert labels
def _registered_labels() -> dict[str, set[str]]:
    """Label names of every metric family the services register (built in-process with SQLite)."""
    from prometheus_client import REGISTRY

    out: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        try:
            families = list(collector.collect())
        except Exception:  # noqa: BLE001 - a scrape-time collector without its database: use what it declares
            families = []
        declared = set(getattr(collector, "_labelnames", ()))
        for fam in families:
            names = declared | set(getattr(fam, "_labelnames", ())) | {k for s in fam.samples for k in s.labels}
            for suffix in ("", "_total", "_bucket", "_sum", "_count", "_created"):
                out.setdefault(fam.name + suffix, set()).update(names | ({"le"} if suffix == "_bucket" else set()))
    return out


TARGET_LABELS = {"job", "instance", "service"}  # prometheus.yml / the PodMonitor put these on every series


def _balanced(s: str, start: int) -> str:
    depth = 0
    for i in range(start, len(s)):
        depth += {"(": 1, ")": -1}.get(s[i], 0)
        if depth == 0:
            return s[start:i + 1]
    return s[start:]


def test_alert_rules_use_labels_their_metrics_carry(tmp_path, kafka_bootstrap):
    """tests/test_ops_config.py checks the metric names; here the labels: a matcher on a label a metric does not
    have never matches, a `by (x)` over one groups everything under x="" and the annotation says nothing."""
    from tests.support.services import running_service

    for name in SERVICES:  # registers each service's metrics and scrape-time collectors
        with running_service(name, f"sqlite:///{tmp_path / f'{name}.sqlite3'}", kafka_bootstrap, background=False):
            pass
    labels = _registered_labels()
    labels["up"] = set()
    labels["process_start_time_seconds"] = set()
    rules = [r for g in yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
             for r in g["rules"]]
    problems = []
    for rule in rules:
        expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', rule["expr"])
        raw = rule["expr"]
        for m in re.finditer(r"\b(countypool_[a-z0-9_]+|up|process_start_time_seconds)\b(\{[^}]*\})?", raw):
            metric, matchers = m.group(1), m.group(2) or ""
            if metric not in labels:
                problems.append(f"{rule['alert']}: {metric} is not registered by any service")
            have = labels.get(metric, set()) | TARGET_LABELS
            for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
                if label not in have:
                    problems.append(f"{rule['alert']}: {metric} has no label {label!r}")
        for m in re.finditer(r"\bby\s*\(([^)]*)\)\s*\(", expr):
            inner = _balanced(expr, m.end() - 1)
            for metric in set(re.findall(r"\b(countypool_[a-z0-9_]+)\b", inner)):
                for label in (x.strip() for x in m.group(1).split(",") if x.strip()):
                    if label not in labels.get(metric, set()) | TARGET_LABELS | {"le"}:
                        problems.append(f"{rule['alert']}: by ({label}) over {metric}, which has no such label")
    assert not problems, "\n".join(problems)
