"""An allocation's QuotaAllocated events, and whether they can be written at all.

QuotaAllocated (one per request line) lists every lot the line consumed, and nothing bounds how many that is: a
county pool of an asset holds one lot per release of every enterprise, and a big line is filled, in the policy's
order, from as many small lots as it takes. The outbox refuses an event above shared.outbox.MAX_EVENT_BYTES
(900 KiB): an allocation writing one would fail whole, every time (an approval answered 413 or dead-lettered and
lost for every request of the project, a ledger answer dead-lettered and the request left reserving until it
expires). Measured on the real event (tests/unit/quota/test_quota_event_size.py): a lot entry is ~160 bytes with
usual ids, ~300 with release ids of the longest (150 characters), ~440 for a reclamation lot of the longest
project id (~1 kB in Chinese characters, ~1.3 kB in 4-byte ones); so one event carries ~5,700 lots of usual ids,
~3,000 of the longest release ids, and as few as ~700.

So a line whose event would not fit is refused, with reason ``too_many_lots``, where that is known:
- in the round (``LotForecast``): a request whose allocation would consume more lots than its events can carry
  is not granted (outcome ``refused``, reason ``too_many_lots``, the shortfall naming per line the most one
  allocation could take now), so it is never reserved in the ledger only to be unable to confirm;
- at allocation (``saga.carry_out``), since a round can only foresee: lots taken in later with an earlier date come
  first in FIFO, the consumption order may change. The reservation is then cancelled and voided (reason
  ``too_many_lots``) instead of the transaction failing; the approval or the ledger's answer that triggered it is
  recorded as usual.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Iterable, Mapping

from pydantic_core import to_json
from sqlalchemy.orm import Session

from shared.amounts import parse_amount
from shared.contracts.quota import ConsumedLotOut, QuotaAllocated
from shared.outbox import MAX_EVENT_BYTES
from services.quota.application.formats import cny, qty
from services.quota.domain.allocation import Shortfall
from services.quota.domain.assets import ASSETS
from services.quota.domain.lots import Lot, SourceKind, take_from_lot
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.provenance import AllocationProvenance, allocate_request, consumption_order
from services.quota.domain.requests import QuotaRequest, RequestState
from services.quota.storage import intake_store, request_store

# LotCreated / QuotaAllocated speak of where a lot came from as "release" or "reclamation".
SOURCE_KIND_OUT = {SourceKind.ENTERPRISE: "release", SourceKind.RECLAMATION: "reclamation"}

# What the envelope adds to the payload: id, source, type, subject (the request id, at most 100 characters), times,
# correlation and causation ids of up to 200 characters each (in UTF-8 up to 800 bytes each): ~2.5 kB at most.
ENVELOPE_ALLOWANCE = 4 * 1024
# The largest QuotaAllocated payload (UTF-8 bytes as pydantic writes it) the service writes.
ALLOCATED_EVENT_BYTES = MAX_EVENT_BYTES - ENVELOPE_ALLOWANCE


def event_bytes(event) -> int:
    """UTF-8 bytes of the payload as the envelope carries it (None fields counted too: never less)."""
    return len(to_json(event))


@dataclass(frozen=True)
class PlannedAllocation:
    """An allocation worked out but not written: the lots it consumes and its events, one per line in order."""

    provenance: AllocationProvenance
    prices: Mapping[str, int]
    events: tuple[QuotaAllocated, ...]

    def too_large(self) -> tuple[QuotaAllocated, ...]:
        """The events above ALLOCATED_EVENT_BYTES (the outbox would refuse them)."""
        return tuple(ev for ev in self.events if event_bytes(ev) > ALLOCATED_EVENT_BYTES)


def plan_allocation(req: QuotaRequest, lots: Iterable[Lot], policy: PoolPolicy, park_id: str | None,
                    on: date) -> PlannedAllocation:
    """``req`` allocated (state ``allocated``): the lots it consumes (provenance.allocate_request) and the
    QuotaAllocated of each line, as saga writes them."""
    prov = allocate_request(req, lots, policy)
    prices = {asset: policy.price(asset) for asset, _ in req.line_amounts}
    events = tuple(QuotaAllocated(
        request_id=req.request_id, project_id=req.project_id, county_code=req.county_code, asset=asset,
        amount=qty(asset, amount), price_per_unit=cny(prices[asset]), amount_due=cny(prov.due_fen_by_asset[asset]),
        park_id=park_id, allocated_on=on,
        lots=[ConsumedLotOut(lot_id=c.lot_id, source_kind=SOURCE_KIND_OUT[c.source_kind], source_ref=c.source_ref,
                             township_code=c.township_code, amount=qty(asset, c.amount),
                             amount_due=cny(c.amount_due_fen), earns_compensation=c.earns_compensation)
              for c in prov.consumptions if c.asset == asset],
    ) for asset, amount in req.line_amounts)
    return PlannedAllocation(prov, prices, events)


def most_that_fits(event: QuotaAllocated) -> int:
    """The amount (smallest units) of the event's first lots, as many as one event can list: about the most of
    the asset one allocation could take from where this one starts."""
    room = ALLOCATED_EVENT_BYTES - event_bytes(event.model_copy(update={"lots": []}))
    scale = ASSETS[event.asset].scale
    units = 0
    for i, lot in enumerate(event.lots):
        room -= event_bytes(lot) + (1 if i else 0)  # + the comma between items
        if room < 0:
            break
        units += parse_amount(lot.amount, scale)
    return units


class LotForecast:
    """Which lots each grant of a round would consume once allocated, to refuse in the round a request whose
    QuotaAllocated could not list them (``place``, the ``fits`` of domain.allocation.run_allocation_round).

    It assumes allocations come in the order the pool promised the quota: the reservations held now first (their
    total: consumption always takes the first lots left in the policy's order, so their own order does not matter),
    then the round's grants in rank order. Only a forecast (see the module note): the allocation checks again."""

    def __init__(self, session: Session, county_code: str, policy: PoolPolicy, on: date):
        self.session, self.county_code, self.policy, self.on = session, county_code, policy, on
        self._held: dict[str, int] | None = None  # per asset, what the reservations held now will consume first
        self._queues: dict[str, list[Lot]] = {}  # per asset, its grantable lots in consumption order (read once)
        self._first: dict[str, int] = {}  # per asset, the first lot of its queue with something left

    def _queue(self, asset: str) -> list[Lot]:
        if asset not in self._queues:
            if self._held is None:
                self._held = request_store.held_by_asset(self.session, self.county_code)
            lots = intake_store.grantable_lots(self.session, self.county_code, [asset])
            self._queues[asset], self._first[asset] = consumption_order(lots, self.policy), 0
            self._take(asset, self._held.get(asset, 0))
        return self._queues[asset]

    def _take(self, asset: str, units: int) -> None:
        queue, i = self._queues[asset], self._first[asset]
        while units > 0 and i < len(queue):
            part = min(units, queue[i].remaining)
            queue[i] = take_from_lot(queue[i], part)
            units -= part
            if queue[i].remaining == 0:
                i += 1
        self._first[asset] = i

    def _window(self, asset: str, amount: int) -> list[Lot] | None:
        """The lots an allocation of ``amount`` would consume next (None: they do not cover it)."""
        queue, i = self._queue(asset), self._first[asset]
        out: list[Lot] = []
        got = 0
        while got < amount and i < len(queue):
            out.append(queue[i])
            got += queue[i].remaining
            i += 1
        return out if got >= amount else None

    def place(self, request: QuotaRequest) -> tuple[Shortfall, ...]:
        """Asked in rank order about each request the pool's figures can grant: () if its allocation's events would
        fit (it is granted, and what it will consume counts for the next ones), else per line too big a Shortfall
        whose ``available`` is about the most of the asset one allocation could take now."""
        lots: list[Lot] = []
        for asset, amount in request.line_amounts:
            window = self._window(asset, amount)
            if window is None:  # the lots and the pool's figures disagree: nothing to foresee (reconciliation's)
                return ()
            lots += window
        row = request_store.request_row(self.session, request.request_id)
        planned = plan_allocation(replace(request, state=RequestState.ALLOCATED), lots, self.policy,
                                  row.park_id if row is not None else None, self.on)
        big = planned.too_large()
        if big:
            amounts = dict(request.line_amounts)
            return tuple(Shortfall(ev.asset, amounts[ev.asset], most_that_fits(ev)) for ev in big)
        for asset, amount in request.line_amounts:
            self._take(asset, amount)
        return ()
