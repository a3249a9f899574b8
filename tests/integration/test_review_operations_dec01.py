"""Review (operations, 2026-12-01): numeric settings an operator sets in the environment.

README "Pointing it at a real Kafka cluster and PostgreSQL" lists COUNTYPOOL_<SERVICE>_CONSUMER_MAX_ATTEMPTS (tries of a
failing handler before its message is dead-lettered), _CONSUMER_MAX_RECORDS, _RELAY_BATCH_SIZE, _RELAY_IDLE_SECONDS,
the ledger's intervals and the ports, and promises that settings which cannot work stop a service at start naming the
variable. ``shared/settings.py`` declares these fields as bare ``int`` / ``float``: zero, a negative number or a port
above 65535 is taken as given, and the service then runs wrong without a word:

- CONSUMER_MAX_ATTEMPTS=0: ``IdempotentConsumer._handle_one`` loops ``range(1, 0 + 1)`` zero times and returns None:
  the message is neither applied nor dead-lettered, and its offset is stored as done. Lost, silently.
- RELAY_BATCH_SIZE=0: the relay selects ``LIMIT 0`` rows every round; nothing the service writes is ever published.
- CONSUMER_MAX_RECORDS=0: kafka-python's poll raises "max_records must be positive" on every poll; the consumer loop
  logs and retries for ever while /readyz says ready.
- RELAY_IDLE_SECONDS / EXPIRY_INTERVAL_SECONDS negative: ``Event.wait(negative)`` returns at once: busy loops.
- PORT 70000: accepted, then uvicorn fails after migrating with an OverflowError naming no variable.

And README "Backups and recovery": its `kafka-consumer-groups.sh --delete-offsets ... --all-topics` step is refused by
Kafka's tool (--all-topics belongs to --reset-offsets), so the offsets it tells the operator to delete stay.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from shared.settings import load_settings
from tests.support.machinery import WidgetAdded
from tests.conftest import require_or_skip
from tests.support.services import ADMIN, running_service, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture
def clean_env(monkeypatch):
    for name in [v for v in os.environ if v.startswith("COUNTYPOOL_")] + ["DATABASE_URL"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _settings_class(service: str):
    import importlib

    module = importlib.import_module(f"services.{service}.main")
    return getattr(module, f"{service.capitalize()}Settings", None)


# --------------------------------------------------------------------------------------------- refused at start
@pytest.mark.parametrize("service, variable, value, field", [
    ("assessment", "COUNTYPOOL_ASSESSMENT_CONSUMER_MAX_ATTEMPTS", "0", "consumer_max_attempts"),
    ("quota", "COUNTYPOOL_QUOTA_RELAY_BATCH_SIZE", "0", "relay_batch_size"),
    ("settlement", "COUNTYPOOL_SETTLEMENT_CONSUMER_MAX_RECORDS", "0", "consumer_max_records"),
    ("ledger", "COUNTYPOOL_LEDGER_RELAY_IDLE_SECONDS", "-1", "relay_idle_seconds"),
    ("ledger", "COUNTYPOOL_LEDGER_EXPIRY_INTERVAL_SECONDS", "-1", "expiry_interval_seconds"),
    ("ledger", "COUNTYPOOL_LEDGER_PORT", "70000", "port"),
])
def test_a_numeric_setting_that_cannot_work_is_refused_naming_it(clean_env, service, variable, value, field):
    """README: "Settings that cannot work ... stop a service at start with the variable's name"."""
    clean_env.setenv(variable, value)
    cls = _settings_class(service)
    try:
        settings = load_settings(service, cls) if cls else load_settings(service)
    except Exception as exc:  # noqa: BLE001 - refused: it must say which setting
        assert field in str(exc).lower() or variable in str(exc), f"refused without naming {variable}: {exc}"
        return
    pytest.fail(f"{variable}={value} is accepted ({field}={getattr(settings, field)!r}): the service starts and "
                "runs wrong instead of refusing it at start")


# --------------------------------------------------------------------------------------------- what it costs
def _enterprise(n: int) -> tuple[str, bytes]:
    from services.assessment.domain.credit_code import make_credit_code
    from shared.contracts.assessment import EnterpriseReported
    from shared.envelope import new_envelope

    code = make_credit_code(f"91320612{n:010d}"[:17])
    ev = EnterpriseReported(credit_code=code, name=f"企业{n}", township_code="320612101", industry_code="C3311")
    return code, new_envelope(ev, subject=code, source="/departments/industry").to_json()


def _dead_lettered(runtime) -> int:
    return runtime.consumer.stats.dead_lettered


def test_consumer_max_attempts_zero_neither_loses_nor_hides_a_department_message(tmp_path, kafka_bootstrap,
                                                                                 unique_topic, clean_env):
    """With COUNTYPOOL_ASSESSMENT_CONSUMER_MAX_ATTEMPTS=0 accepted, a department's EnterpriseReported is consumed, its
    offset stored, and it is neither registered nor in countypool.intake.assessment.dlq: the README's "A redelivered
    event changes nothing" / "refused ... goes to <topic>.dlq" both fail, and no metric or log says so."""
    from tests.badinput.support import start_consuming_from_end

    clean_env.setenv("COUNTYPOOL_ASSESSMENT_CONSUMER_MAX_ATTEMPTS", "0")
    settings = {"intake_topic": unique_topic, "group_id": f"test-rev-dec01-{uuid.uuid4().hex[:8]}"}
    try:
        service = running_service("assessment", f"sqlite:///{tmp_path / 'a.sqlite3'}", kafka_bootstrap,
                                  background=False, **settings)
        runtime, client = service.__enter__()
    except Exception as exc:  # noqa: BLE001 - refused at start: what the README promises
        assert "consumer_max_attempts" in str(exc).lower() or "MAX_ATTEMPTS" in str(exc), str(exc)
        return
    try:
        start_consuming_from_end(runtime, kafka_bootstrap)
        code, good = _enterprise(int(time.time() * 13) % 10**9)
        p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        p.send(unique_topic, key=code.encode(), value=good, partition=0)
        p.send(unique_topic, key=b"marker", value=b"{not json", partition=0)  # after it: proves the consumer passed it
        p.flush()
        p.close()
        wait_for(lambda: _dead_lettered(runtime) >= 1, timeout=30, what="the marker after the message dead-lettered")
        registered = client.get(f"/v1/enterprises/{code}", headers=ADMIN).status_code == 200
        stats = runtime.consumer.stats
        assert registered or stats.dead_lettered == 2, (
            f"the department's message was consumed past but is neither applied (GET /v1/enterprises/{code} is 404) "
            f"nor dead-lettered (stats: {stats}): lost without a trace")
    finally:
        service.__exit__(None, None, None)


def test_relay_batch_size_zero_still_publishes_what_the_service_wrote(tmp_path, kafka_bootstrap, unique_topic,
                                                                       clean_env):
    """With COUNTYPOOL_ASSESSMENT_RELAY_BATCH_SIZE=0 accepted, the relay selects LIMIT 0 rows every round: every event
    the service commits stays in its outbox for ever (only CountyPoolOutboxBacklogHigh, 10 minutes and 1,000 rows
    later, would hint at it)."""
    clean_env.setenv("COUNTYPOOL_ASSESSMENT_RELAY_BATCH_SIZE", "0")
    try:
        service = running_service("assessment", f"sqlite:///{tmp_path / 'a.sqlite3'}", kafka_bootstrap,
                                  background=False)
        runtime, _client = service.__enter__()
    except Exception as exc:  # noqa: BLE001 - refused at start: what the README promises
        assert "relay_batch_size" in str(exc).lower() or "BATCH_SIZE" in str(exc), str(exc)
        return
    try:
        runtime.transaction(lambda uow: uow.emit(WidgetAdded(widget_id="w1", seq=1), subject="w1", topic=unique_topic))
        published = sum(runtime.relay.publish_batch() for _ in range(3))
        assert published == 1, (f"the relay made from the service's settings published {published} of the 1 committed "
                                f"event (relay_batch_size={runtime.settings.relay_batch_size})")
    finally:
        service.__exit__(None, None, None)


# --------------------------------------------------------------------------------------------- Backups and recovery
ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "deploy" / "kafka" / "kafka.sh"
CONSUMER_GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"  # kafka-consumer-groups.sh


def _readme_delete_offsets_command() -> list[str]:
    text = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(r"`(kafka-consumer-groups\.sh [^`]*)`", text)
    assert found, "README's Backups and recovery no longer names a kafka-consumer-groups.sh command"
    return shlex.split(found.group(1))


def test_the_readmes_delete_offsets_step_works_as_written(kafka_bootstrap, unique_topic):
    """README, Backups and recovery: a database restored from before the service took anything "would follow the
    group's offsets in Kafka: delete them first (`kafka-consumer-groups.sh --delete-offsets --group
    countypool-<service> --all-topics`)". Kafka's tool refuses that line: "Option [delete-offsets] takes the following
    options: [topic], [group]" (--all-topics is a --reset-offsets scope), status 1, the offsets stay, and the restored
    service then skips everything the group had read before."""
    if not (next(iter(Path(os.environ.get("COUNTYPOOL_CACHE", Path.home() / ".cache" / "countypool"))
                      .glob("kafka-*/.installed")), None)):
        require_or_skip("Kafka's tools (deploy/kafka/kafka.sh install)")
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    group = f"countypool-review-dec01-{uuid.uuid4().hex[:8]}"
    c = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    c.commit({TopicPartition(unique_topic, 0): OffsetAndMetadata(1, "", -1)})  # a stopped service's group
    c.close(autocommit=False)

    argv = [a.replace("countypool-<service>", group).replace("<brokers>", kafka_bootstrap)
            for a in _readme_delete_offsets_command()]
    assert argv[0] == "kafka-consumer-groups.sh"
    res = subprocess.run(["bash", str(KAFKA_SH), "tool", CONSUMER_GROUP_COMMAND, *argv[1:]],
                         capture_output=True, text=True, timeout=90)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        left = {tp: m.offset for tp, m in (admin.list_group_offsets(group).get(group) or {}).items() if m.offset >= 0}
    finally:
        admin.close()
    assert res.returncode == 0 and not left, (
        f"README's `{' '.join(argv)}` exits {res.returncode}, the group's offsets in Kafka "
        f"stay {left}:\n{(res.stdout + res.stderr).strip().splitlines()[:1]}")
