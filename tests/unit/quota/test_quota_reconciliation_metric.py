"""The reconciliation gauge says what each county's latest settled reading found: a reading taken while transfers
were in flight (not settled) leaves the county's figures as they were, a settled one replaces them, and a county
no longer reported is forgotten."""
from __future__ import annotations

from prometheus_client import REGISTRY

from services.quota.application.pool import CountyPool
from services.quota.application.reconciliation import Reconciliation, publish_metric
from services.quota.domain.reconciliation import Difference


def _report(county: str, *differences: Difference, settled: bool = True) -> Reconciliation:
    return Reconciliation(county, CountyPool(county, {}, {}, {}), {}, list(differences), 0 if settled else 1, settled)


def _value(figure: str) -> float:
    return REGISTRY.get_sample_value("countypool_quota_reconciliation_difference", {"asset": "COD", "figure": figure})


def _unsettled() -> float:
    return REGISTRY.get_sample_value("countypool_quota_reconciliation_unsettled_counties")


def test_only_settled_readings_move_the_gauge():
    publish_metric([_report("320612", Difference("COD", "in_pool", 5, 8)), _report("320613")])
    assert (_value("in_pool"), _unsettled()) == (3, 0)

    # a void on its way in 320613: its reading shows 6 t reserved in the ledger only, and is not settled
    publish_metric([_report("320612", Difference("COD", "in_pool", 5, 8)),
                    _report("320613", Difference("COD", "reserved", 0, 6), settled=False)])
    assert (_value("in_pool"), _value("reserved"), _unsettled()) == (3, 0, 1)

    publish_metric([_report("320612"), _report("320613", Difference("COD", "reserved", 0, 6), settled=False)])
    assert (_value("in_pool"), _value("reserved")) == (0, 0), "320612 settled again, and agrees now"

    publish_metric([_report("320612", Difference("COD", "retired", 1, 0)),
                    _report("320613", Difference("COD", "reserved", 0, 6))])
    assert (_value("retired"), _value("reserved"), _unsettled()) == (1, 6, 0), "a settled difference is a fault"

    publish_metric([_report("320613", Difference("COD", "reserved", 0, 6), settled=False)])
    assert (_value("retired"), _value("reserved")) == (0, 6), "320612 not reported: forgotten; 320613 kept"
    publish_metric([])
    assert (_value("reserved"), _unsettled()) == (0, 0)


def test_the_periodic_reconciliation_reads_the_ledger_outside_any_session_of_ours(monkeypatch):
    from contextlib import contextmanager

    from services.quota import background

    open_sessions = []

    class Db:
        @staticmethod
        @contextmanager
        def sessions():
            open_sessions.append(1)
            try:
                yield None
            finally:
                open_sessions.pop()

    class Runtime:
        db = Db

    monkeypatch.setattr(background, "county_codes", lambda _s: ["320612", "320613"])
    seen = []

    def reconcile(db, ledger, counties):  # given the service's database, it opens its own short snapshots
        seen.append((db is Db, ledger, list(counties), len(open_sessions)))
        return [_report(c) for c in counties]

    monkeypatch.setattr(background, "reconcile_counties", reconcile)
    background.PeriodicReconciliation(Runtime, lambda: "ledger", interval=1).step()
    assert seen == [(True, "ledger", ["320612", "320613"], 0)]


def test_each_run_says_when_it_read_the_ledger():
    """A reconciliation that stops after it once ran leaves its figures as they were: the run's time tells."""
    import time

    before = time.time()
    publish_metric([_report("320612")])
    at = REGISTRY.get_sample_value("countypool_quota_reconciliation_last_run_timestamp_seconds")
    assert at is not None and before - 1 <= at <= time.time() + 1
