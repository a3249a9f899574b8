"""Settlement metrics: runs by outcome, and each statement's money by line kind and the periods by status,
read from the database when Prometheus scrapes. Labels: county, period, kind, status, outcome."""
from __future__ import annotations

from datetime import datetime, timezone

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from services.settlement.storage.rows import from_db
from services.settlement.storage.tables import ledger_postings as P
from services.settlement.storage.tables import statement_lines as L
from services.settlement.storage.tables import statements as S
from services.settlement.storage.tables import waiting_inputs as W

RUNS = Counter("countypool_settlement_runs_total", "Draft and finalize runs by outcome", ["action", "outcome"])
for _action in ("draft", "finalize"):
    for _outcome in ("succeeded", "failed", "refused"):
        RUNS.labels(_action, _outcome)  # present from the start, so the first failure is an increase


class _StatementCollector:
    runtime = None

    def collect(self):
        amounts = GaugeMetricFamily("countypool_settlement_statement_amount_fen",
                                    "Money lines of each current statement by kind (fen)", labels=["county", "period", "kind"])
        periods = GaugeMetricFamily("countypool_settlement_periods", "Statements by status", labels=["county", "status"])
        postings = GaugeMetricFamily("countypool_settlement_ledger_postings",
                                     "Ledger postings of finalized statements by the ledger's answer (requested: none yet)",
                                     labels=["county", "status"])
        waiting = GaugeMetricFamily("countypool_settlement_oldest_unanswered_posting_seconds",
                                    "Age of the oldest posting the ledger has not answered (0: none)")
        inputs = GaugeMetricFamily("countypool_settlement_inputs_waiting",
                                   "Receipts and statistics reports from the intake topic waiting for their enterprise "
                                   "(state waiting), or refused when it became known (state refused)",
                                   labels=["kind", "state"])
        rt = self.runtime
        if rt is not None:
            try:
                with rt.db.read_snapshot() as s:  # both figures of one moment; no write lock on SQLite
                    for county, status, n in s.execute(select(S.c.county_code, S.c.status, func.count())
                                                       .group_by(S.c.county_code, S.c.status)).all():
                        periods.add_metric([county, status], n)
                    q = (select(L.c.county_code, L.c.period, L.c.kind, func.sum(L.c.amount_fen))
                         .where(L.c.kind != "statistics_share")
                         .group_by(L.c.county_code, L.c.period, L.c.kind))
                    for county, period, kind, total in s.execute(q).all():
                        amounts.add_metric([county, period, kind], int(total or 0))
                    for county, status, n in s.execute(select(P.c.county_code, P.c.status, func.count())
                                                       .group_by(P.c.county_code, P.c.status)).all():
                        postings.add_metric([county, status], n)
                    oldest = s.execute(select(func.min(P.c.updated_at)).where(P.c.status == "requested")).scalar()
                    waiting.add_metric([], 0 if oldest is None else max(
                        0.0, (datetime.now(timezone.utc) - from_db(oldest)).total_seconds()))
                    counts = dict.fromkeys([(k, st) for k in ("tax_receipt", "statistics_report")
                                            for st in ("waiting", "refused")], 0)
                    refused = W.c.refused_reason.is_not(None)
                    for kind, is_refused, n in s.execute(select(W.c.kind, refused, func.count())
                                                         .group_by(W.c.kind, refused)).all():
                        counts[(kind, "refused" if is_refused else "waiting")] = n
                    for (kind, state), n in counts.items():
                        inputs.add_metric([kind, state], n)
            except Exception:  # noqa: BLE001 - a scrape must not fail because the database blinked
                pass
        yield amounts
        yield periods
        yield postings
        yield waiting
        yield inputs


STATEMENTS = _StatementCollector()
REGISTRY.register(STATEMENTS)
