"""A service on a Kafka cluster that wants logins: a broker of its own (deploy/kafka/kafka.sh with a SASL/PLAIN
listener), the ledger service pointed at it with KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT. Its consumer takes a
command, its relay (librdkafka) publishes the outcome, and its readiness probe sees Kafka; a wrong password
connects nowhere."""
from __future__ import annotations

import json
import uuid

import pytest
from kafka import KafkaConsumer

from shared.contracts import topics
from shared.contracts.ledger import AccountSpec, TransfersRequested, TransferSpec
from shared.envelope import new_envelope
from shared.kafka_admin import KafkaProbe
from shared.kafka_security import kafka_python_options
from shared.outbox import make_producer
from tests.faults.infra import free_port
from tests.support.own_kafka import own_kafka
from tests.support.services import ADMIN, running_service, wait_for

USER, PASSWORD = "countypool", "sasl-test-password"


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory):
    """The SASL listener's address of a broker of this module's own, stopped and deleted afterwards."""
    sasl_port = str(free_port())
    with own_kafka(tmp_path_factory.mktemp("kafka-sasl"), KAFKA_SASL_PORT=sasl_port,
                   KAFKA_SASL_USERS=f"{USER}:{PASSWORD}"):
        yield f"127.0.0.1:{sasl_port}"


@pytest.fixture
def sasl_client(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", USER)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)


def _command(tid: str) -> bytes:
    pool, reg = "county:320612/pool/COD", "external:rights-register/COD"
    cmd = TransfersRequested(
        transfers=[TransferSpec(transfer_id=tid, debit_account=reg, credit_account=pool, asset="COD", amount="1.5",
                                code="quota.release")],
        open_accounts=[AccountSpec(account_id=reg, asset="COD", address="external:rights-register"),
                       AccountSpec(account_id=pool, asset="COD", address="county:320612/pool")])
    return new_envelope(cmd, subject=tid, source="/countypool/quota").to_json()


def test_a_service_consumes_and_publishes_through_sasl(sasl_kafka, sasl_client, pg_url):
    tid = f"sasl-{uuid.uuid4().hex[:8]}"
    with running_service("ledger", pg_url, sasl_kafka) as (rt, client):
        wait_for(lambda: client.get("/readyz").status_code == 200, timeout=60, what="ready, Kafka included")
        producer = make_producer(sasl_kafka)  # the project's producer: the SASL options come from the environment
        producer.send(topics.LEDGER_COMMANDS, key=tid.encode(), value=_command(tid)).get(timeout=30)
        producer.close()
        wait_for(lambda: client.get(f"/v1/transfers/{tid}", headers=ADMIN).status_code == 200, timeout=60,
                 what="the command consumed over SASL")
        wait_for(lambda: rt.relay.backlog() == 0, timeout=60, what="the outcome published over SASL")

    reader = KafkaConsumer(topics.LEDGER_EVENTS, bootstrap_servers=sasl_kafka, auto_offset_reset="earliest",
                           group_id=None, consumer_timeout_ms=10_000, **kafka_python_options())
    try:
        events = [json.loads(r.value) for r in reader]
    finally:
        reader.close()
    assert ("countypool.TransferPosted.v1", tid) in {(e["type"], e["data"].get("transfer_id")) for e in events}


def test_a_wrong_password_connects_nowhere(sasl_kafka, monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", USER)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "not-the-password")
    assert not KafkaProbe(sasl_kafka, ttl=0, timeout=5).reachable()
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    assert KafkaProbe(sasl_kafka, ttl=0, timeout=5).reachable()
