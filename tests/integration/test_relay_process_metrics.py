"""The outbox relay of ledger and quota runs in a child process; its CPU and memory are on /metrics
(countypool_child_process_*), since process_cpu_seconds_total counts only the process that serves the page. Real
Kafka, a real relay child publishing a real event."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.contracts.ledger import AccountOpened
from tests.support.services import running_service, wait_for

pytestmark = pytest.mark.kafka
CPU, RSS = "countypool_child_process_cpu_seconds_total", "countypool_child_process_resident_memory_bytes"


def relay_samples(client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name in (CPU, RSS) and s.labels == {"service": "ledger", "process": "relay"}}


def test_the_relay_child_process_shows_its_cpu_and_memory_while_it_runs(kafka_bootstrap, tmp_path):
    with running_service("ledger", f"sqlite:///{tmp_path}/ledger.sqlite3", kafka_bootstrap, background=False,
                         consumer_enabled=False) as (runtime, client):
        assert relay_samples(client) == {}, "no child yet: no samples (the families are still declared)"
        assert f"# TYPE {CPU} counter" in client.get("/metrics").text
        runtime.start_background(relay_process=True)
        assert runtime.relay_process is not None
        # an event for the child to publish: its CPU then includes a spawn, imports and a produce
        runtime.transaction(lambda uow: uow.emit(
            AccountOpened(account_id="external:test/CNY", asset="CNY", address="external:test"), subject="t"))
        wait_for(lambda: runtime.relay.backlog() == 0, what="the relay child published")
        seen = wait_for(lambda: (s := relay_samples(client)).get(CPU, 0) > 0.05 and s, what="the child's CPU on /metrics")
        assert seen[RSS] > 20 * 2**20, f"a Python process with Kafka's client holds more than 20 MiB: {seen}"
        runtime.relay_process.stop()
        assert relay_samples(client) == {}, "a stopped child leaves no samples behind"
