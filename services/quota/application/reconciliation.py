"""Our pool figures against the ledger's balances, read over the ledger's HTTP API.

The two sides are read at different moments, and a transfer of ours between them (asked, or answered, in the
meantime) shows as a difference that is no fault. So a reading counts (``settled``) only when nothing of the county
was on its way between the two books:
- our side is read in one snapshot (``Database.read_snapshot``: the figures, the transfers asked and their answers all of
  one moment), and never held open while the ledger is asked (on SQLite that would keep the service's writers out);
- nothing of ours is in flight: every transfer we asked the ledger for (intake, retire, reserve, post, void) has
  its answer taken in, or was asked more than ``STUCK_AFTER_SECONDS`` ago (it is stuck, not on its way: a command
  dead-lettered, the ledger's consumer down; the difference it makes is a fault to see, reported as ``stuck``);
- our side read again after the ledger's balances is the same: nothing was asked or answered meanwhile.
Then the ledger's balances of our accounts are those of that moment whatever journal position each answer of the
ledger was read at: only our transfers move them (and the ledger's expiry of a reservation, which our own deadline,
counted from an earlier start, comes before). A reading that is not settled is taken again, ``ATTEMPTS`` times in
all; if it never settles it is reported as read (``settled`` false) and the metric keeps the county's last settled
figures. A difference in a settled reading is a fault (countypool_quota_reconciliation_difference)."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Sequence

import httpx

from shared.amounts import parse_amount
from shared.db import Database
from services.quota.application.pool import CountyPool, county_pool
from services.quota.application.tx import utcnow
from services.quota.domain.assets import ASSETS
from services.quota.domain.ledger_moves import pool_account
from services.quota.domain.reconciliation import Difference, LedgerFigures, ledger_figures_from_balances, reconcile
from services.quota.metrics import RECONCILIATION_DIFFERENCE, RECONCILIATION_LAST_RUN, RECONCILIATION_UNSETTLED
from services.quota.storage import request_store, transfer_store

# what a difference can be about: the figures compared, and lots taken in that the ledger refused to book
FIGURES = ("allocated", "in_pool", "reserved", "retired", "intake_refused")
ATTEMPTS = 3  # readings of a county before it is reported unsettled
PAUSE_SECONDS = 0.2  # between two readings of the counties not settled yet
STUCK_AFTER_SECONDS = 300  # a transfer unanswered this long no longer holds a reading back

log = logging.getLogger(__name__)


class LedgerUnavailable(Exception):
    pass


class LedgerBalances:
    """The two balance queries reconciliation needs. ``client`` may be any httpx.Client (tests pass the
    in-process ledger's TestClient); otherwise one is made for ``base_url``."""

    def __init__(self, base_url: str, token: str | None, client: httpx.Client | None = None, timeout: float = 10):
        self.client = client or httpx.Client(base_url=base_url, timeout=timeout)
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _ok(self, r: httpx.Response) -> list[dict]:
        if r.status_code != 200:
            raise LedgerUnavailable(f"ledger answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def _unreachable(self, exc: httpx.HTTPError) -> LedgerUnavailable:
        """What callers are told: the error's kind, never its text, which may quote our request's headers (an
        'Illegal header value' quoted the token whole to any quota:read caller). The detail is logged, redacted."""
        detail = str(exc).replace(self.token, "***") if self.token else str(exc)
        log.warning("the ledger could not be read: %s", detail)
        return LedgerUnavailable(f"the ledger could not be read ({type(exc).__name__})")

    def by_prefix(self, prefix: str) -> list[dict]:
        try:
            r = self.client.get("/v1/balances", params={"address_prefix": prefix, "limit": 10000}, headers=self.headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._ok(r)

    def by_ids(self, account_ids: list[str]) -> list[dict]:
        out: list[dict] = []
        for i in range(0, len(account_ids), 1000):
            try:
                r = self.client.post("/v1/balances:query", json={"account_ids": account_ids[i:i + 1000]},
                                     headers=self.headers)
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from exc
            out.extend(self._ok(r))
        return out


@dataclass(frozen=True)
class Reconciliation:
    county_code: str
    ours: CountyPool
    ledger: dict[str, LedgerFigures]
    differences: list[Difference]
    in_flight: int  # our transfers (any purpose) the ledger has not answered yet
    settled: bool = True  # nothing of ours on its way while both sides were read: a difference is a fault
    attempts: int = 1
    stuck: int = 0  # of in_flight, those asked more than STUCK_AFTER_SECONDS ago

    @property
    def agrees(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class _OurSide:
    pool: CountyPool
    transfers: dict[tuple[str, str], int]  # (purpose, state) -> count
    project_ids: tuple[str, ...]
    project_accounts: tuple[str, ...]
    stuck: int  # transfers unanswered since before the cutoff

    @property
    def in_flight(self) -> int:
        return sum(n for (_, state), n in self.transfers.items() if state == "asked")


def _our_side(db: Database, county_code: str, stuck_before: datetime) -> _OurSide:
    with db.read_snapshot() as s:
        return _OurSide(county_pool(s, county_code), transfer_store.state_counts(s, county_code),
                        tuple(sorted(request_store.project_ids_of_county(s, county_code))),
                        tuple(transfer_store.acknowledged_project_accounts(s, county_code)),
                        transfer_store.unanswered(s, county_code, asked_before=stuck_before))


def _units(b: dict, field: str) -> int:
    return parse_amount(b[field], ASSETS[b["asset"]].scale, allow_zero=True, allow_negative=True)


def _reading(db: Database, ledger: LedgerBalances, county_code: str) -> Reconciliation:
    stuck_before = utcnow() - timedelta(seconds=STUCK_AFTER_SECONDS)
    before = _our_side(db, county_code, stuck_before)
    accounts = list(before.project_accounts)
    rows = ledger.by_prefix(f"county:{county_code}/") + (ledger.by_ids(accounts) if accounts else [])
    after = _our_side(db, county_code, stuck_before)
    rows = [b for b in rows if b["asset"] in ASSETS]
    balances = {b["account_id"]: _units(b, "balance") for b in rows}
    pending = {b["account_id"]: _units(b, "debits_pending") for b in rows}
    figures = ledger_figures_from_balances(county_code, balances, before.project_ids)
    theirs = {asset: LedgerFigures(f.pool, f.allocated, f.retired, pending.get(pool_account(county_code, asset), 0))
              for asset, f in figures.items()}
    ours = before.pool
    refused = [Difference(asset, "intake_refused", n, 0) for asset, n in ours.refused.items() if n]
    differences = sorted(reconcile(ours.figures, theirs) + refused, key=lambda d: (d.asset, d.figure))
    settled = before.in_flight == before.stuck and before == after
    return Reconciliation(county_code, ours, theirs, differences, before.in_flight, settled, stuck=before.stuck)


def reconcile_counties(db: Database, ledger: LedgerBalances, county_codes: Sequence[str], *,
                       attempts: int = ATTEMPTS, pause: float = PAUSE_SECONDS) -> list[Reconciliation]:
    """One report per county, in the order given: each county read until its reading settles, at most ``attempts``
    times (a pause between two rounds of readings). ``db``: the service's database (each reading of
    our side is a short snapshot of its own). Raises LedgerUnavailable."""
    reports: dict[str, Reconciliation] = {}
    todo = list(dict.fromkeys(county_codes))
    for attempt in range(1, max(1, attempts) + 1):
        if attempt > 1:
            time.sleep(pause)
        for county in todo:
            reports[county] = replace(_reading(db, ledger, county), attempts=attempt)
        todo = [c for c in todo if not reports[c].settled]
        if not todo:
            break
    return [reports[c] for c in county_codes]


def reconcile_county(db: Database, ledger: LedgerBalances, county_code: str, **kw) -> Reconciliation:
    return reconcile_counties(db, ledger, [county_code], **kw)[0]


_last_settled: dict[str, tuple[Difference, ...]] = {}
_metric_lock = threading.Lock()


def publish_metric(reports: list[Reconciliation]) -> None:
    """The gauge holds, per asset and figure, the sum of absolute differences over the counties given (every
    county: one left out is forgotten), each county's as its latest settled reading found them: an unsettled
    reading (something in flight) changes nothing of it. countypool_quota_reconciliation_unsettled_counties says
    how many counties of this run never settled."""
    global _last_settled
    with _metric_lock:
        _last_settled = {r.county_code: tuple(r.differences) if r.settled else _last_settled.get(r.county_code, ())
                         for r in reports}
        total = {(a, f): 0 for a in ASSETS for f in FIGURES}
        for differences in _last_settled.values():
            for d in differences:
                total[(d.asset, d.figure)] += abs(d.diff)
        for (asset, figure), value in total.items():
            RECONCILIATION_DIFFERENCE.labels(asset, figure).set(value)
        RECONCILIATION_UNSETTLED.set(sum(1 for r in reports if not r.settled))
        RECONCILIATION_LAST_RUN.set_to_current_time()
