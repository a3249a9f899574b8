"""The private infrastructure of a fault run: ports (defaults Kafka 29192/29193, PostgreSQL 55532, or free
ones when those are taken; COUNTYPOOL_FAULTS_KAFKA_PORT, _CONTROLLER_PORT, _PG_PORT choose), and the
prerequisites (a JDK for the broker, PostgreSQL's server binaries). Missing prerequisites skip the test on a
developer machine and fail it when CI=true."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import require_or_skip
from tests.faults.infra import (
    DEFAULT_CONTROLLER_PORT, DEFAULT_KAFKA_PORT, DEFAULT_PG_PORT, Infra, MissingPrerequisite, check_prerequisites,
    free_port, make_workdir, port_free,
)



def _port(env: str, default: int) -> int:
    if os.environ.get(env):
        return int(os.environ[env])
    return default if port_free(default) else free_port()


@pytest.fixture
def fault_infra():
    """(Infra, workdir) on private ports and data dirs; the workdir is removed when the test passed."""
    kafka, controller, pg = (_port("COUNTYPOOL_FAULTS_KAFKA_PORT", DEFAULT_KAFKA_PORT),
                             _port("COUNTYPOOL_FAULTS_CONTROLLER_PORT", DEFAULT_CONTROLLER_PORT),
                             _port("COUNTYPOOL_FAULTS_PG_PORT", DEFAULT_PG_PORT))
    try:
        check_prerequisites(kafka, controller, pg)
    except MissingPrerequisite as exc:
        require_or_skip(f"the fault run's own Kafka and PostgreSQL ({exc})")  # fails when CI=true
    workdir = make_workdir()
    infra = Infra(workdir, kafka_port=kafka, controller_port=controller, pg_port=pg)
    outcome: dict = {}
    yield infra, workdir, outcome
    if outcome.get("passed"):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"fault run data and service logs kept in {workdir}")
