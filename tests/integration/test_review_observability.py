"""Review of the observability surface: what dashboards, alerts and the README promise against what the services'
/metrics really export, with real traffic on real Kafka.

- each service in a process of its own (as deployed, not the test process's shared registry) exports every metric
  a dashboard or alert selects, and those a selector ties to one service (service="x") are x's;
- every exported countypool_* metric is named in the README(s), and every name they give is exported;
- labels stay bounded after traffic full of account ids, transfer ids, credit codes and correlation ids;
- metrics move: a refused transfer counts under its result, a dead letter under its reason, a batch is timed, the
  consumer lag comes back to 0 once everything is applied (also after a department's transactional publish);
- the reconciliation alerts fire on the condition they describe (promtool).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import ADMIN, running_service, wait_for
from tests.test_ops_config import DASHBOARDS, PROM_DIR, SYNTHETIC, _dashboard_queries, exported_series_names, \
    need_promtool, promql_metric_names

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ledger", "quota", "settlement", "assessment")
SHARED = ("countypool_http_requests_total", "countypool_http_request_duration_seconds_bucket",
          "countypool_events_published_total", "countypool_events_consumed_total",
          "countypool_events_dead_lettered_total", "countypool_consumer_batch_duration_seconds_bucket",
          "countypool_outbox_backlog", "countypool_consumer_lag", "countypool_consumer_offsets_skipped_total",
          "countypool_relay_errors_total", "countypool_db_retries_total")
# issue 3: asset, outcome, code; plus the shared families' own (route is the route's template, never a path)
BOUNDED_LABELS = {"service", "method", "route", "status", "topic", "outcome", "reason", "result", "code", "asset",
                  "figure", "state", "purpose", "county", "period", "kind", "action", "le"}
READMES = [ROOT / "README.md", *sorted((ROOT / "services").glob("*/README.md")), ROOT / "deploy" / "k8s" / "README.md"]

_SCRAPE = """
import importlib, sys, tempfile
from fastapi.testclient import TestClient
from shared.settings import load_settings
name, bootstrap = sys.argv[1], sys.argv[2]
module = importlib.import_module(f"services.{name}.main")
cls = getattr(module, f"{name.capitalize()}Settings", None)
kw = dict(database_url=f"sqlite:///{tempfile.mkdtemp()}/s.sqlite3", kafka_bootstrap_servers=bootstrap,
          auth_tokens_file="deploy/dev-tokens.json")
runtime, app = module.build(load_settings(name, cls, **kw) if cls else load_settings(name, **kw))
runtime.migrate()
with TestClient(app) as c:
    c.get("/healthz")
    sys.stdout.write("\\n=====METRICS=====\\n" + c.get("/metrics").text)
"""


def samples(text: str) -> list:
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def value(text: str, name: str, **labels) -> float:
    return sum(s.value for s in samples(text) if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


# ------------------------------------------------------------------------------------------ one process per service
@pytest.fixture(scope="module")
def per_process(kafka_bootstrap) -> dict[str, set[str]]:
    out = {}
    for name in SERVICES:
        res = subprocess.run([sys.executable, "-c", _SCRAPE, name, kafka_bootstrap], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert res.returncode == 0 and "=====METRICS=====" in res.stdout, f"{name}: {res.stderr[-2000:]}"
        out[name] = exported_series_names(res.stdout.split("=====METRICS=====", 1)[1])
    return out


def _queries() -> list[tuple[str, str]]:
    out = [(f"{p.name} {where}", expr) for p in DASHBOARDS for where, expr in _dashboard_queries(json.loads(p.read_text()))]
    for g in yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]:
        out += [(f"alert {r['alert']}", r["expr"]) for r in g["rules"]]
    return out


def test_dashboards_and_alerts_select_what_the_service_processes_export(per_process):
    everything = set().union(*per_process.values()) | SYNTHETIC
    problems = []
    for where, expr in _queries():
        problems += [f"{where}: {n} is exported by no service process" for n in promql_metric_names(expr) - everything]
        for metric, svc in re.findall(r'\b(countypool_\w+)\{[^}]*\bservice="(\w+)"', expr):
            if metric not in per_process.get(svc, set()):
                problems.append(f"{where}: {metric}{{service=\"{svc}\"}} is not exported by {svc}")
    for name, names in per_process.items():
        problems += [f"{name} does not export {m}" for m in SHARED if m not in names]
    assert not problems, "\n".join(problems)


def test_readme_names_every_exported_metric_and_only_exported_ones(per_process):
    text = "\n".join(p.read_text() for p in READMES)
    exported = set().union(*per_process.values())
    families = {n[:-len("_bucket")] if n.endswith("_bucket") else n for n in exported
                if n.startswith("countypool_") and not n.endswith(("_created", "_sum", "_count"))}
    undocumented = sorted(f for f in families if not re.search(rf"\b{re.escape(f)}\b", text))
    databases = {f"countypool_{x}" for x in (*SERVICES, "test")}
    named = set(re.findall(r"`(countypool_[a-z0-9_]+)(?:\{[^`]*)?`", text)) - databases
    unknown = sorted(n for n in named if n not in exported and n + "_bucket" not in exported)
    assert not unknown, f"the README names metrics no service exports: {unknown}"
    assert not undocumented, f"exported metrics no README names ({len(undocumented)}): {undocumented}"


# ------------------------------------------------------------------------------------------ ledger traffic
def test_ledger_labels_stay_bounded_and_a_refused_transfer_is_counted_under_its_result(tmp_path, kafka_bootstrap):
    run = uuid.uuid4().hex[:10]
    code = f"rv.{run}"
    credit = "91320612MA1W7LXX8K"
    ids = {"pool": "county:320612/pool/COD", "ext": f"external:rr-{run}/COD", "ent": f"enterprise:{credit}/COD"}
    tids = [f"tr-{run}-{i}" for i in range(3)]
    cid = f"corr-{run}"
    with running_service("ledger", f"sqlite:///{tmp_path / 'l.sqlite3'}", kafka_bootstrap, background=False) as (_, c):
        h = {**ADMIN, "x-correlation-id": cid}
        accounts = [{"account_id": a, "asset": "COD", "address": a.rsplit("/", 1)[0]} for a in ids.values()]
        assert c.post("/v1/accounts", headers=h, json={"accounts": accounts}).status_code == 200
        before = c.get("/metrics").text
        transfers = [
            {"transfer_id": tids[0], "debit_account": ids["ext"], "credit_account": ids["pool"], "asset": "COD",
             "amount": "10", "code": code},
            {"transfer_id": tids[1], "debit_account": ids["pool"], "credit_account": ids["ent"], "asset": "COD",
             "amount": "99", "code": code},  # more than the pool holds: exceeds_credits
            {"transfer_id": tids[2], "debit_account": ids["pool"], "credit_account": ids["ent"], "asset": "COD",
             "amount": "4", "code": code, "pending": True, "timeout_seconds": 3600},
        ]
        r = c.post("/v1/transfers", headers=h, json={"transfers": transfers})
        assert r.status_code == 200, r.text
        for path in (f"/v1/accounts/{ids['ent']}", f"/v1/accounts/{ids['pool']}/balance", f"/v1/transfers/{tids[1]}",
                     f"/v1/accounts/{ids['ent']}/entries", f"/no/such/{credit}"):
            c.get(path, headers=h)
        after = c.get("/metrics").text
    assert [x["result"] for x in r.json()["results"]] == ["ok", "exceeds_credits", "ok"], r.text
    for result, n in (("ok", 2), ("exceeds_credits", 1)):
        moved = value(after, "countypool_ledger_transfers_total", result=result, code=code) - \
            value(before, "countypool_ledger_transfers_total", result=result, code=code)
        assert moved == n, f"countypool_ledger_transfers_total{{result={result!r}}} moved by {moved}, expected {n}"
    assert value(after, "countypool_ledger_pending_transfers", asset="COD") >= 1, "a pending transfer is not counted"
    assert value(after, "countypool_ledger_asset_imbalance_units", asset="COD") == 0
    secrets = [credit, run, cid, *tids]
    bad = sorted({f"{s.name}{s.labels}" for s in samples(after) if s.name.startswith("countypool_")
                  and (set(s.labels) - BOUNDED_LABELS
                       or any(x in v for v in s.labels.values() for x in secrets if not v == code))})
    assert not bad, "labels carry unbounded values:\n" + "\n".join(bad[:20])


# ------------------------------------------------------------------------------------------ a consumer's metrics
@pytest.fixture
def assessment_on_own_topic(tmp_path, kafka_bootstrap, unique_topic):
    from tests.badinput.support import start_consuming_from_end

    settings = {"intake_topic": unique_topic, "group_id": f"test-obs-{uuid.uuid4().hex[:8]}"}
    with running_service("assessment", f"sqlite:///{tmp_path / 'a.sqlite3'}", kafka_bootstrap, background=False,
                         **settings) as (runtime, client):
        start_consuming_from_end(runtime, kafka_bootstrap)
        yield runtime, client, unique_topic


def _enterprise(n: int) -> tuple[str, bytes]:
    from services.assessment.domain.credit_code import make_credit_code
    from shared.contracts.assessment import EnterpriseReported
    from shared.envelope import new_envelope

    code = make_credit_code(f"91320612{n:010d}"[:17])
    ev = EnterpriseReported(credit_code=code, name=f"企业{n}", township_code="320612101", industry_code="C3311")
    return code, new_envelope(ev, subject=code, source="/departments/industry").to_json()


def _lag(client, topic: str) -> float | None:
    found = [s.value for s in samples(client.get("/metrics").text)
             if s.name == "countypool_consumer_lag" and s.labels.get("topic") == topic]
    return found[0] if found else None


def test_dead_letters_batches_and_lag_are_measured(assessment_on_own_topic, kafka_bootstrap):
    from kafka import KafkaProducer

    _runtime, client, topic = assessment_on_own_topic
    before = client.get("/metrics").text
    code, good = _enterprise(int(time.time()) % 10**9)
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    p.send(topic, key=b"bad", value=b"{not json", partition=0)
    p.send(topic, key=code.encode(), value=good, partition=0)
    p.flush()
    p.close()
    wait_for(lambda: client.get(f"/v1/enterprises/{code}", headers=ADMIN).status_code == 200, what="applied")
    svc = dict(service="assessment", topic=topic)
    wait_for(lambda: value(client.get("/metrics").text, "countypool_events_dead_lettered_total", **svc,
                           reason="malformed_json") == 1, timeout=15, what="the dead letter counted")
    after = client.get("/metrics").text
    assert value(after, "countypool_events_consumed_total", **svc, outcome="dead_lettered") == 1
    assert value(after, "countypool_events_consumed_total", **svc, outcome="applied") == 1
    assert value(after, "countypool_consumer_batch_duration_seconds_count", service="assessment") > \
        value(before, "countypool_consumer_batch_duration_seconds_count", service="assessment"), "no batch timed"
    wait_for(lambda: _lag(client, topic) == 0, timeout=20, what=f"countypool_consumer_lag{{topic={topic!r}}} == 0")
    assert code not in after


def _transactional(bootstrap: str):
    """A department's producer with transactions (confluent-kafka, as a Java producer would behave)."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"dept-{uuid.uuid4().hex[:8]}"})
    p.init_transactions(30)
    return p


def _committed(p, client, topic: str, code: str, value: bytes) -> None:
    p.begin_transaction()
    p.produce(topic, key=code.encode(), value=value, partition=0)
    p.commit_transaction(30)
    wait_for(lambda: client.get(f"/v1/enterprises/{code}", headers=ADMIN).status_code == 200, what="applied")


def _lag_drained(client, topic: str, seconds: float = 25) -> bool:
    deadline = time.monotonic() + seconds  # the gauge is measured every 5 s
    while time.monotonic() < deadline and _lag(client, topic) != 0:
        time.sleep(0.5)
    return _lag(client, topic) == 0


def test_lag_returns_to_zero_after_a_departments_transactional_publish(assessment_on_own_topic, kafka_bootstrap):
    """README: departments may publish with a transactional producer (aborted records take no effect). Its commit
    marker takes the partition's last offset and is never delivered: the database position stops one short of the
    end, and the gauge must still say 0 once every record is applied (else CountyPoolConsumerStalled pages for a
    consumer that is idle, and the dashboards show a lag that never drains)."""
    _runtime, client, topic = assessment_on_own_topic
    code, good = _enterprise(int(time.time() * 7) % 10**9)
    _committed(_transactional(kafka_bootstrap), client, topic, code, good)
    assert _lag_drained(client, topic), (f"countypool_consumer_lag{{topic={topic!r}}} = {_lag(client, topic)} with "
                                         "everything applied: the transaction's commit marker is counted as lag")


def test_lag_returns_to_zero_after_an_aborted_transaction(assessment_on_own_topic, kafka_bootstrap):
    """An aborted batch and its marker are offsets with no record the consumer returns: nothing of it is applied,
    and the position moves past it (on a poll that returned nothing, when it came after the last record)."""
    _runtime, client, topic = assessment_on_own_topic
    n = int(time.time() * 11) % 10**9 // 10 * 10
    (aborted_code, aborted), (code, good) = _enterprise(n), _enterprise(n + 10)  # the last digit is cut
    p = _transactional(kafka_bootstrap)
    _committed(p, client, topic, code, good)
    p.begin_transaction()
    p.produce(topic, key=aborted_code.encode(), value=aborted, partition=0)
    p.flush(30)
    p.abort_transaction(30)
    assert _lag_drained(client, topic), f"countypool_consumer_lag{{topic={topic!r}}} = {_lag(client, topic)}"
    assert client.get(f"/v1/enterprises/{aborted_code}", headers=ADMIN).status_code == 404


# ------------------------------------------------------------------------------------------ alerts (promtool)
def _promtool(tmp_path, tests: list[dict]) -> subprocess.CompletedProcess:
    doc = {"rule_files": [str(PROM_DIR / "alerts.yml")], "evaluation_interval": "1m", "tests": tests}
    path = tmp_path / "review_alerts_test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)


def test_reconciliation_stopped_fires_only_for_a_reconciliation_that_ran_then_stopped(tmp_path):
    """countypool_quota_reconciliation_last_run_timestamp_seconds is 0 until the first run that read the ledger:
    time() - 0 is "over an hour" from the first minute. A quota that has never reconciled is
    CountyPoolQuotaReconciliationNotRunning's (after 30 minutes); ReconciliationStopped must not page for it at 15
    minutes saying the last run "finished 56 years ago"."""
    need_promtool()
    target = {"job": "quota", "instance": "quota:8002", "service": "quota"}

    def series(name, values, **labels):
        sel = ", ".join(f'{k}="{v}"' for k, v in {**target, **labels}.items())
        return {"series": f"{name}{{{sel}}}", "values": values}

    never = {"name": "never reconciled", "interval": "1m", "input_series": [
        series("up", "1+0x100"),
        series("countypool_quota_reconciliation_last_run_timestamp_seconds", "0+0x100")],
        "alert_rule_test": [{"eval_time": "20m", "alertname": "CountyPoolQuotaReconciliationStopped", "exp_alerts": []},
                            {"eval_time": "80m", "alertname": "CountyPoolQuotaReconciliationStopped", "exp_alerts": []}]}
    stopped = {"name": "ran once at 1m, then never", "interval": "1m", "input_series": [
        series("up", "1+0x100"),
        series("countypool_quota_reconciliation_last_run_timestamp_seconds", "_ 60+0x100"),
        series("countypool_quota_reconciliation_difference", "_ 0+0x100", asset="COD", figure="in_pool")],
        "alert_rule_test": [
            {"eval_time": "60m", "alertname": "CountyPoolQuotaReconciliationStopped", "exp_alerts": []},
            {"eval_time": "80m", "alertname": "CountyPoolQuotaReconciliationStopped",
             "exp_alerts": [{"exp_labels": {"severity": "critical", "service": "quota"}, "exp_annotations": {
                 "summary": "quota has not reconciled its pools with the ledger for over an hour",
                 "description": "The last reconciliation that read the ledger finished 1h 19m 0s ago. Check quota's log "
                                '("reconciliation failed"), COUNTYPOOL_QUOTA_LEDGER_URL and COUNTYPOOL_QUOTA_LEDGER_TOKEN.'}}]}]}
    for case in (never, stopped):
        res = _promtool(tmp_path, [case])
        assert res.returncode == 0, f"{case['name']}:\n{res.stdout}\n{res.stderr}"
