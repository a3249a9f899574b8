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


def test_codes_past_the_cap_are_counted_under_other():
    before = _codes()
    requests = [SimpleNamespace(code=f"caller-code-{i}") for i in range(CAP + 300)]
    outcome = SimpleNamespace(results=[SimpleNamespace(result=TransferResult.ok)] * len(requests))
    metrics.count_results(requests, outcome)
    after = _codes()
    assert len(after) <= CAP + 1, len(after)
    assert "other" in after
    total = sum(REGISTRY.get_sample_value("countypool_ledger_transfers_total", {"result": "ok", "code": c}) or 0
                for c in after - before)
    assert total >= 300, "every transfer is still counted"
