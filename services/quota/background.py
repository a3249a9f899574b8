"""Periodic work of the quota service, run beside the relay and the consumer (runtime.background):
expiring requests past their deadline, optional automatic allocation rounds, optional reconciliation."""
from __future__ import annotations

import logging
from typing import Callable

from shared.periodic import Periodic
from shared.runtime import ServiceRuntime
from services.quota.application.expiry import expire_request
from services.quota.application.reconciliation import LedgerBalances, publish_metric, reconcile_counties
from services.quota.application.rounds import run_round
from services.quota.application.tx import Tx, utcnow
from services.quota.storage import request_store
from services.quota.storage.counties import county_codes

log = logging.getLogger(__name__)


class RequestExpiry(Periodic):
    """No request waits forever: past its deadline it expires and its reservation is voided."""

    name = "request-expiry"

    def __init__(self, runtime: ServiceRuntime, interval: float, batch: int = 200):
        super().__init__(interval)
        self.runtime = runtime
        self.batch = batch

    def step(self) -> int:
        with self.runtime.db.sessions() as session:
            due = request_store.due_requests(session, utcnow(), self.batch)
        done = 0
        for request_id, county in due:  # one transaction each: a county is locked only briefly
            try:
                done += self.runtime.transaction(lambda uow: expire_request(Tx.of_uow(uow), request_id, county))
            except Exception as exc:  # noqa: BLE001 - it stays due and is tried next tick; the others expire now
                log.warning("expiring request %s failed: %s", request_id, exc)
        return done if len(due) == self.batch else 0


class AutoRounds(Periodic):
    """Optional (auto_round_interval_seconds > 0): run a round for every county with waiting requests."""

    name = "auto-rounds"

    def __init__(self, runtime: ServiceRuntime, interval: float):
        super().__init__(interval)
        self.runtime = runtime

    def step(self) -> int:
        with self.runtime.db.sessions() as session:
            counties = request_store.counties_with_waiting_requests(session)
        for county in sorted(counties):
            try:
                self.runtime.transaction(lambda uow: run_round(Tx.of_uow(uow), county, "auto-round"))
            except Exception as exc:  # noqa: BLE001 - one county's failure must not hold back the others' rounds
                log.warning("automatic round of county %s failed: %s", county, exc)
        return 0


class PeriodicReconciliation(Periodic):
    """Optional (reconcile_interval_seconds > 0): keeps the reconciliation metric current."""

    name = "reconciliation"

    def __init__(self, runtime: ServiceRuntime, ledger: Callable[[], LedgerBalances], interval: float):
        super().__init__(interval)
        self.runtime = runtime
        self.ledger = ledger

    def step(self) -> int:
        with self.runtime.db.sessions() as session:
            counties = county_codes(session)
        # each county's figures read in short snapshots of their own, never held open while the ledger is asked
        publish_metric(reconcile_counties(self.runtime.db, self.ledger(), counties))
        return 0
