"""Real infrastructure for the tests: Apache Kafka and PostgreSQL, never mocks.

Endpoints come from KAFKA_BOOTSTRAP_SERVERS and TEST_DATABASE_URL (`make test` starts both here). When
they are unreachable and a Docker engine exists, testcontainers provides them. Otherwise a test that needs
them is skipped on a developer machine and FAILS when CI=true.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from hypothesis import settings as hypothesis_settings
from tests.support.pg import fresh_database
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import shared.kafka_admin as kafka_admin
from shared.kafka_admin import KafkaProbe

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Speed is measured in bench/, never in tests: Hypothesis's default deadline (200 ms an example) failed property
# tests at random on a loaded machine, where one example of a statement's lines took longer.
hypothesis_settings.register_profile("countypool", deadline=None)
hypothesis_settings.load_profile("countypool")

# Parallel workers (pytest-xdist, `make test` runs two): the first uses the suite's broker, every other one a broker
# of its own (kafka_bootstrap). The services publish and read fixed topic names: two workers' services on one broker
# would each take the other's commands and events into their own databases, and answer them.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

# The test topics ("test.*") this session creates, deleted when it ends: a broker kept for development keeps a file
# open per partition, and a test run makes ~1,500 of them, so runs after runs ran it out of files. Only this
# session's: other sessions may be testing against the same broker meanwhile.
_TEST_TOPICS: dict[str, set[str]] = {}
_ensure_topics = kafka_admin.ensure_topics


def _ensure_and_remember(bootstrap: str, names: list[str] | None = None, *args, **kwargs) -> None:
    _ensure_topics(bootstrap, names, *args, **kwargs)
    _TEST_TOPICS.setdefault(bootstrap, set()).update(n for n in names or () if n.startswith("test."))


kafka_admin.ensure_topics = _ensure_and_remember  # before the test modules import it


def pytest_sessionfinish(session, exitstatus):
    from confluent_kafka.admin import AdminClient

    for bootstrap, names in _TEST_TOPICS.items():
        if not names:
            continue
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
            for fut in admin.delete_topics(sorted(names), operation_timeout=30, request_timeout=60).values():
                try:
                    fut.result(timeout=60)
                except Exception:  # noqa: BLE001 - gone already, or a broker a test stopped: nothing to keep
                    pass
        except Exception:  # noqa: BLE001 - tidying up must not turn a passed run into a failed one
            pass


def require_or_skip(what: str) -> None:
    """Missing infrastructure: fail in CI (it must be there), skip on a laptop."""
    msg = f"{what} is not reachable (run `make test`, or set the endpoint)"
    if IN_CI:
        pytest.fail(msg + " — required when CI=true")
    pytest.skip(msg)  # not in CI: a developer without the infrastructure


def _docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    if _WORKER not in ("", "gw0"):
        from tests.support.own_kafka import own_kafka

        with own_kafka(tmp_path_factory.mktemp("kafka"), KAFKA_HEAP_OPTS="-Xmx512m -Xms256m") as broker:
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap  # for what reads it (CLI, subprocesses)
            _ensure_topics(broker.bootstrap)  # the platform's topics, as below
            yield broker.bootstrap
            _TEST_TOPICS.pop(broker.bootstrap, None)  # deleted with the broker: nothing to tidy at the end
        return
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    if KafkaProbe(bootstrap, ttl=0).reachable():
        # The platform's topics exist from the start, as once any service has run: a test that notes a topic's end
        # before starting services read nothing from a fresh broker's (a test run first on a worker's own broker)
        _ensure_topics(bootstrap)
        yield bootstrap
        return
    if _docker_engine():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer().with_kraft()
        container.start()
        _ensure_topics(container.get_bootstrap_server())
        yield container.get_bootstrap_server()
        return
    require_or_skip(f"Apache Kafka at {bootstrap}")


def _pg_reachable(url: str) -> bool:
    try:
        eng = create_engine(url)
        with eng.connect() as c:
            c.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://countypool:countypool@127.0.0.1:55432/countypool_test")
    if _pg_reachable(url):
        return url
    if _docker_engine():
        from testcontainers.postgres import PostgresContainer

        c = PostgresContainer("postgres:16", driver="psycopg")
        c.start()
        return c.get_connection_url()
    require_or_skip(f"PostgreSQL at {make_url(url).render_as_string(hide_password=True)}")
    raise AssertionError


@pytest.fixture
def pg_url(pg_server_url):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """The same test on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def unique_topic(kafka_bootstrap):
    from shared.kafka_admin import ensure_topics

    name = f"test.{uuid.uuid4().hex[:12]}"
    ensure_topics(kafka_bootstrap, [name, f"{name}.dlq"], partitions=3)
    return name
