"""docker-compose.yml, the Dockerfile and the PostgreSQL init script agree with the code (no Docker needed)."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from shared.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("ledger", "quota", "settlement", "assessment")
INFRA = ("kafka", "postgres", "prometheus", "grafana")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def command_of(svc: dict) -> list[str]:
    cmd = svc.get("command")
    return cmd.split() if isinstance(cmd, str) else list(cmd or [])


def test_every_part_of_the_deployment_is_there(services):
    missing = [name for name in (*INFRA, *SERVICES) if name not in services]
    assert not missing, f"docker-compose.yml lacks services {missing}"


def _tag(image: str) -> str | None:
    name = image.rsplit("/", 1)[-1]
    if "@sha256:" in name:
        return "digest"
    return name.split(":", 1)[1] if ":" in name else None


def test_every_image_is_pinned(services):
    for name, svc in services.items():
        if "image" not in svc:
            assert "build" in svc, f"{name}: neither image nor build"
            continue
        tag = _tag(svc["image"])
        assert tag, f"{name}: image {svc['image']!r} has no tag"
        assert tag != "latest", f"{name}: image {svc['image']!r} is not pinned"


def test_dockerfile_base_image_is_pinned():
    froms = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert froms, "Dockerfile has no FROM"
    for image in froms:
        assert _tag(image) not in (None, "latest"), f"Dockerfile base {image!r} is not pinned"


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_its_own_main_module(services, name):
    svc = services[name]
    cmd = command_of(svc)
    module = f"services.{name}.main"
    assert cmd[:3] == ["python", "-m", module], f"{name}: command {cmd}"
    assert (ROOT / "services" / name / "main.py").is_file(), f"services/{name}/main.py does not exist"
    assert "build" in svc, f"{name}: the services are built from the project's Dockerfile"


@pytest.mark.parametrize("name", SERVICES)
def test_service_waits_for_healthy_kafka_and_postgres(services, name):
    depends = services[name].get("depends_on")
    assert isinstance(depends, dict), f"{name}: depends_on must name conditions"
    for dep in ("kafka", "postgres"):
        assert dep in depends, f"{name} does not depend on {dep}"
        assert depends[dep].get("condition") == "service_healthy", f"{name}: {dep} is not awaited healthy"
        assert services[dep].get("healthcheck", {}).get("test"), f"{dep} has no healthcheck to wait for"


@pytest.mark.parametrize("name", SERVICES)
def test_service_healthcheck_asks_readyz_on_its_port(services, name):
    hc = services[name].get("healthcheck") or {}
    test = " ".join(hc.get("test") or []) if isinstance(hc.get("test"), list) else str(hc.get("test", ""))
    assert f"127.0.0.1:{DEFAULT_PORTS[name]}/readyz" in test or f"localhost:{DEFAULT_PORTS[name]}/readyz" in test, \
        f"{name}: healthcheck {test!r}"
    assert "python" in test, f"{name}: the slim image has no curl; the healthcheck must use python"


@pytest.mark.parametrize("name", SERVICES)
def test_service_ports_match_the_defaults(services, name):
    port = DEFAULT_PORTS[name]
    env = env_of(services[name])
    prefix = f"COUNTYPOOL_{name.upper()}_"
    assert int(env.get(prefix + "PORT", port)) == port
    assert env.get(prefix + "HOST") == "0.0.0.0", f"{name} must listen on all interfaces inside its container"
    published = [str(p) for p in services[name].get("ports", [])]
    assert any(p.rsplit(":", 1)[-1] == str(port) and p.split(":")[-2] == str(port) for p in published), \
        f"{name}: ports {published}, expected {port}:{port}"


def test_each_service_has_its_own_database(services):
    dbs = {}
    for name in SERVICES:
        env = env_of(services[name])
        key = f"COUNTYPOOL_{name.upper()}_DATABASE_URL"
        assert key in env, f"{name}: {key} is not set"
        url = make_url(env[key])
        assert url.drivername == "postgresql+psycopg", f"{name}: {url.drivername}"
        assert url.host == "postgres" and (url.port or 5432) == 5432, f"{name}: database host {url.host}:{url.port}"
        assert url.database == f"countypool_{name}", f"{name}: database {url.database}"
        assert url.username == env_of(services["postgres"])["POSTGRES_USER"]
        assert url.password == env_of(services["postgres"])["POSTGRES_PASSWORD"]
        dbs[name] = url.database
    assert len(set(dbs.values())) == len(dbs), f"services share a database: {dbs}"


def test_services_use_the_in_network_kafka_listener(services):
    advertised = env_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    for name in SERVICES:
        bootstrap = env_of(services[name]).get("KAFKA_BOOTSTRAP_SERVERS")
        assert bootstrap == "kafka:9092", f"{name}: KAFKA_BOOTSTRAP_SERVERS={bootstrap}"
        assert f"//{bootstrap}" in advertised, f"kafka does not advertise {bootstrap}: {advertised}"


def test_kafka_is_a_single_kraft_node_with_replication_one(services):
    env = env_of(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env.get(key) == "1", f"{key}={env.get(key)}"
    listeners = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert listeners <= set(protocol_map), f"listeners {listeners} without a security protocol"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners


def test_auth_tokens_file_is_in_the_image(services):
    for name in SERVICES:
        path = env_of(services[name]).get("COUNTYPOOL_AUTH_TOKENS_FILE")
        assert path == "/app/deploy/dev-tokens.json", f"{name}: COUNTYPOOL_AUTH_TOKENS_FILE={path}"
    assert (ROOT / "deploy" / "dev-tokens.json").is_file()


def _created_databases() -> set[str]:
    sql = (ROOT / "deploy" / "postgres" / "init-databases.sql").read_text()
    sql = re.sub(r"--[^\n]*", "", sql)
    return {m.strip('"') for m in re.findall(r"CREATE\s+DATABASE\s+(\"?[A-Za-z_][A-Za-z0-9_]*\"?)", sql, re.I)}


def test_init_script_creates_every_referenced_database(services):
    created = _created_databases()
    referenced = {make_url(env_of(services[n])[f"COUNTYPOOL_{n.upper()}_DATABASE_URL"]).database for n in SERVICES}
    assert referenced <= created, f"not created by init-databases.sql: {sorted(referenced - created)}"


def test_postgres_runs_the_init_script(services):
    mounts = [str(v) for v in services["postgres"].get("volumes", [])]
    assert any(m.startswith("./deploy/postgres/init-databases.sql:/docker-entrypoint-initdb.d/") for m in mounts), mounts


def _listed_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").split(".")[0] for pattern in include})


def test_dockerfile_copies_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set()
    for line in re.findall(r"^COPY\s+(.+)$", dockerfile, re.M):
        parts = [p for p in line.split() if not p.startswith("--")]
        copied.update(p.rstrip("/") for p in parts[:-1])
    packages = _listed_packages()
    assert packages, "pyproject lists no packages"
    assert not [p for p in packages if p not in copied and "." not in copied], \
        f"Dockerfile copies {sorted(copied)}, pyproject packages {packages}"
    assert "pyproject.toml" in copied or "." in copied
    assert re.search(r"pip install .*\.", dockerfile), "the Dockerfile does not install the project"
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not ignored & {*packages, "pyproject.toml"}, f".dockerignore excludes {ignored & {*packages, 'pyproject.toml'}}"


def test_dockerfile_runs_as_non_root_and_exposes_the_ports():
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", dockerfile, re.M) for p in line.split()}
    assert set(DEFAULT_PORTS.values()) <= exposed, f"EXPOSE {sorted(exposed)}"


def test_monitoring_mounts_the_deploy_configuration(services):
    prom = [str(v) for v in services["prometheus"].get("volumes", [])]
    assert any(v.startswith("./deploy/prometheus/prometheus.yml:") for v in prom), prom
    graf = [str(v) for v in services["grafana"].get("volumes", [])]
    assert any(v.startswith("./deploy/grafana/provisioning:/etc/grafana/provisioning") for v in graf), graf
    assert any(v.startswith("./deploy/grafana/dashboards:") for v in graf), graf


def test_quota_reconciles_with_the_ledger_in_the_network(services):
    """Quota reads the ledger's balances for reconciliation: left at its defaults (127.0.0.1, no token) it
    answered 503 ledger_unavailable inside its container, and the reconciliation alert had nothing to see."""
    env = env_of(services["quota"])
    assert env.get("COUNTYPOOL_QUOTA_LEDGER_URL") == f"http://ledger:{DEFAULT_PORTS['ledger']}"
    tokens = json.loads((ROOT / "deploy" / "dev-tokens.json").read_text())
    assert "ledger:read" in tokens[env["COUNTYPOOL_QUOTA_LEDGER_TOKEN"]]["scopes"]
    assert float(env.get("COUNTYPOOL_QUOTA_RECONCILE_INTERVAL_SECONDS", "0")) > 0
