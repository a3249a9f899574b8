"""The short fault run, part of `make test` (about two minutes): one SIGKILL of each service, one Kafka
broker restart, one PostgreSQL restart, the ledger stopped for 5 s and throttled for 6 s (half speed), at random
moments under a stream of about 1,100 county events (30/s), allocation rounds at 75 % and 92 % of it; then every
effect and invariant is checked (see tests/faults/runner.py). The full run, with several faults of each kind, is
`make test-faults`."""
from __future__ import annotations

import pytest

from tests.faults.runner import RunConfig, run

SHORT = RunConfig(
    name="short", releases=400, ledger=180, receipts=150, assessment=150, rate=30,
    kills_per_service=1, kafka_restarts=1, kafka_kills=0, pg_restarts=1, ledger_pauses=[5.0], ledger_throttles=[6.0],
    settle_timeout=150, kill_during_finalize=False, fault_window=(0.05, 0.55),
)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.postgres
def test_nothing_lost_or_doubled_under_faults(fault_infra, tmp_path_factory, capsys):
    infra, workdir, outcome = fault_infra
    rep = run(SHORT, workdir, tmp_path_factory.mktemp("generated"), infra, out=workdir / "report.json")
    with capsys.disabled():  # the counts belong in the test output, not only in a failure's capture
        print(f"\nfault run: {rep.counts.get('inputs sent')} inputs, {rep.counts.get('faults injected')} faults, "
              f"{rep.counts.get('effects checked (total)')} effects checked, {rep.counts.get('durations (s)')}")
    assert not rep.failures, "\n".join(rep.failures)
    outcome["passed"] = True
