"""A Kafka broker of a test's own (deploy/kafka/kafka.sh on free ports, its data in a temporary folder): for a test
that stops the broker or needs a listener the suite's broker lacks, so that no other test, in this process or in a
parallel worker, loses the suite's broker meanwhile."""
from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.faults.infra import free_port

SCRIPT = str(Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh")


class OwnKafka:
    def __init__(self, data: Path, **env: str):
        self.data = data
        self.env = {**os.environ, "KAFKA_PORT": str(free_port()), "KAFKA_CONTROLLER_PORT": str(free_port()),
                    "KAFKA_DATA_DIR": str(data), "KAFKA_HEAP_OPTS": "-Xmx256m -Xms128m", **env}
        self.bootstrap = f"127.0.0.1:{self.env['KAFKA_PORT']}"

    def run(self, action: str) -> None:
        done = subprocess.run([SCRIPT, action], env=self.env, capture_output=True, text=True, timeout=240)
        # no skip: where the suite runs, the broker that kafka.sh starts for it starts here as well
        assert done.returncode == 0, f"kafka.sh {action}: {done.stdout}{done.stderr}"


@contextmanager
def own_kafka(data: Path, **env: str) -> Iterator[OwnKafka]:
    """A started broker, stopped and its data deleted afterwards. ``env``: more kafka.sh settings (e.g. SASL)."""
    broker = OwnKafka(data, **env)
    broker.run("start")
    try:
        yield broker
    finally:
        subprocess.run([SCRIPT, "stop"], env=broker.env, capture_output=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)
