"""The pool's figures per asset, derived from lots and open requests (never stored apart from them).

    released  = retired + allocated + reserved + available
    available = what lots still hold minus what reserving/reserved requests hold
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from services.quota.domain.assets import ASSETS
from services.quota.domain.lots import Lot
from services.quota.domain.requests import QuotaRequest


@dataclass(frozen=True)
class PoolFigures:
    asset: str
    released: int  # everything taken in (releases and accepted reclamation)
    retired: int
    allocated: int  # consumed from lots by allocated requests
    reserved: int  # held by requests in reserving or reserved
    available: int  # what an allocation round may still grant

    @property
    def in_pool(self) -> int:
        """available + reserved: what the ledger's pool account holds (pending debits not yet posted)."""
        return self.available + self.reserved


def pool_figures(lots: Iterable[Lot], requests: Iterable[QuotaRequest]) -> dict[str, PoolFigures]:
    """Figures for every known asset (zeros where nothing happened), for one county's lots and requests."""
    released = dict.fromkeys(ASSETS, 0)
    retired = dict.fromkeys(ASSETS, 0)
    allocated = dict.fromkeys(ASSETS, 0)
    remaining = dict.fromkeys(ASSETS, 0)
    reserved = dict.fromkeys(ASSETS, 0)
    for lot in lots:
        released[lot.asset] += lot.amount
        retired[lot.asset] += lot.retired
        allocated[lot.asset] += lot.allocated
        remaining[lot.asset] += lot.remaining
    for request in requests:
        for asset, amount in request.held().items():
            reserved[asset] += amount
    return {
        a: PoolFigures(a, released[a], retired[a], allocated[a], reserved[a], remaining[a] - reserved[a])
        for a in ASSETS
    }


def available_by_asset(figures: dict[str, PoolFigures]) -> dict[str, int]:
    return {a: f.available for a, f in figures.items()}
