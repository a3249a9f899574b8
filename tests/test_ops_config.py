"""Operations files agree with the code: every metric a Grafana panel or an alert rule names is one the services
really export (scraped from each service built in-process), Prometheus scrapes the ports the services listen on,
Grafana's provisioning matches docker-compose.yml, and the Kubernetes manifests describe every service and topic.

A dashboard or rule naming a metric no service exports fails here on purpose: export the metric, don't weaken this.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from shared.contracts import topics as T
from shared.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
K8S_DIR = ROOT / "deploy" / "k8s"
SERVICES = ("ledger", "quota", "settlement", "assessment")
# Series Prometheus makes itself for every target, not exported by a service.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
             "scrape_series_added"}


# ------------------------------------------------------------------------------------------ what is exported
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gauge": ("",),
    "unknown": ("",),
}


def exported_series_names(exposition: str) -> set[str]:
    """Every series name a /metrics page exports, including those of families that have no sample yet (a labelled
    counter nobody incremented still has its # TYPE line): a counter ``x`` exports ``x_total`` (and
    ``x_created``), a histogram ``x_bucket``, ``x_sum`` and ``x_count``, and so on."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(s.name for s in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


@pytest.fixture(scope="module")
def exported(kafka_bootstrap, tmp_path_factory) -> dict[str, set[str]]:
    """Series names per service, from GET /metrics of each service built in-process (relay and consumer off)."""
    from tests.support.services import running_service

    data = tmp_path_factory.mktemp("ops-metrics")
    out: dict[str, set[str]] = {}
    for name in SERVICES:
        db_url = f"sqlite:///{data / f'{name}.sqlite3'}"
        with running_service(name, db_url, kafka_bootstrap, background=False) as (_runtime, client):
            resp = client.get("/metrics")
            assert resp.status_code == 200, f"{name}: GET /metrics -> {resp.status_code}"
            out[name] = exported_series_names(resp.text)
    return out


@pytest.fixture(scope="module")
def all_exported(exported) -> set[str]:
    return set().union(*exported.values())


# ------------------------------------------------------------------------------------------ PromQL names
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan", "atan2", "start", "end"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_TOKEN = re.compile(r"(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<id>[A-Za-z_:][A-Za-z0-9_:]*)")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not a full parser: enough for the expressions kept here).
    Grafana's ``label_values(<selector>, <label>)`` yields the metric names of its selector."""
    expr = expr.strip()
    if re.fullmatch(r"label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)", expr):  # label_values(<label>): no metric
        return set()
    lv = re.fullmatch(r"(?:label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*|query_result\((.*))\)", expr, re.S)
    if lv:
        return promql_metric_names(lv.group(1) or lv.group(2))
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)  # label matchers (strings are gone, so no braces inside)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)  # ranges and subqueries, with Grafana's $__rate_interval etc.
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?[0-9A-Za-z_$]+", " ", s)
    s = re.sub(r"@\s*(?:start\(\)|end\(\)|[0-9.]+)", " ", s)
    s = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", " ", s)  # Grafana variables left outside matchers
    names: set[str] = set()
    for m in _TOKEN.finditer(s):
        ident = m.group("id")
        if not ident or ident.lower() in _KEYWORDS:
            continue
        if re.match(r"\s*\(", s[m.end():]):  # a function or an aggregation
            continue
        names.add(ident)
    return names


def test_promql_metric_names_sees_through_functions_matchers_and_grouping():
    expr = ('histogram_quantile(0.99, sum by (service, le) (rate(countypool_http_request_duration_seconds_bucket'
            '{service=~"$service", route!="/metrics"}[$__rate_interval]))) > 1e3 or vector(0) '
            "unless on (job) group_left () up offset 5m")
    assert promql_metric_names(expr) == {"countypool_http_request_duration_seconds_bucket", "up"}
    assert promql_metric_names('label_values(countypool_quota_pool_units{county=~"$c"}, asset)') == {
        "countypool_quota_pool_units"}
    assert promql_metric_names("label_values(county)") == set()
    assert promql_metric_names('sum(x_total{a="}"}) / 100') == {"x_total"}


def test_exported_series_names_derive_suffixes_from_types():
    text = ("# HELP a_total A\n# TYPE a_total counter\n"
            "# HELP b B\n# TYPE b histogram\n"
            "# HELP c C\n# TYPE c gauge\nc{x=\"1\"} 2.0\n")
    assert exported_series_names(text) >= {"a_total", "b_bucket", "b_sum", "b_count", "c"}
    assert "a" not in exported_series_names(text)


# ------------------------------------------------------------------------------------------ dashboards
def _panels(panels: list[dict]):
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def _dashboard_queries(board: dict) -> list[tuple[str, str]]:
    """(where, expression) of every panel target and every query variable."""
    out = []
    for p in _panels(board.get("panels", [])):
        for t in p.get("targets", []):
            out.append((f"panel {p.get('title')!r} target {t.get('refId')}", t.get("expr", "")))
    for v in board.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            out.append((f"variable {v.get('name')!r}", q.get("query", "") if isinstance(q, dict) else (q or "")))
    return out


@pytest.fixture(scope="module")
def datasource_uid() -> str:
    doc = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (ds,) = [d for d in doc["datasources"] if d["type"] == "prometheus"]
    assert ds["url"] == "http://prometheus:9090"
    return ds["uid"]


def test_the_dashboards_the_issue_asks_for_are_there():
    text = " ".join(p.read_text() for p in DASHBOARDS)
    for metric in ("countypool_quota_pool_units", "countypool_settlement_statement_amount_fen",
                   "countypool_settlement_runs_total", "countypool_http_requests_total",
                   "countypool_http_request_duration_seconds_bucket", "countypool_consumer_lag",
                   "countypool_events_dead_lettered_total", "countypool_outbox_backlog", "countypool_db_retries_total"):
        assert metric in text, f"no dashboard shows {metric}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path, datasource_uid):
    board = json.loads(path.read_text())
    assert board.get("uid") and board.get("title"), f"{path.name}: uid and title are required"
    ids = [p["id"] for p in _panels(board["panels"])]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
    for p in _panels(board["panels"]):
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, f"{path.name}: panel {p['title']!r} off the grid"
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"{path.name}: panel {p['title']!r} has no query"
        for ds in [p.get("datasource"), *(t.get("datasource") for t in p["targets"])]:
            assert ds and ds.get("uid") == datasource_uid, f"{path.name}: panel {p['title']!r} datasource {ds}"


def test_dashboard_uids_are_unique():
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)), uids


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_name_only_exported_metrics(path, all_exported):
    board = json.loads(path.read_text())
    unknown = []
    for where, expr in _dashboard_queries(board):
        names = promql_metric_names(expr)
        assert names, f"{path.name}: {where} selects no metric: {expr!r}"
        unknown += [f"{where}: {n}" for n in sorted(names - all_exported - SYNTHETIC)]
    assert not unknown, f"{path.name} names metrics no service exports:\n  " + "\n  ".join(unknown)


# ------------------------------------------------------------------------------------------ Prometheus
@pytest.fixture(scope="module")
def prometheus_config() -> dict:
    return yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())


@pytest.fixture(scope="module")
def alert_rules(prometheus_config) -> list[dict]:
    rules = []
    for pattern in prometheus_config["rule_files"]:
        for path in sorted(PROM_DIR.glob(pattern)):
            for group in yaml.safe_load(path.read_text())["groups"]:
                rules += group["rules"]
    return rules


def test_prometheus_scrapes_every_service_on_its_default_port(prometheus_config):
    targets = {}
    for job in prometheus_config["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for target in sc["targets"]:
                targets[job["job_name"]] = (target, sc.get("labels", {}).get("service"), job.get("metrics_path", "/metrics"))
    expected = {name: (f"{name}:{port}", name, "/metrics") for name, port in DEFAULT_PORTS.items()}
    assert targets == expected


def test_prometheus_rule_files_exist(prometheus_config):
    assert prometheus_config.get("rule_files"), "prometheus.yml loads no alert rules"
    for pattern in prometheus_config["rule_files"]:
        assert list(PROM_DIR.glob(pattern)), f"rule file {pattern!r} (relative to prometheus.yml) does not exist"


def test_compose_mounts_the_rule_files_next_to_prometheus_yml(prometheus_config):
    """rule_files are resolved relative to the config file: in the container /etc/prometheus/<file>."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {}
    for v in compose["services"]["prometheus"].get("volumes", []):
        parts = str(v).split(":")
        if len(parts) >= 2:
            mounts[parts[1]] = parts[0]
    config_mount = next(t for t, s in mounts.items() if s == "./deploy/prometheus/prometheus.yml")
    config_dir = config_mount.rsplit("/", 1)[0]
    for pattern in prometheus_config["rule_files"]:
        for path in PROM_DIR.glob(pattern):
            rel = path.relative_to(PROM_DIR).as_posix()
            target = f"{config_dir}/{rel}"
            dir_mounted = mounts.get(config_dir) == "./deploy/prometheus"
            assert dir_mounted or mounts.get(target) == f"./deploy/prometheus/{rel}", (
                f"docker-compose.yml does not mount ./deploy/prometheus/{rel} at {target}: Prometheus would run "
                f"without its alert rules")


def test_alert_rules_name_only_exported_metrics(alert_rules, all_exported):
    unknown = []
    for rule in alert_rules:
        names = promql_metric_names(rule["expr"])
        assert names, f"{rule.get('alert')}: selects no metric"
        unknown += [f"{rule['alert']}: {n}" for n in sorted(names - all_exported - SYNTHETIC)]
    assert not unknown, "alert rules name metrics no service exports:\n  " + "\n  ".join(unknown)


def test_the_alerts_the_issue_asks_for_are_there(alert_rules):
    by_metric = {n: r["alert"] for r in alert_rules for n in promql_metric_names(r["expr"])}
    for metric in ("countypool_consumer_lag", "countypool_events_dead_lettered_total", "countypool_outbox_backlog",
                   "countypool_quota_reconciliation_difference", "countypool_ledger_journal_verified",
                   "countypool_settlement_runs_total", "countypool_ledger_asset_imbalance_units", "up",
                   "countypool_http_requests_total"):
        assert metric in by_metric, f"no alert rule watches {metric}"
    for rule in alert_rules:
        assert rule["labels"].get("severity") in ("warning", "critical"), rule["alert"]
        assert rule["annotations"].get("summary"), rule["alert"]


def need_promtool() -> None:
    """promtool checks the alert rules: .ci/run installs it (Debian's prometheus), so CI fails without it."""
    if not shutil.which("promtool"):
        from tests.conftest import require_or_skip

        require_or_skip("promtool (Debian package 'prometheus')")


def test_promtool_accepts_config_and_passes_rule_unit_tests():
    need_promtool()
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        res = subprocess.run(["promtool", *args], cwd=PROM_DIR, capture_output=True, text=True)
        assert res.returncode == 0, f"promtool {' '.join(args)}:\n{res.stdout}\n{res.stderr}"


# ------------------------------------------------------------------------------------------ Grafana
def test_grafana_dashboard_provider_reads_the_mounted_dashboards():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(str(v).split(":")[:2][::-1] for v in compose["services"]["grafana"]["volumes"])
    doc = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "countypool.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert mounts.get(provider["options"]["path"]) == "./deploy/grafana/dashboards"
    assert mounts.get("/etc/grafana/provisioning") == "./deploy/grafana/provisioning"


# ------------------------------------------------------------------------------------------ Kubernetes
def _k8s_docs() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(K8S_DIR.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path, doc))
    return out


@pytest.fixture(scope="module")
def k8s() -> list[tuple[Path, dict]]:
    return _k8s_docs()


def _of_kind(k8s, kind) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s if doc["kind"] == kind}


def test_k8s_manifests_parse_and_are_named(k8s):
    assert k8s, "deploy/k8s holds no manifests"
    for path, doc in k8s:
        where = path.relative_to(ROOT)
        assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), where
        if doc["kind"] != "Kustomization":
            assert doc.get("metadata", {}).get("name"), f"{where}: {doc['kind']} without a name"


def test_k8s_kustomizations_list_existing_files(k8s):
    for path, doc in k8s:
        if doc["kind"] == "Kustomization":
            for res in doc.get("resources", []):
                assert (path.parent / res).exists(), f"{path.relative_to(ROOT)} lists missing {res}"


def _container(dep: dict) -> dict:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


@pytest.mark.parametrize("name", SERVICES)
def test_k8s_deployment_per_service(k8s, name):
    deployments = [d for _, d in k8s if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    assert len(deployments) == 1, f"expected one Deployment {name}, found {len(deployments)}"
    dep = deployments[0]
    pod = dep["spec"]["template"]["spec"]
    c = _container(dep)
    port = DEFAULT_PORTS[name]
    assert c["image"] == "countypool:0.1.0"
    assert c["command"] == ["python", "-m", f"services.{name}.main"]
    assert (ROOT / "services" / name / "main.py").is_file()
    assert [p["containerPort"] for p in c["ports"]] == [port]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}

    def probe_port(probe):
        p = probe["httpGet"]["port"]
        return named.get(p, p)

    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and probe_port(c["readinessProbe"]) == port
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and probe_port(c["livenessProbe"]) == port
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name}: resources.{kind}"
    env = {e["name"]: e for e in c.get("env", [])}
    db = env[f"COUNTYPOOL_{name.upper()}_DATABASE_URL"]
    assert "secretKeyRef" in db["valueFrom"], f"{name}: the database URL comes from a Secret"
    assert env[f"COUNTYPOOL_{name.upper()}_PORT"]["value"] == str(port)
    assert env[f"COUNTYPOOL_{name.upper()}_HOST"]["value"] == "0.0.0.0"
    # Service links would inject <SERVICE>_PORT=tcp://... variables that can collide with COUNTYPOOL_<NAME>_PORT.
    assert pod.get("enableServiceLinks") is False
    annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/port") == str(port)


def test_k8s_services_expose_the_default_ports(k8s):
    services = _of_kind(k8s, "Service")
    for name, port in DEFAULT_PORTS.items():
        assert name in services, f"no Service {name}"
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [port]
    for name in services:
        assert not name.upper().replace("-", "_").startswith("COUNTYPOOL_"), f"Service {name}: see enableServiceLinks"


def test_k8s_secret_refs_are_defined_in_the_example(k8s):
    secrets = {name: set(doc.get("stringData", {})) | set(doc.get("data", {})) for name, doc in _of_kind(k8s, "Secret").items()}
    for name, dep in _of_kind(k8s, "Deployment").items():
        c = _container(dep)
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets.get(ref["name"], set()), f"{name}: {e['name']} -> {ref}"


def test_k8s_kafka_bootstrap_lists_three_brokers(k8s):
    config = _of_kind(k8s, "ConfigMap")["countypool-config"]["data"]
    brokers = [b for b in config["KAFKA_BOOTSTRAP_SERVERS"].split(",") if b.strip()]
    assert len(brokers) == 3, brokers
    for dep in _of_kind(k8s, "Deployment").values():
        refs = [e["configMapRef"]["name"] for e in _container(dep).get("envFrom", []) if "configMapRef" in e]
        assert "countypool-config" in refs


def test_k8s_kafka_cluster_replicates(k8s):
    (kafka,) = _of_kind(k8s, "Kafka").values()
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    brokers = sum(p["spec"]["replicas"] for p in _of_kind(k8s, "KafkaNodePool").values() if "broker" in p["spec"]["roles"])
    assert brokers >= 3


def test_k8s_topic_for_every_topic_and_its_dlq(k8s):
    kafka_topics = {doc["spec"].get("topicName", name): doc for name, doc in _of_kind(k8s, "KafkaTopic").items()}
    expected = {*T.ALL, *(T.dlq(t) for t in T.ALL)}
    assert set(kafka_topics) == expected, set(kafka_topics) ^ expected
    for name, doc in kafka_topics.items():
        spec = doc["spec"]
        assert spec["replicas"] == 3, name
        assert int(spec["config"]["min.insync.replicas"]) == 2, name
        assert int(spec["config"]["retention.ms"]) > 0, name
        assert spec["partitions"] >= 1, name


def consumed_topics(name: str, data_dir: Path) -> list[str]:
    """The topics a service's consumer subscribes to, as its build() wires them (no Kafka needed to build)."""
    import importlib

    from shared.settings import load_settings

    module = importlib.import_module(f"services.{name}.main")
    cls = getattr(module, f"{name.capitalize()}Settings", None)
    kwargs = dict(database_url=f"sqlite:///{data_dir / f'{name}.sqlite3'}", kafka_bootstrap_servers="127.0.0.1:9")
    settings = load_settings(name, cls, **kwargs) if cls else load_settings(name, **kwargs)
    runtime, _app = module.build(settings)
    try:
        return list(runtime.consumer.topics) if runtime.consumer else []
    finally:
        runtime.db.dispose()


@pytest.mark.parametrize("name", SERVICES)
def test_k8s_replicas_do_not_exceed_partitions_they_consume(k8s, name, tmp_path):
    consumed = consumed_topics(name, tmp_path)
    assert consumed, f"{name} consumes no topic"
    partitions = {doc["spec"]["topicName"]: doc["spec"]["partitions"] for doc in _of_kind(k8s, "KafkaTopic").values()}
    replicas = _of_kind(k8s, "Deployment")[name]["spec"]["replicas"]
    assert replicas <= max(partitions[t] for t in consumed), f"{name}: idle consumers"


def test_k8s_prometheus_rule_is_alerts_yml():
    rule = yaml.safe_load((K8S_DIR / "monitoring" / "prometheusrule.yaml").read_text())
    alerts = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    assert rule["spec"] == alerts, "deploy/k8s/monitoring/prometheusrule.yaml is stale: regenerate it (see its header)"


# ------------------------------------------------------------------------------------------ alerts that can fire
def _selectors(expr: str, metric: str) -> list[str]:
    """The label matchers of every selection of ``metric`` in ``expr`` ('' where it has none)."""
    return [m.group(1) or "" for m in re.finditer(rf"\b{re.escape(metric)}(?:\{{([^}}]*)\}})?", expr)]


@pytest.mark.parametrize("name", SERVICES)
def test_a_service_without_any_scrape_target_is_alerted(alert_rules, name):
    """``up == 0`` needs a target: a service whose pods are all Pending or gone has no ``up`` series at all."""
    assert any(re.search(rf'absent\(\s*up\{{job="{name}"\}}\s*\)', r["expr"]) for r in alert_rules), \
        f"no alert fires when Prometheus has no {name} target (absent(up{{job=\"{name}\"}}))"


OPERATIONAL_ROUTES = ("/metrics", "/healthz", "/readyz")


def test_http_alerts_leave_out_probes_and_scrapes(alert_rules):
    """Probes and scrapes are a dozen requests a minute per pod: counted in, they hid a quiet API whose every call
    failed, and /readyz's 503 while a dependency is away paged as an API error."""
    checked = 0
    for rule in alert_rules:
        for metric in ("countypool_http_requests_total", "countypool_http_request_duration_seconds_bucket"):
            for matchers in _selectors(rule["expr"], metric):
                checked += 1
                m = re.search(r'route\s*!~\s*"([^"]*)"', matchers)
                assert m, f"{rule['alert']}: {metric}{{{matchers}}} counts the probes' and scrapes' requests"
                assert all(re.fullmatch(m.group(1), r) for r in OPERATIONAL_ROUTES), \
                    f"{rule['alert']}: route!~{m.group(1)!r} leaves some of {OPERATIONAL_ROUTES} in"
    assert checked, "no alert watches HTTP requests"


def test_reconciliation_alert_cannot_be_silenced_by_a_reconciliation_that_never_runs(alert_rules):
    """countypool_quota_reconciliation_difference exists only after a reconciliation read the ledger (a wrong ledger
    token: never); the counties whose reading never settles keep an old figure."""
    exprs = [" ".join(r["expr"].split()) for r in alert_rules]
    assert any(re.search(r'up\{job="quota"\}.*unless on \(job, instance\) countypool_quota_reconciliation_difference', e)
               or "absent(countypool_quota_reconciliation_difference" in e for e in exprs), \
        "no alert fires while quota runs without one reconciliation"
    assert any("countypool_quota_reconciliation_unsettled_counties" in e for e in exprs), \
        "no alert watches the counties whose reconciliation never settles"


def test_a_journal_never_verified_is_alerted(alert_rules):
    """countypool_ledger_journal_verified is NaN until the auditor's first verdict: `== 0` never fires for an auditor
    that fails every time."""
    from services.ledger import auditor

    assert auditor.VERIFIED._value.get() != auditor.VERIFIED._value.get(), "the gauge no longer starts at NaN"
    exprs = [" ".join(r["expr"].split()) for r in alert_rules]
    assert any(re.search(r"countypool_ledger_journal_verified != 1\b", e) for e in exprs), \
        "no alert fires while the ledger's journal has no verdict (NaN)"


# ------------------------------------------------------------------------------------------ what a pod is given
def _k8s_file_docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S_DIR / name).read_text()) if d]


def _pod_environment(dep: dict, configmaps: dict[str, dict], secrets: dict[str, dict]) -> dict[str, str]:
    """The variables a Deployment's container gets from its ConfigMaps, its values and the Secrets that exist
    (an optional secretKeyRef to a Secret that does not exist sets nothing)."""
    c = _container(dep)
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            env.update({k: str(v) for k, v in configmaps[src["configMapRef"]["name"]].items()})
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            data = secrets.get(ref["name"])
            if data is None or ref["key"] not in data:
                assert ref.get("optional"), f"{dep['metadata']['name']}: {e['name']} needs {ref}"
                continue
            env[e["name"]] = str(data[ref["key"]])
    return env


def _secrets_of(*files: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: {**d.get("stringData", {}), **d.get("data", {})}
            for f in files for d in _k8s_file_docs(f) if d["kind"] == "Secret"}


def test_k8s_pods_start_with_the_secrets_example_applied(k8s):
    """secrets.example.yaml says: fill it in and apply it once. Its Secrets with config.yaml must make a Kafka setting
    every service accepts: a Kafka login under PLAINTEXT stops every service at start (shared/kafka_security.py)."""
    from shared.kafka_security import KafkaSecurityError, from_environment

    configmaps = {n: d["data"] for n, d in _of_kind(k8s, "ConfigMap").items()}
    secrets = _secrets_of("secrets.example.yaml")
    for name, dep in _of_kind(k8s, "Deployment").items():
        env = _pod_environment(dep, configmaps, secrets)
        try:
            from_environment(env)
        except KafkaSecurityError as exc:
            pytest.fail(f"{name} would refuse to start with secrets.example.yaml applied: {exc}")


def test_k8s_kafka_logins_work_with_a_sasl_protocol(k8s):
    """kafka-logins.example.yaml with KAFKA_SECURITY_PROTOCOL=SASL_SSL: every service has its own user and password."""
    from shared.kafka_security import from_environment

    configmaps = {n: dict(d["data"], KAFKA_SECURITY_PROTOCOL="SASL_SSL") for n, d in _of_kind(k8s, "ConfigMap").items()}
    secrets = _secrets_of("secrets.example.yaml", "kafka-logins.example.yaml")
    users = set()
    for name, dep in _of_kind(k8s, "Deployment").items():
        security = from_environment(_pod_environment(dep, configmaps, secrets))
        assert security.protocol == "SASL_SSL" and security.password, name
        users.add(security.username)
    assert len(users) == len(SERVICES), f"services share Kafka users: {users}"


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity))
    return float(m.group(1)) * units.get(m.group(2), 1 / 2**20)


def test_k8s_settlement_memory_fits_its_statement_runs(k8s):
    """A county-year statement run's peak (bench/results/settlement_year.json) on top of an idle process (the soak's
    RSS): the request holds one run, the limit two (runs of different counties go in parallel)."""
    year = json.loads((ROOT / "bench" / "results" / "settlement_year.json").read_text())
    peak = max(v["compute_peak_mib"] for v in year.values() if isinstance(v, dict) and "compute_peak_mib" in v)
    soak = json.loads((ROOT / "bench" / "results" / "soak.json").read_text())
    idle = max(s["rss_kb"]["settlement"] for s in soak["samples"]) / 1024
    resources = _container(_of_kind(k8s, "Deployment")["settlement"])["resources"]
    assert _mebibytes(resources["requests"]["memory"]) >= idle + peak, resources
    assert _mebibytes(resources["limits"]["memory"]) >= idle + 2 * peak, resources
