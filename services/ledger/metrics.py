"""Ledger metrics: transfers by outcome and code, pending per asset, journal length. Labels are asset,
outcome and code only (never account ids). A transfer's code is the caller's text: the first CODE_LABELS_MAX
distinct codes this process sees get a series of their own, any further one is counted under "other", so that
callers with many codes cannot make the series unbounded. Gauges are read from the database when Prometheus
scrapes."""
from __future__ import annotations

import functools
import logging

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.orm import Session

from services.ledger.storage.repository import LedgerRepository
from shared.metrics import when_committed

log = logging.getLogger(__name__)

TRANSFERS = Counter("countypool_ledger_transfers_total", "Transfer requests by result and code", ["result", "code"])
EXPIRY_STUCK = Gauge("countypool_ledger_expiry_stuck_transfers",
                     "Due pending transfers the ledger cannot expire (logged once each; passed over until restart)")
CODE_LABELS_MAX = 200
OTHER_CODE = "other"
_codes: set[str] = set()  # codes with a series of their own


class _Collector:
    runtime = None

    def collect(self):
        pending_n = GaugeMetricFamily("countypool_ledger_pending_transfers", "Pending transfers", labels=["asset"])
        pending_amt = GaugeMetricFamily("countypool_ledger_pending_amount_units",
                                        "Pending amount in the asset's smallest unit", labels=["asset"])
        journal = GaugeMetricFamily("countypool_ledger_journal_length", "Journal entries")
        imbalance = GaugeMetricFamily("countypool_ledger_asset_imbalance_units",
                                      "Sum of all posted balances of an asset (must be 0)", labels=["asset"])
        rt = self.runtime
        if rt is not None:
            try:
                with rt.db.sessions() as s:
                    repo = LedgerRepository(s)
                    sums = repo.asset_sums()
                    # every asset with accounts, 0 when nothing is pending: a series that vanished once its last
                    # hold was resolved left dashboards at the last value
                    pending = {asset: (0, 0) for asset, *_ in sums}
                    pending.update((asset, (n, int(amount))) for asset, n, amount in repo.pending_totals())
                    for asset, (n, amount) in sorted(pending.items()):
                        pending_n.add_metric([asset], n)
                        pending_amt.add_metric([asset], amount)
                    journal.add_metric([], repo.head().seq)
                    for asset, posted, _pending, _n in sums:
                        imbalance.add_metric([asset], int(posted or 0))
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the DB blinked
                log.debug("ledger gauges unavailable: %s", exc)
        yield from (pending_n, pending_amt, journal, imbalance)


_COLLECTOR = _Collector()
REGISTRY.register(_COLLECTOR)


class LedgerMetrics:
    def __init__(self, runtime):
        self.runtime = runtime

    def install(self) -> None:
        _COLLECTOR.runtime = self.runtime


def count_when_committed(session: Session, requests, outcome) -> None:
    """Count a batch's results once the session's outermost transaction commits (shared.metrics.when_committed)."""
    when_committed(session, functools.partial(count_results, requests, outcome))


def count_results(requests, outcome) -> None:
    counts: dict[tuple[str, str], int] = {}  # a batch has few (result, code) pairs: one labels() call each
    for req, res in zip(requests, outcome.results):
        key = (res.result.value, req.code or "none")
        counts[key] = counts.get(key, 0) + 1
    for (result, code), n in counts.items():
        TRANSFERS.labels(result, code_label(code)).inc(n)


def code_label(code: str) -> str:
    """``code`` while it is one of the first CODE_LABELS_MAX distinct codes seen, else "other"."""
    if code not in _codes:
        if len(_codes) >= CODE_LABELS_MAX:
            return OTHER_CODE
        _codes.add(code)
    return code
