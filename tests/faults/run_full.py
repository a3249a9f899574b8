"""The full fault run, `make test-faults` (about 6 minutes on 2 cores): a stream of about 7,000 county
events at 30/s for four minutes while each service is SIGKILLed three times, the Kafka broker is restarted
once cleanly and once with SIGKILL, PostgreSQL is restarted twice and crashed once (immediate shutdown), and
the ledger is stopped twice (5 s, and 50 s: longer than the consumer's 45 s Kafka session, so it loses its
partitions and must rejoin and resume from its database positions) and throttled once (20 s at half speed);
settlement is SIGKILLed in the middle of a finalization; then every effect and invariant is checked
(tests/faults/runner.py). The report also goes to bench/results/faults_full.json.

Not collected by `make test` (the file name does not match test_*.py); run it with
`make test-faults`, `pytest -s tests/faults/run_full.py`, or `python -m tests.faults.run_full [--seed N]`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import pytest

from tests.faults.runner import RunConfig, run

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / "bench" / "results" / "faults_full.json"

FULL = RunConfig(
    name="full", releases=2000, ledger=2000, receipts=1000, assessment=2200, rate=30,
    kills_per_service=3, kafka_restarts=1, kafka_kills=1, pg_restarts=2, pg_crashes=1,
    ledger_pauses=[5.0, 50.0], ledger_throttles=[20.0], settle_timeout=300, kill_during_finalize=True,
)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.postgres
def test_full_fault_run(fault_infra, tmp_path_factory, capsys):
    infra, workdir, outcome = fault_infra
    rep = run(FULL, workdir, tmp_path_factory.mktemp("generated"), infra, out=RESULT)
    assert not rep.failures, "\n".join(rep.failures)
    outcome["passed"] = True


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.faults.run_full")
    ap.add_argument("--seed", type=int, default=FULL.seed)
    ap.add_argument("--rate", type=float, default=FULL.rate)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args()
    from tests.faults.conftest import _port  # same port choice as the test
    from tests.faults.infra import (DEFAULT_CONTROLLER_PORT, DEFAULT_KAFKA_PORT, DEFAULT_PG_PORT, Infra,
                                    check_prerequisites, make_workdir)

    ports = (_port("COUNTYPOOL_FAULTS_KAFKA_PORT", DEFAULT_KAFKA_PORT),
             _port("COUNTYPOOL_FAULTS_CONTROLLER_PORT", DEFAULT_CONTROLLER_PORT),
             _port("COUNTYPOOL_FAULTS_PG_PORT", DEFAULT_PG_PORT))
    check_prerequisites(*ports)
    workdir = make_workdir()
    cfg = dataclasses.replace(FULL, seed=args.seed, rate=args.rate)
    rep = run(cfg, workdir, Path(tempfile.mkdtemp(prefix="countypool-gen-")),
              Infra(workdir, kafka_port=ports[0], controller_port=ports[1], pg_port=ports[2]), out=args.out)
    print(f"data and logs: {workdir}")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
