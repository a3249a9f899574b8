"""countypool_ledger_transfers_total is labelled by result and code, and a code is the caller's text: however
many distinct codes callers send, the series stay bounded (the first CODE_LABELS_MAX codes, then "other")."""
from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import REGISTRY

from services.ledger import metrics
from services.ledger.domain import TransferResult


CAP = getattr(metrics, "CODE_LABELS_MAX", 200)


def _codes() -> set[str]:
    return {s.labels["code"] for m in REGISTRY.collect() if m.name == "countypool_ledger_transfers"
            for s in m.samples if s.name == "countypool_ledger_transfers_total"}


def _ok_total() -> float:
    return sum(s.value for m in REGISTRY.collect() if m.name == "countypool_ledger_transfers" for s in m.samples
               if s.name == "countypool_ledger_transfers_total" and s.labels["result"] == "ok")


def test_codes_past_the_cap_are_counted_under_other(monkeypatch):
    # the registry is the process's: other tests may have seen codes before (the cap counts those too); the
    # codes seen here are forgotten afterwards, so that tests after this one keep their own codes' series
    monkeypatch.setattr(metrics, "_codes", set(metrics._codes))
    total_before = _ok_total()
    requests = [SimpleNamespace(code=f"caller-code-{i}") for i in range(CAP + 300)]
    outcome = SimpleNamespace(results=[SimpleNamespace(result=TransferResult.ok)] * len(requests))
    metrics.count_results(requests, outcome)
    after = _codes()
    assert len(after) <= CAP + 1, len(after)
    assert "other" in after
    assert _ok_total() - total_before == len(requests), "every transfer is still counted"
