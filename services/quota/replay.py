"""Rebuild the quota service's read models from its event store (its outbox) and compare them with the live
tables (see shared/replay.py for the framework; amounts are integers of the smallest unit, dates ISO strings).

Read models and the events that fold into them (county_code rides in every row):

- ``releases``      release_id -> the whole release and its status      QuotaReleased (the latest wins)
- ``lots``          lot_id -> amount, retired, remaining, origin, buyback price and the amount due for it
                    LotCreated; retired = sum of QuotaRetired; remaining = amount - retired - what
                    QuotaAllocated consumed; the buyback due from BuybackOwed
- ``reclamation_accepted``  project_id -> township, accepted_on, accepted_area   LotCreated of a reclamation lot
- ``pool``          (county_code, asset) -> released, retired, allocated, reserved, available: the pool figures
                    of GET /counties/{c}/pool over every lot (booked or not: the ledger's posting is its answer,
                    not our event) - LotCreated, QuotaRetired, QuotaAllocated, and the lines of the requests in
                    reserving/reserved; read live from ``lots`` and ``request_lines`` as the service computes it
- ``requests``      request_id -> project, state, reason      QuotaRequested, the ledger command reserving it
                    (TransfersRequested with a quota_reserve transfer), QuotaReserved, QuotaAllocated, and the
                    closing events (QuotaRequestRejected, QuotaReservationCancelled, QuotaReservationExpired,
                    QuotaRequestExpired)
- ``reservation_deadlines``  request_id -> until when a reservation holds (``deadline``, UTC ISO) for every
                    request that was reserved (``reserved_at`` set)      QuotaReserved.expires_at
- ``request_lines`` (request_id, asset) -> position, amount, approval kind      QuotaRequested
- ``allocations``   (request_id, asset) -> amount, price, amount due, allocated_on    QuotaAllocated
- ``consumptions``  (request_id, lot_id) -> where the units came from, amount, due    QuotaAllocated.lots
- ``ledger_transfers`` transfer_id -> purpose, accounts, amount, request or lot     TransfersRequested (the
                    commands this service put in its own outbox for the ledger)

Not derivable from this service's events, so not compared:
- what other services told us and we only consumed: ``projects``, ``project_approvals``,
  ``departed_enterprises``, the requests' ``approvals`` / project facts / ``park_id``, and every answer of the
  ledger (``lots.ledger_state``, ``ledger_transfers.state / ledger_reason / answered_at``,
  ``quota_requests.reserved_assets``);
- what emits no event: ``counties`` (policies), ``rounds`` / ``round_decisions`` (a round's grants show as
  reserve commands, its refusals as QuotaRequestRejected), registered-but-not-accepted reclamation projects and
  the acceptance's ``document_ref``;
- bookkeeping of the request or transaction: ``digest``, ``submitted_by`` / ``requested_by`` /
  ``registered_by``, and every other timestamp (``received_at``, ``created_at``, ``requested_at``, the deadline
  of a request never reserved, ...): the events carry the envelope's time, taken a moment after the row's own
  clock reading.
QuotaReleased carries department, buyback price, document_ref and released_on, and QuotaReservationExpired its
reason, since the fields were added; events written before carry them as :data:`UNRECORDED`, which compares
equal to any live value (such events cannot contradict the row) and is never written by a repair.

``repair`` rewrites, from the events, the columns of differing rows that exist on both sides (every compared
column is one the service wrote from the same values as the event, in the same transaction). A row missing on
one side is reported only: inserting it would need columns no event holds, deleting it would destroy the only
record of something the events do not explain. ``pool`` has no table (it is summed from lots and requests): it
is put right by repairing those. The count returned is of differences that agree afterwards (the touched models
are read again in the same transaction), so ``countypool replay quota --write`` succeeds only when all do.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Callable, Hashable, Mapping

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from shared.amounts import parse_amount
from shared.db import Database
from shared.replay import Difference, Handler, Projection, ReadModels, ReplayReport, replay
from services.quota.application.ledger_commands import PURPOSE
from services.quota.domain.assets import ASSETS, MONEY_SCALE
from services.quota.domain.provenance import amount_due_fen
from services.quota.domain.requests import HOLDING_STATES
from services.quota.storage import tables as T
from services.quota.storage.sql import utc


class _Unrecorded:
    """A fact an event written before its field existed does not carry: equal to any live value."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<not in the event>"


UNRECORDED = _Unrecorded()
_CACHE_MAX = 100_000  # distinct amount strings remembered per scale


def _to_units(text: str, scale: int) -> int:
    i = text.find(".")
    if i >= 0 and len(text) - i - 1 == scale:  # what format_amount writes: exactly `scale` decimals
        return int(text[:i] + text[i + 1:])
    return parse_amount(text, scale, allow_zero=True, allow_negative=True)


class Units(dict):
    """Decimal string -> integer of the smallest unit, memoised (a request's amounts recur in its five or six
    events): index it like a dict — a hit never leaves C, a miss parses once."""

    __slots__ = ("scale",)

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def __missing__(self, text: str) -> int:
        n = _to_units(text, self.scale)
        if len(self) < _CACHE_MAX:
            self[text] = n
        return n


# LotCreated / QuotaAllocated say "release" where the lots table says "enterprise"
SOURCE_KIND_IN = {"release": "enterprise", "reclamation": "reclamation"}
PURPOSE_BY_CODE = {code.value: purpose for code, purpose in PURPOSE.items()}
LOT_PURPOSES = frozenset({"intake", "retire"})  # their ref is the lot; the others' is the request
HOLDING = frozenset(s.value for s in HOLDING_STATES)  # requests whose lines are held out of the pool


class QuotaProjection(Projection):
    name = "quota read models"
    # every writer of the columns a repair rewrites first locks its county's row FOR UPDATE (storage/counties.py);
    # EXCLUSIVE lets plain reads through and holds those writers until the repair commits. The ledger's plain
    # answers (ledger_state, not repaired) do not wait: one touching a repaired row makes the repair fail with a
    # serialization error, to be run again, never overwrite it.
    writers_lock = "LOCK TABLE counties IN EXCLUSIVE MODE"

    def __init__(self) -> None:
        self.money = Units(MONEY_SCALE)
        self.qty = {code: Units(a.scale) for code, a in ASSETS.items()}
        self.releases: dict[str, tuple] = {}
        self.lots: dict[str, tuple] = {}  # the LotCreated part of a lot row
        self.retired: dict[str, int] = {}
        self.consumed: dict[str, int] = {}
        self.pool_retired: dict[tuple, int] = {}  # (county, asset) -> sum of QuotaRetired
        self.pool_allocated: dict[tuple, int] = {}  # (county, asset) -> sum of QuotaAllocated
        self.expires: dict[str, str] = {}  # request_id -> QuotaReserved.expires_at as written
        self.buyback_due: dict[str, int] = {}
        self.reclaimed: dict[str, tuple] = {}
        self.requests: dict[str, tuple] = {}
        self.lines: dict[tuple, tuple] = {}
        self.allocations: dict[tuple, tuple] = {}
        self.consumptions: dict[tuple, tuple] = {}
        self.transfers: dict[str, tuple] = {}

    def handlers(self) -> Mapping[str, Handler]:
        closed = {"QuotaRequestRejected": "rejected", "QuotaReservationCancelled": "cancelled",
                  "QuotaReservationExpired": "expired", "QuotaRequestExpired": "expired"}
        out: dict[str, Handler] = {name: self._closer(state) for name, state in closed.items()}
        out.update(QuotaReleased=self.on_released, LotCreated=self.on_lot, QuotaRetired=self.on_retired,
                   BuybackOwed=self.on_buyback, QuotaRequested=self.on_requested, QuotaReserved=self.on_reserved,
                   QuotaAllocated=self.on_allocated, TransfersRequested=self.on_transfers)
        return out

    # -- supply ------------------------------------------------------------------------------------
    def on_released(self, d: dict, env: dict) -> None:
        basis = d["basis"]
        if "buyback_price_per_unit" in d:
            price = d["buyback_price_per_unit"]
            price_fen = None if price is None else self.money[price]
        else:  # written before the field existed: known only for a free release
            price_fen = None if basis == "free" else UNRECORDED
        asset = d["asset"]
        self.releases[d["release_id"]] = (
            d["county_code"], d["enterprise_credit_code"], d["township_code"], asset, self.qty[asset][d["amount"]],
            d["reason"], basis, price_fen, d.get("document_ref", UNRECORDED), d.get("released_on", UNRECORDED),
            d.get("department", UNRECORDED), d["status"], d.get("status_reason", ""))

    def on_lot(self, d: dict, env: dict) -> None:
        asset, price = d["asset"], d.get("buyback_price_per_unit")
        kind = SOURCE_KIND_IN.get(d["source_kind"], d["source_kind"])
        amount = self.qty[asset][d["amount"]]
        self.lots[d["lot_id"]] = (d["county_code"], asset, amount, kind, d["source_ref"], d["township_code"],
                                  d["dated"], d["basis"], None if price is None else self.money[price],
                                  d.get("earns_compensation", True))
        if kind == "reclamation":
            self.reclaimed[d["source_ref"]] = (d["county_code"], d["township_code"], d["dated"], amount)

    def on_retired(self, d: dict, env: dict) -> None:
        lot, asset = d["lot_id"], d["asset"]
        n = self.qty[asset][d["amount"]]
        self.retired[lot] = self.retired.get(lot, 0) + n
        key = (d["county_code"], asset)
        self.pool_retired[key] = self.pool_retired.get(key, 0) + n

    def on_buyback(self, d: dict, env: dict) -> None:
        self.buyback_due[d["lot_id"]] = self.money[d["amount_due"]]

    # -- demand ------------------------------------------------------------------------------------
    def on_requested(self, d: dict, env: dict) -> None:
        rid = d["request_id"]
        self.requests[rid] = (d["project_id"], d["county_code"], "requested", "")
        for i, line in enumerate(d["lines"]):
            asset = line["asset"]
            self.lines[(rid, asset)] = (i, self.qty[asset][line["amount"]], line["approval_kind"])

    def on_reserved(self, d: dict, env: dict) -> None:
        rid = d["request_id"]
        self.requests[rid] = (d["project_id"], d["county_code"], "reserved", "")
        self.expires[rid] = d.get("expires_at")

    def _closer(self, state: str) -> Handler:
        def close(d: dict, env: dict) -> None:
            self.requests[d["request_id"]] = (d["project_id"], d["county_code"], state, d.get("reason", UNRECORDED))
        return close

    def on_allocated(self, d: dict, env: dict) -> None:
        rid, pid, county, asset = d["request_id"], d["project_id"], d["county_code"], d["asset"]
        qty, money, consumed = self.qty[asset], self.money, self.consumed
        amount = qty[d["amount"]]
        self.allocations[(rid, asset)] = (pid, county, amount, money[d["price_per_unit"]],
                                          money[d["amount_due"]], d["allocated_on"])
        key = (county, asset)
        self.pool_allocated[key] = self.pool_allocated.get(key, 0) + amount
        for c in d["lots"]:
            lot, amount = c["lot_id"], qty[c["amount"]]
            self.consumptions[(rid, lot)] = (pid, county, asset, SOURCE_KIND_IN.get(c["source_kind"], c["source_kind"]),
                                             c["source_ref"], c["township_code"], amount, money[c["amount_due"]],
                                             c.get("earns_compensation", True))
            consumed[lot] = consumed.get(lot, 0) + amount
        self.requests[rid] = (pid, county, "allocated", "")

    def on_transfers(self, d: dict, env: dict) -> None:
        transfers, requests, qty = self.transfers, self.requests, self.qty
        for t in d["transfers"]:  # stored as the contract dumps them: every field is present
            tid = t["transfer_id"]
            if tid in transfers:  # a chain sent again with a new member repeats the ones asked before
                continue
            purpose = PURPOSE_BY_CODE.get(t["code"])
            refs = t["refs"]
            ref = refs[0] if refs else None
            req, lot = (None, ref) if purpose in LOT_PURPOSES else (ref, None)
            asset = t["asset"]
            transfers[tid] = (purpose, t["metadata"].get("county_code"), asset, qty[asset][t["amount"]],
                              t["debit_account"], t["credit_account"], req, lot)
            if purpose == "reserve" and req is not None:  # a round granted it: reserving, no event of its own
                r = requests.get(req)
                if r is not None and r[2] == "requested":
                    requests[req] = (r[0], r[1], "reserving", r[3])

    # -- results -----------------------------------------------------------------------------------
    def rebuilt(self) -> ReadModels:
        lots: dict[Hashable, tuple] = {}
        unknown = (None,) * 10  # a lot some event names but no LotCreated made: shows as a difference
        for lot_id in self.lots.keys() | self.retired.keys() | self.consumed.keys() | self.buyback_due.keys():
            county, asset, amount, kind, ref, township, dated, basis, price, earns = self.lots.get(lot_id, unknown)
            retired = self.retired.get(lot_id, 0)
            remaining = None if amount is None else amount - retired - self.consumed.get(lot_id, 0)
            lots[lot_id] = (county, asset, amount, retired, remaining, kind, ref, township, dated, basis, price,
                            self.buyback_due.get(lot_id), lot_id.partition(":")[2], earns)
        return {"releases": self.releases, "lots": lots, "reclamation_accepted": self.reclaimed,
                "pool": self._pool(), "requests": self.requests,
                "reservation_deadlines": {r: (_utc_iso(t),) for r, t in self.expires.items()},
                "request_lines": self.lines, "allocations": self.allocations,
                "consumptions": self.consumptions, "ledger_transfers": self.transfers}

    def _pool(self) -> dict[Hashable, tuple]:
        released: dict[tuple, int] = {}
        for county, asset, amount, *_ in self.lots.values():
            released[(county, asset)] = released.get((county, asset), 0) + amount
        reserved: dict[tuple, int] = {}
        requests = self.requests
        for (rid, asset), line in self.lines.items():
            r = requests.get(rid)
            if r is not None and r[2] in HOLDING:
                reserved[(r[1], asset)] = reserved.get((r[1], asset), 0) + line[1]
        out = {}
        for key in released.keys() | self.pool_retired.keys() | self.pool_allocated.keys() | reserved.keys():
            figures = (released.get(key, 0), self.pool_retired.get(key, 0), self.pool_allocated.get(key, 0),
                       reserved.get(key, 0))
            out[key] = figures + (figures[0] - figures[1] - figures[2] - figures[3],)
        return out

    def live(self, session: Session) -> ReadModels:
        return live_models(session)

    def repair(self, session: Session, differences: list[Difference], rebuilt: ReadModels) -> int:
        """Rewrites what it can (see the module note); returns how many differences agree afterwards."""
        repair_rows(session, differences)
        again = {m: READERS[m](session) for m in {d.model for d in differences}}
        return sum(1 for d in differences if d.rebuilt is not None and again[d.model].get(d.key) == d.rebuilt)


def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def _utc_iso(t: datetime | str | None) -> str | None:
    """A point in time as UTC ISO text: a row's datetime (naive from SQLite: written in UTC) or an event's text."""
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    return None if t is None else utc(t).isoformat()


def _rows(s: Session, stmt) -> list:
    return s.execute(stmt).all()  # one fetchall: iterating the cursor row by row costs more


R, L, P, Q, RL, A, C, LT = (T.releases, T.lots, T.reclamation_projects, T.quota_requests, T.request_lines,
                            T.allocations, T.consumptions, T.ledger_transfers)


def _live_releases(s: Session) -> dict:
    return {r[0]: (*r[1:10], _iso(r[10]), r[11], r[12], r[13]) for r in _rows(s, select(
        R.c.release_id, R.c.county_code, R.c.enterprise_credit_code, R.c.township_code, R.c.asset, R.c.amount,
        R.c.reason, R.c.basis, R.c.buyback_price_fen, R.c.document_ref, R.c.released_on, R.c.department,
        R.c.status, R.c.status_reason))}


def _live_lots(s: Session) -> dict:
    lots = {}
    for r in _rows(s, select(L.c.lot_id, L.c.county_code, L.c.asset, L.c.amount, L.c.retired, L.c.remaining,
                             L.c.source_kind, L.c.source_ref, L.c.township_code, L.c.dated, L.c.basis,
                             L.c.buyback_price_fen, L.c.origin_id, L.c.earns_compensation)):
        price = r.buyback_price_fen
        due = None if price is None else amount_due_fen(r.asset, r.amount, price)
        lots[r.lot_id] = (*r[1:9], _iso(r.dated), r.basis, price, due, r.origin_id, r.earns_compensation)
    return lots


def _live_reclaimed(s: Session) -> dict:
    return {r[0]: (r[1], r[2], _iso(r[3]), r[4]) for r in _rows(s,
        select(P.c.project_id, P.c.county_code, P.c.township_code, P.c.accepted_on, P.c.accepted_area)
        .where(P.c.state == "accepted"))}


def _live_pool(s: Session) -> dict:
    """As application.pool.county_pool sums it, over every lot whatever the ledger answered."""
    pool: dict[Hashable, tuple] = {}
    for county, asset, amount, retired, remaining in _rows(s, select(
            L.c.county_code, L.c.asset, func.sum(L.c.amount), func.sum(L.c.retired), func.sum(L.c.remaining))
            .group_by(L.c.county_code, L.c.asset)):
        amount, retired, remaining = int(amount), int(retired), int(remaining)
        pool[(county, asset)] = (amount, retired, amount - retired - remaining, 0, remaining)
    for county, asset, held in _rows(s, select(Q.c.county_code, RL.c.asset, func.sum(RL.c.amount))
                                     .select_from(RL.join(Q, Q.c.request_id == RL.c.request_id))
                                     .where(Q.c.state.in_(sorted(HOLDING))).group_by(Q.c.county_code, RL.c.asset)):
        held = int(held)
        released, retired, allocated, _, remaining = pool.get((county, asset), (0, 0, 0, 0, 0))
        pool[(county, asset)] = (released, retired, allocated, held, remaining - held)
    return pool


def _live_requests(s: Session) -> dict:
    return {r[0]: (r[1], r[2], r[3], r[4] or "") for r in _rows(s,
        select(Q.c.request_id, Q.c.project_id, Q.c.county_code, Q.c.state, Q.c.reason))}


def _live_deadlines(s: Session) -> dict:
    return {r[0]: (_utc_iso(r[1]),) for r in _rows(s, select(Q.c.request_id, Q.c.deadline)
                                                .where(Q.c.reserved_at.is_not(None)))}


def _live_lines(s: Session) -> dict:
    return {(r[0], r[1]): tuple(r[2:]) for r in _rows(s,
        select(RL.c.request_id, RL.c.asset, RL.c.position, RL.c.amount, RL.c.approval_kind))}


def _live_allocations(s: Session) -> dict:
    return {(r[0], r[1]): (*r[2:7], _iso(r[7])) for r in _rows(s,
        select(A.c.request_id, A.c.asset, A.c.project_id, A.c.county_code, A.c.amount, A.c.price_fen_per_unit,
               A.c.amount_due_fen, A.c.allocated_on))}


def _live_consumptions(s: Session) -> dict:
    out: dict[Hashable, tuple] = {}
    for r in _rows(s, select(C.c.request_id, C.c.lot_id, C.c.project_id, C.c.county_code, C.c.asset,
                             C.c.source_kind, C.c.source_ref, C.c.township_code, C.c.amount, C.c.amount_due_fen,
                             C.c.earns_compensation)):
        key, row = (r[0], r[1]), tuple(r[2:])
        if key in out:  # the table has no unique key: a row written twice shows as its amounts doubled
            prior = out[key]
            row = prior[:6] + (prior[6] + row[6], prior[7] + row[7]) + prior[8:]
        out[key] = row
    return out


def _live_transfers(s: Session) -> dict:
    return {r[0]: tuple(r[1:]) for r in _rows(s,
        select(LT.c.transfer_id, LT.c.purpose, LT.c.county_code, LT.c.asset, LT.c.amount, LT.c.debit_account,
               LT.c.credit_account, LT.c.request_id, LT.c.lot_id))}


READERS: dict[str, Callable[[Session], dict]] = {
    "releases": _live_releases, "lots": _live_lots, "reclamation_accepted": _live_reclaimed, "pool": _live_pool,
    "requests": _live_requests, "reservation_deadlines": _live_deadlines, "request_lines": _live_lines,
    "allocations": _live_allocations, "consumptions": _live_consumptions, "ledger_transfers": _live_transfers,
}


def live_models(s: Session) -> ReadModels:
    """The same facts read from the live tables, normalised like the fold's tuples."""
    return {m: read(s) for m, read in READERS.items()}


# model -> (table, key columns, the column each tuple position is written to; None: derived, not stored)
COLUMNS: dict[str, tuple[Table, tuple[str, ...], tuple[str | None, ...]]] = {
    "releases": (T.releases, ("release_id",), (
        "county_code", "enterprise_credit_code", "township_code", "asset", "amount", "reason", "basis",
        "buyback_price_fen", "document_ref", "released_on", "department", "status", "status_reason")),
    "lots": (T.lots, ("lot_id",), (
        "county_code", "asset", "amount", "retired", "remaining", "source_kind", "source_ref", "township_code",
        "dated", "basis", "buyback_price_fen", None, "origin_id", "earns_compensation")),
    "reclamation_accepted": (T.reclamation_projects, ("project_id",), (
        "county_code", "township_code", "accepted_on", "accepted_area")),
    "requests": (T.quota_requests, ("request_id",), ("project_id", "county_code", "state", "reason")),
    "reservation_deadlines": (T.quota_requests, ("request_id",), ("deadline",)),
    "request_lines": (T.request_lines, ("request_id", "asset"), ("position", "amount", "approval_kind")),
    "allocations": (T.allocations, ("request_id", "asset"), (
        "project_id", "county_code", "amount", "price_fen_per_unit", "amount_due_fen", "allocated_on")),
    "consumptions": (T.consumptions, ("request_id", "lot_id"), (
        "project_id", "county_code", "asset", "source_kind", "source_ref", "township_code", "amount",
        "amount_due_fen", "earns_compensation")),
    "ledger_transfers": (T.ledger_transfers, ("transfer_id",), (
        "purpose", "county_code", "asset", "amount", "debit_account", "credit_account", "request_id", "lot_id")),
}
DATE_COLUMNS = frozenset({"released_on", "dated", "accepted_on", "allocated_on"})


def _db_value(column: str, value):
    if column in DATE_COLUMNS and isinstance(value, str):
        return date.fromisoformat(value)
    if column == "deadline" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if column == "reason" and value == "":
        return None  # an open request has no reason (the model reads NULL as "")
    return value


def repair_rows(s: Session, differences: list[Difference]) -> int:
    n = 0
    for d in differences:
        if d.live is None or d.rebuilt is None:
            continue  # missing on one side: reported only (see the module note)
        if d.model not in COLUMNS:
            continue  # pool: no table of its own, right again once its lots and requests are
        table, key_cols, cols = COLUMNS[d.model]
        if all(c is None for c, a, b in zip(cols, d.live, d.rebuilt) if a != b):
            continue  # only a derived figure differs (the buy-back due): the events disagree among themselves
        keys = d.key if isinstance(d.key, tuple) else (d.key,)
        values = {c: _db_value(c, v) for c, v in zip(cols, d.rebuilt) if c is not None and v is not UNRECORDED}
        if any(v is None and not table.c[c].nullable for c, v in values.items()):
            continue  # the events lack a fact the row must hold (e.g. no LotCreated): reported only
        where = [table.c[k] == v for k, v in zip(key_cols, keys)]
        s.execute(update(table).where(*where).values(**values))
        n += 1
    return n


def rebuild(db: Database, *, repair: bool = False, progress: Callable[[int], None] | None = None,
            total: Callable[[int], None] | None = None) -> ReplayReport:
    return replay(db, QuotaProjection(), repair=repair, progress=progress, total=total)
