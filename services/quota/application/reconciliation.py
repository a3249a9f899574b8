"""Our pool figures against the ledger's balances, read over the ledger's HTTP API.

Both sides are read at slightly different moments, so a transfer in flight shows as a difference for a
moment; the report says how many of our transfers still wait for the ledger's answer. A difference that
stays while nothing is in flight is a fault (the metric countypool_quota_reconciliation_difference)."""
from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session

from shared.amounts import parse_amount
from services.quota.application.pool import CountyPool, county_pool
from services.quota.domain.assets import ASSETS
from services.quota.domain.ledger_moves import pool_account
from services.quota.domain.reconciliation import Difference, LedgerFigures, ledger_figures_from_balances, reconcile
from services.quota.metrics import RECONCILIATION_DIFFERENCE
from services.quota.storage import request_store, transfer_store

FIGURES = ("allocated", "in_pool", "reserved", "retired")


class LedgerUnavailable(Exception):
    pass


class LedgerBalances:
    """The two balance queries reconciliation needs. ``client`` may be any httpx.Client (tests pass the
    in-process ledger's TestClient); otherwise one is made for ``base_url``."""

    def __init__(self, base_url: str, token: str | None, client: httpx.Client | None = None, timeout: float = 10):
        self.client = client or httpx.Client(base_url=base_url, timeout=timeout)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _ok(self, r: httpx.Response) -> list[dict]:
        if r.status_code != 200:
            raise LedgerUnavailable(f"ledger answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def by_prefix(self, prefix: str) -> list[dict]:
        try:
            r = self.client.get("/v1/balances", params={"address_prefix": prefix, "limit": 10000}, headers=self.headers)
        except httpx.HTTPError as exc:
            raise LedgerUnavailable(str(exc)) from exc
        return self._ok(r)

    def by_ids(self, account_ids: list[str]) -> list[dict]:
        out: list[dict] = []
        for i in range(0, len(account_ids), 1000):
            try:
                r = self.client.post("/v1/balances:query", json={"account_ids": account_ids[i:i + 1000]},
                                     headers=self.headers)
            except httpx.HTTPError as exc:
                raise LedgerUnavailable(str(exc)) from exc
            out.extend(self._ok(r))
        return out


@dataclass(frozen=True)
class Reconciliation:
    county_code: str
    ours: CountyPool
    ledger: dict[str, LedgerFigures]
    differences: list[Difference]
    in_flight: int  # our intake/reserve/post transfers the ledger has not answered yet

    @property
    def agrees(self) -> bool:
        return not self.differences


def _units(b: dict, field: str) -> int:
    return parse_amount(b[field], ASSETS[b["asset"]].scale, allow_zero=True, allow_negative=True)


def reconcile_county(session: Session, ledger: LedgerBalances, county_code: str) -> Reconciliation:
    in_flight = transfer_store.unanswered(session, county_code)
    ours = county_pool(session, county_code)
    project_accounts = transfer_store.acknowledged_project_accounts(session, county_code)
    rows = ledger.by_prefix(f"county:{county_code}/") + (ledger.by_ids(project_accounts) if project_accounts else [])
    rows = [b for b in rows if b["asset"] in ASSETS]
    balances = {b["account_id"]: _units(b, "balance") for b in rows}
    pending = {b["account_id"]: _units(b, "debits_pending") for b in rows}
    figures = ledger_figures_from_balances(county_code, balances, request_store.project_ids_of_county(session, county_code))
    theirs = {asset: LedgerFigures(f.pool, f.allocated, f.retired, pending.get(pool_account(county_code, asset), 0))
              for asset, f in figures.items()}
    return Reconciliation(county_code, ours, theirs, reconcile(ours.figures, theirs), in_flight)


def publish_metric(reports: list[Reconciliation]) -> None:
    """The gauge holds, per asset and figure, the sum of absolute differences over the counties given."""
    total = {(a, f): 0 for a in ASSETS for f in FIGURES}
    for rep in reports:
        for d in rep.differences:
            total[(d.asset, d.figure)] += abs(d.diff)
    for (asset, figure), value in total.items():
        RECONCILIATION_DIFFERENCE.labels(asset, figure).set(value)
