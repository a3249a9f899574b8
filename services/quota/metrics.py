"""Quota metrics. Labels are asset, figure, state and reason only (never ids)."""
from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

RECONCILIATION_DIFFERENCE = Gauge(
    "countypool_quota_reconciliation_difference",
    "Our pool figure against the ledger's, in the asset's smallest unit: the absolute differences of each county's "
    "latest settled reconciliation (nothing in flight), summed over counties (0 = books agree)",
    ["asset", "figure"],
)
RECONCILIATION_UNSETTLED = Gauge(
    "countypool_quota_reconciliation_unsettled_counties",
    "Counties the latest reconciliation run could not read with nothing in flight (their difference figures are "
    "those of an earlier run)",
)
RECONCILIATION_LAST_RUN = Gauge(
    "countypool_quota_reconciliation_last_run_timestamp_seconds",
    "When the last reconciliation run that read the ledger finished (unix time): one that stops after it once ran "
    "leaves the difference figures as they were",
)
SAGA_TRANSITIONS = Counter("countypool_quota_request_transitions_total", "Request state changes by new state",
                           ["state"])
LEDGER_REFUSALS = Counter("countypool_quota_ledger_refusals_total", "Transfers of ours the ledger refused",
                          ["purpose", "reason"])
RESERVE_LATENCY = Histogram("countypool_quota_request_to_reserved_seconds", "From a request's arrival to reserved",
                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400))


class _PoolCollector:
    """countypool_quota_pool_units{county,asset,figure}: the pool's figures, read from the database when
    Prometheus scrapes (released, retired, allocated, reserved, available), in the asset's smallest unit."""

    runtime = None

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from services.quota.application.pool import county_pool
        from services.quota.storage.counties import county_codes

        g = GaugeMetricFamily("countypool_quota_pool_units", "County pool figures per asset (smallest unit)",
                              labels=["county", "asset", "figure"])
        rt = self.runtime
        if rt is not None:
            try:
                with rt.db.read_snapshot() as s:  # figures of one moment; no write lock on SQLite
                    for county in county_codes(s):
                        for asset, f in county_pool(s, county).figures.items():
                            for figure in ("released", "retired", "allocated", "reserved", "available"):
                                g.add_metric([county, asset, figure], getattr(f, figure))
            except Exception:  # noqa: BLE001 - a scrape must not fail because the database blinked
                pass
        yield g


POOL = _PoolCollector()
REGISTRY.register(POOL)
