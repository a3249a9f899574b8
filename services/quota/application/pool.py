"""A county's pool figures per asset, from its booked lots and the requests holding quota.

Only lots whose intake the ledger has posted ('booked') count: a round never grants what the ledger
does not hold yet. Lots still on their way to the ledger are shown apart as ``incoming``."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from services.quota.domain.assets import ASSETS
from services.quota.domain.pool_view import PoolFigures
from services.quota.storage import intake_store, request_store


@dataclass(frozen=True)
class CountyPool:
    county_code: str
    figures: dict[str, PoolFigures]
    incoming: dict[str, int]  # amounts of lots awaiting the ledger's posting
    refused: dict[str, int]  # amounts of lots whose intake the ledger refused (a fault)


def county_pool(session: Session, county_code: str) -> CountyPool:
    sums = intake_store.lot_sums(session, county_code)
    held = request_store.held_by_asset(session, county_code)
    figures, incoming, refused = {}, {}, {}
    for asset in ASSETS:
        amount, retired, remaining = sums.get((asset, "booked"), (0, 0, 0))
        reserved = held.get(asset, 0)
        figures[asset] = PoolFigures(asset, amount, retired, amount - retired - remaining, reserved,
                                     remaining - reserved)
        incoming[asset] = sums.get((asset, "awaiting"), (0, 0, 0))[0]
        refused[asset] = sums.get((asset, "refused"), (0, 0, 0))[0]
    return CountyPool(county_code, figures, incoming, refused)
