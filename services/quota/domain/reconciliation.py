"""Our pool view against the ledger's posted balances, per asset.

Compared figures (balance = posted credits - posted debits):
- ``in_pool``:   available + reserved   vs the pool account (pending debits are not posted yet)
- ``allocated``: allocated              vs the sum of the county's project accounts
- ``retired``:   retired                vs the retired account
- ``reserved``:  reserved               vs the pool account's pending debits (only when the caller gives
                 them: ``LedgerFigures.reserved``; a request still waiting for the ledger's answer shows here)
A difference right after a step may be a transfer still in flight; one that stays is a fault.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from services.quota.domain.assets import ASSETS
from services.quota.domain.ledger_moves import pool_account, project_account, retired_account
from services.quota.domain.pool_view import PoolFigures


@dataclass(frozen=True)
class LedgerFigures:
    pool: int
    allocated: int
    retired: int
    reserved: int | None = None  # pending debits of the pool account, when known


@dataclass(frozen=True)
class Difference:
    asset: str
    figure: str  # "in_pool" | "allocated" | "retired" | "reserved"
    ours: int
    ledger: int

    @property
    def diff(self) -> int:
        return self.ours - self.ledger


def ledger_figures_from_balances(
    county_code: str, balances: Mapping[str, int], project_ids: Iterable[str]
) -> dict[str, LedgerFigures]:
    """Gather LedgerFigures from posted account balances named by ledger_moves' convention.
    ``project_ids``: the county's projects (project accounts carry no county in their name).
    A missing account counts as zero here: the caller asked the ledger for exactly these accounts."""
    projects = list(project_ids)
    return {
        asset: LedgerFigures(
            pool=balances.get(pool_account(county_code, asset), 0),
            allocated=sum(balances.get(project_account(p, asset), 0) for p in projects),
            retired=balances.get(retired_account(county_code, asset), 0),
        )
        for asset in ASSETS
    }


def reconcile(ours: Mapping[str, PoolFigures], ledger: Mapping[str, LedgerFigures]) -> list[Difference]:
    """Every figure that differs, sorted by asset then figure; empty when the books agree.
    An asset missing on one side counts as zeros there."""
    zero = LedgerFigures(0, 0, 0)
    out = []
    for asset in sorted(set(ours) | set(ledger)):
        mine = ours.get(asset)
        theirs = ledger.get(asset, zero)
        pairs = (
            ("allocated", mine.allocated if mine else 0, theirs.allocated),
            ("in_pool", mine.in_pool if mine else 0, theirs.pool),
            ("retired", mine.retired if mine else 0, theirs.retired),
        )
        if theirs.reserved is not None:
            pairs += (("reserved", mine.reserved if mine else 0, theirs.reserved),)
        out.extend(Difference(asset, figure, a, b) for figure, a, b in sorted(pairs) if a != b)
    return out
