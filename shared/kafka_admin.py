"""Topic creation and a cheap reachability check, shared by services, the CLI and tests."""
from __future__ import annotations

import socket
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from shared.contracts import topics as T
from shared.kafka_security import kafka_python_options, librdkafka_options


def ensure_topics(bootstrap: str, names: list[str] | None = None, partitions: int = 3, replication: int = 1) -> None:
    names = names or [*T.ALL, *(T.dlq(t) for t in T.ALL)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="countypool-admin", request_timeout_ms=15000,
                             **kafka_python_options())
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(n, partitions, replication) for n in names if n not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
            # Creation is asynchronous on the controller: wait until the broker lists them all.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not set(names) <= set(admin.list_topics()):
                time.sleep(0.1)
    finally:
        admin.close()


class KafkaProbe:
    """Readiness: a real client reaching the cluster, remembered for a few seconds. Bounded in time (a
    readiness probe that hangs is as bad as a wrong answer): librdkafka's metadata request has a timeout,
    kafka-python's has none."""

    def __init__(self, bootstrap: str, ttl: float = 5.0, timeout: float = 3.0):
        self.bootstrap = bootstrap
        self.ttl = ttl
        self.timeout = timeout
        self._at = 0.0
        self._ok = False

    def reachable(self) -> bool:
        now = time.monotonic()
        if now - self._at < self.ttl:
            return self._ok
        try:
            if not self._any_port_open():
                raise ConnectionError("no bootstrap server accepts connections")
            from confluent_kafka.admin import AdminClient

            # a client per probe (one kept would reconnect, and log it, for ever while the broker is away);
            # the answer says what is wrong, so its own connection errors are not logged
            admin = AdminClient({"bootstrap.servers": self.bootstrap, "client.id": "countypool-probe",
                                 "socket.timeout.ms": int(self.timeout * 1000), "log_level": 2, **librdkafka_options()})
            # a metadata round trip; an empty cluster answers with no topics, still reachable
            admin.list_topics(timeout=self.timeout)
            self._ok = True
        except Exception:  # noqa: BLE001 - readiness only reports
            self._ok = False
        self._at = now
        return self._ok

    def _any_port_open(self) -> bool:
        # A closed port would make the Kafka client wait its full request timeout.
        for server in self.bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
                return True
            except OSError:
                continue
        return False
