"""Which lots an allocation consumes, and what each consumed part is worth.

Lots are consumed in the policy's order (FIFO: lot date, then lot id; or townships in the policy's list
first, FIFO within). Every allocated unit is traced to a lot, its enterprise (or reclamation project)
and township; compensation (腾退补偿) follows these records.

Money due, rounding written down once: per request line,
``due = round_half_up(amount * price_fen_per_unit / 10**scale)`` fen at the county price of the asset
(0 where the policy names no price), then split over the consumed lots by amount with
``split_by_weights``, the remainder to the first lot consumed, so per-lot dues sum to the line's due.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Mapping

from shared.amounts import round_half_up, split_by_weights
from services.quota.domain.assets import ASSETS
from services.quota.domain.lots import Lot, SourceKind, take_from_lot
from services.quota.domain.policy import ConsumptionOrder, PoolPolicy
from services.quota.domain.requests import QuotaRequest, RequestState


class InsufficientLots(ValueError):
    """The lots cannot cover an allocation: a reservation was granted beyond the pool (a bug upstream)."""


@dataclass(frozen=True)
class Consumption:
    request_id: str
    project_id: str
    lot_id: str
    asset: str
    source_kind: SourceKind
    source_ref: str  # enterprise credit code or reclamation project id
    township_code: str  # where the quota was freed
    amount: int  # smallest units taken from the lot
    amount_due_fen: int  # this part's share of the line's price
    earns_compensation: bool = True  # the lot's (see Lot.earns_compensation)


@dataclass(frozen=True)
class AllocationProvenance:
    request_id: str
    project_id: str
    consumptions: tuple[Consumption, ...]
    lots: tuple[Lot, ...]  # the touched lots, after consumption: store these
    due_fen_by_asset: Mapping[str, int]

    @property
    def total_due_fen(self) -> int:
        return sum(self.due_fen_by_asset.values())


def amount_due_fen(asset: str, amount: int, price_fen_per_unit: int) -> int:
    return round_half_up(Decimal(amount) * price_fen_per_unit / Decimal(10) ** ASSETS[asset].scale)


def consumption_order(lots: Iterable[Lot], policy: PoolPolicy) -> list[Lot]:
    if policy.consumption_order is ConsumptionOrder.TOWNSHIP_ORDER:
        rank: dict[str, int] = {}
        for i, t in enumerate(policy.township_order):
            rank.setdefault(t, i)  # a township listed twice keeps its first place (a dict literal kept the last)
        unlisted = len(policy.township_order)
        return sorted(lots, key=lambda lot: (rank.get(lot.township_code, unlisted), lot.dated, lot.lot_id))
    return sorted(lots, key=lambda lot: (lot.dated, lot.lot_id))


def allocate_request(request: QuotaRequest, lots: Iterable[Lot], policy: PoolPolicy) -> AllocationProvenance:
    """Consume lots for an allocated request. ``lots``: the county's lots (others are ignored)."""
    if request.state is not RequestState.ALLOCATED:
        raise ValueError("only an allocated request consumes lots")
    current = {lot.lot_id: lot for lot in lots if lot.county_code == request.county_code}
    consumptions: list[Consumption] = []
    due_by_asset: dict[str, int] = {}
    for asset, amount in request.line_amounts:
        candidates = consumption_order(
            (lot for lot in current.values() if lot.asset == asset and lot.remaining > 0), policy
        )
        taken: list[tuple[Lot, int]] = []
        need = amount
        for lot in candidates:
            if need == 0:
                break
            part = min(need, lot.remaining)
            taken.append((lot, part))
            current[lot.lot_id] = take_from_lot(lot, part)
            need -= part
        if need:
            raise InsufficientLots(f"{request.request_id}: lots lack {need} units of {asset}")
        due = amount_due_fen(asset, amount, policy.price(asset))
        due_by_asset[asset] = due
        shares = split_by_weights(due, [(lot.lot_id, part) for lot, part in taken], remainder_to=taken[0][0].lot_id)
        consumptions.extend(
            Consumption(request.request_id, request.project_id, lot.lot_id, asset, lot.source_kind, lot.source_ref,
                        lot.township_code, part, shares[lot.lot_id], lot.earns_compensation)
            for lot, part in taken
        )
    touched = {c.lot_id for c in consumptions}
    return AllocationProvenance(
        request.request_id, request.project_id, tuple(consumptions),
        tuple(current[i] for i in sorted(touched)), due_by_asset,
    )
