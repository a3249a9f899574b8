"""Quota coming into the county pool: department releases (held until the enterprise's exit is known,
if the policy says so), 增减挂钩 reclamation projects accepted, and the lots they become."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable, Mapping

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.china_time import cst_date
from shared.amounts import AmountError, parse_amount
from shared.contracts.quota import BuybackOwed, LotCreated, QuotaReleased, QuotaRetired
from shared.envelope import Event
from services.quota.application.formats import cny, cny_or_none, qty
from services.quota.application.ledger_commands import send_moves
from services.quota.application.allocations import SOURCE_KIND_OUT
from services.quota.application.tx import Tx
from services.quota.domain.assets import ASSETS, MONEY_SCALE
from services.quota.domain.identifiers import county_code_problem
from services.quota.domain.ledger_moves import intake_moves
from services.quota.domain.lots import Lot, accept_release
from services.quota.domain.policy import PoolPolicy
from services.quota.domain.problems import Problem, QuotaDomainError
from services.quota.domain.provenance import amount_due_fen
from services.quota.domain.reclamation import (
    LAND_SCALE, ReclamationProject, accept_reclamation, register_reclamation,
)
from services.quota.domain.releases import (
    EXIT_REASONS, QuotaRelease, ReleaseDecision, ReleaseStatus, parse_release, releases_verified_by, verify_release,
)
from services.quota.storage import intake_store
from services.quota.storage.counties import drop_unused, lock_counties, lock_county


class IdReused(Exception):
    """The id was taken before with another body (an idempotency key reused): 409, never a second effect."""

    def __init__(self, kind: str, ident: str, fields: Iterable[str] = ()):
        self.fields = sorted(fields)  # those that differ from the stored write
        which = f" ({', '.join(self.fields)} differ)" if self.fields else ""
        super().__init__(f"{kind} {ident!r} was submitted before with a different body{which}")
        self.reason = f"{kind}_id_reused"


class NotKnown(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def body_digest(body: Mapping[str, Any]) -> str:
    """The digest a body is stored under: of its values, not their texts ("2.5" and the "2.5000" the API answered
    are one amount), so a department resending what it was answered gets the standing answer, not 409."""
    return _digest(_values(body))


def same_body(stored: str, body: Mapping[str, Any]) -> bool:
    """Whether ``body`` is the one stored under ``stored`` (digests stored before they were of values count). A body
    whose digest differs is still the same write when none of its fields differs from the stored one (the
    ``*_differences`` functions): an optional field sent as the service filled it in, e.g. a request line's
    ``approval_kind`` or a project's ``registered_on`` as the answer showed them."""
    return stored == body_digest(body) or stored == _digest(body)


# a release's fields as its row holds them (the scaled ones as units)
_RELEASE_FIELDS = {"enterprise_credit_code": "enterprise_credit_code", "township_code": "township_code",
                   "county_code": "county_code", "asset": "asset", "amount": "amount", "reason": "reason",
                   "basis": "basis", "buyback_price_per_unit": "buyback_price_fen", "document_ref": "document_ref",
                   "released_on": "released_on"}


def release_differences(row, data: Mapping[str, Any]) -> list[str]:
    """The fields of ``data`` whose value is not the stored release's (what a department is told on a 409)."""
    values = _values(data)
    return [field for field, column in _RELEASE_FIELDS.items() if not _same(values.get(field), getattr(row, column))]


def _same(mine: Any, theirs: Any) -> bool:
    """A sent value (``_values``' form) against a stored column: amounts as units, the rest as text."""
    if isinstance(mine, list):  # ["units", n]
        mine = mine[1]
    return (None if mine in (None, "") else str(mine)) == (None if theirs is None else str(theirs))


_RECLAMATION_FIELDS = ("county_code", "township_code", "area", "registered_on")


def reclamation_differences(row, data: Mapping[str, Any]) -> list[str]:
    """The fields of ``data`` whose value is not the stored project's; ``registered_on`` only when sent (left out,
    it was the day of the first registration)."""
    values = _values(data)
    return [f for f in _RECLAMATION_FIELDS
            if (f != "registered_on" or values.get(f) not in (None, "")) and not _same(values.get(f), getattr(row, f))]


def request_differences(row, lines, data: Mapping[str, Any]) -> list[str]:
    """The fields of ``data`` whose value is not the stored request's: ``project_id``, ``county_code``, ``lines``
    when their number differs, else ``lines[i].asset`` / ``.amount`` / ``.approval_kind`` (the kind only when sent:
    left out, the policy chose it)."""
    values = _values(data)
    out = [f for f in ("project_id", "county_code") if not _same(values.get(f), getattr(row, f))]
    sent = values.get("lines") if isinstance(values.get("lines"), list) else []
    stored = sorted(lines, key=lambda line: line.position)
    if len(sent) != len(stored):
        return out + ["lines"]
    for i, (mine, theirs) in enumerate(zip(sent, stored)):
        mine = mine if isinstance(mine, Mapping) else {}
        for f in ("asset", "amount", "approval_kind"):
            if (f != "approval_kind" or mine.get(f) not in (None, "")) and not _same(mine.get(f), getattr(theirs, f)):
                out.append(f"lines[{i}].{f}")
    return out


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


# amount fields and the scale they are read in: an asset's (named beside it), the reclaimed land's, money's
_SCALED = {"amount": None, "area": ASSETS["LAND"].scale, "accepted_area": ASSETS["LAND"].scale,
           "buyback_price_per_unit": MONEY_SCALE}


def _values(doc: Any) -> Any:
    if isinstance(doc, list):
        return [_values(x) for x in doc]
    if not isinstance(doc, Mapping):
        return doc
    out = {}
    for k, v in doc.items():
        scale = _SCALED.get(k, -1) if isinstance(v, str) else -1
        if scale is None:  # an asset's amount
            scale = ASSETS[doc["asset"]].scale if doc.get("asset") in ASSETS else -1
        if scale != -1:
            try:
                v = ["units", parse_amount(v, scale, allow_zero=True, allow_negative=True)]
            except AmountError:
                pass  # refused later with its reason; as text here
        out[k] = _values(v)
    return out


def _county(data: Mapping[str, Any]) -> str:
    county = data.get("county_code")
    if (p := county_code_problem(county)) is not None:
        raise QuotaDomainError([p])
    return county  # type: ignore[return-value]


def lock_enterprises(session: Session, credit_codes: Iterable[str]) -> None:
    """Hold each enterprise's lock until the transaction ends (PostgreSQL advisory locks, in key order; SQLite runs
    one writer at a time). A release that waits for an exit (its ``has_departed`` read) and an exit (its read of the
    held releases) take it, after their county locks: without it they serialize only when both name the same county,
    and an exit naming the enterprise's county, racing a release of it in another county, read before either
    committed: the exit found nothing held, the release no departure, and it stayed pending_verification for good."""
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({int.from_bytes(hashlib.blake2b(f"countypool-quota-enterprise:{c}".encode(), digest_size=8).digest(),
                                  "big", signed=True) for c in credit_codes})
    if keys:  # one statement for a poll's releases; unnest yields the sorted array in order
        session.execute(text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS u(k)"),
                        {"keys": keys})


# -- lots ----------------------------------------------------------------------------------------
def take_in(tx: Tx, lot: Lot) -> bool:
    """A new lot: stored, announced (LotCreated, QuotaRetired, BuybackOwed when paid) and booked in the
    ledger (issuance -> pool, pool -> retired, linked). Taking the same lot twice does nothing."""
    if not intake_store.insert_lot(tx.session, lot, tx.now):
        return False
    for event in lot_events(lot):
        tx.emit(event, lot.lot_id)
    send_moves(tx, intake_moves(lot), county_code=lot.county_code, lot_id=lot.lot_id)
    return True


def lot_events(lot: Lot) -> list[Event]:
    """What a new lot announces, in order, each keyed by the lot id (also the batch path's)."""
    out: list[Event] = [LotCreated(
        lot_id=lot.lot_id, county_code=lot.county_code, asset=lot.asset, amount=qty(lot.asset, lot.amount),
        retired=qty(lot.asset, lot.retired), source_kind=SOURCE_KIND_OUT[lot.source_kind], source_ref=lot.source_ref,
        township_code=lot.township_code, dated=lot.dated, basis=lot.basis.value,
        buyback_price_per_unit=cny_or_none(lot.buyback_price_fen_per_unit),
        earns_compensation=lot.earns_compensation)]
    if lot.retired:
        out.append(QuotaRetired(lot_id=lot.lot_id, county_code=lot.county_code, asset=lot.asset,
                                amount=qty(lot.asset, lot.retired)))
    if lot.buyback_price_fen_per_unit is not None:
        # the county buys back the whole right it takes in, the retired share included
        due = amount_due_fen(lot.asset, lot.amount, lot.buyback_price_fen_per_unit)
        out.append(BuybackOwed(lot_id=lot.lot_id, county_code=lot.county_code, enterprise_credit_code=lot.source_ref,
                               township_code=lot.township_code, asset=lot.asset, amount=qty(lot.asset, lot.amount),
                               amount_due=cny(due)))
    return out


# -- releases ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseOutcome:
    release_id: str
    status: str
    status_reason: str
    lot_id: str | None
    created: bool


def _released_event(rel: QuotaRelease, decision: ReleaseDecision) -> QuotaReleased:
    return QuotaReleased(
        release_id=rel.release_id, enterprise_credit_code=rel.enterprise_credit_code,
        township_code=rel.township_code, county_code=rel.county_code, asset=rel.asset,
        amount=qty(rel.asset, rel.amount), reason=rel.reason.value, basis=rel.basis.value,
        status=decision.status.value, status_reason=decision.reason, department=rel.department,
        buyback_price_per_unit=cny_or_none(rel.buyback_price_fen_per_unit), document_ref=rel.document_ref,
        released_on=rel.released_on)


def _accept(tx: Tx, policy: PoolPolicy, rel: QuotaRelease) -> str:
    lot, _ = accept_release(rel, policy)
    take_in(tx, lot)
    return lot.lot_id


def _entitled_department(policy: PoolPolicy, asset: object) -> str:
    for dept, assets in sorted(policy.department_assets.items()):
        if asset in assets:
            return str(dept)
    return "unknown"


def submit_release(tx: Tx, data: Mapping[str, Any], *, department: str | None, submitted_by: str) -> ReleaseOutcome:
    """A department's release (fields of QuotaReleaseSubmitted). Raises QuotaDomainError (every problem)
    or IdReused. Whether the publisher may release this asset is checked by the caller (scopes);
    ``department`` None (e.g. the county admin entering it) means the one the policy entitles."""
    county = _county(data)
    cp = lock_county(tx.session, county, tx.now)
    digest = body_digest(data)
    existing = intake_store.release_row(tx.session, str(data.get("release_id")))
    if existing is not None:
        if not same_body(existing.digest, data) and (differ := release_differences(existing, data)):
            raise IdReused("release", existing.release_id, differ)
        lot_id = f"release:{existing.release_id}" if existing.status == ReleaseStatus.ACCEPTED.value else None
        return ReleaseOutcome(existing.release_id, existing.status, existing.status_reason, lot_id, False)
    department = department or _entitled_department(cp.policy, data.get("asset"))
    rel = parse_release({**data, "department": department}, cp.policy, cst_date(tx.now))
    if rel.reason in EXIT_REASONS:  # only these wait for an exit (see lock_enterprises)
        lock_enterprises(tx.session, [rel.enterprise_credit_code])
    departed = {rel.enterprise_credit_code} if intake_store.has_departed(tx.session, rel.enterprise_credit_code) else set()
    decision = verify_release(rel, departed, cp.policy.verification)
    intake_store.insert_release(tx.session, rel, status=decision.status, status_reason=decision.reason, digest=digest,
                                submitted_by=submitted_by, now=tx.now)
    tx.emit(_released_event(rel, decision), rel.release_id)
    lot_id = _accept(tx, cp.policy, rel) if decision.status is ReleaseStatus.ACCEPTED else None
    return ReleaseOutcome(rel.release_id, decision.status.value, decision.reason, lot_id, True)


def enterprise_departed(tx: Tx, credit_code: str, county_code: str, how: str, effective_on: date) -> list[str]:
    """EnterpriseExited / EnterpriseRelocated: held releases of the enterprise now enter the pool.
    Returns the release ids let in."""
    # The counties' locks come before the departure is written and the held releases read, as in submit_release
    # (lock, then has_departed): a release arriving meanwhile waits and sees the departure, or is seen held here.
    counties = {r.county_code for r in intake_store.held_releases_of(tx.session, credit_code)}
    if county_code_problem(county_code) is None:
        counties.add(county_code)
    locked, created = lock_counties(tx.session, counties, tx.now)  # code order, as every multi-county transaction
    # then the enterprise's: a release of it being held in a county not locked here is waited for (lock_enterprises)
    lock_enterprises(tx.session, [credit_code])
    intake_store.record_departure(tx.session, credit_code, county_code, how, effective_on, tx.now)
    held = intake_store.held_releases_of(tx.session, credit_code)  # read again under the locks
    let_in = []
    for county in sorted({r.county_code for r in held}):
        # a county not locked above: a release held since in another county than the enterprise's (rare, out of order)
        cp = locked[county] if county in locked else lock_county(tx.session, county, tx.now)
        for rel in releases_verified_by(credit_code, [r for r in held if r.county_code == county]):
            decision = ReleaseDecision(ReleaseStatus.ACCEPTED, "exit_known")
            intake_store.set_release_status(tx.session, rel.release_id, decision.status, decision.reason, tx.now)
            tx.emit(_released_event(rel, decision), rel.release_id)
            _accept(tx, cp.policy, rel)
            let_in.append(rel.release_id)
    drop_unused(tx.session, created - {r.county_code for r in held})  # a county row made only for the lock
    return let_in


# -- reclamation ---------------------------------------------------------------------------------
def register_reclamation_project(tx: Tx, data: Mapping[str, Any], by: str) -> tuple[Any, bool]:
    """Register a 增减挂钩 project (its land does not enter the pool yet). Idempotent by project id."""
    county = _county(data)
    lock_county(tx.session, county, tx.now)
    digest = body_digest(data)
    existing = intake_store.reclamation_row(tx.session, str(data.get("project_id")))
    if existing is not None:
        if not same_body(existing.digest, data) and (differ := reclamation_differences(existing, data)):
            raise IdReused("reclamation", existing.project_id, differ)
        return existing, False
    registered_on = data.get("registered_on") or cst_date(tx.now)
    if isinstance(registered_on, str):
        registered_on = date.fromisoformat(registered_on)
    project = register_reclamation(str(data.get("project_id") or ""), county, str(data.get("township_code") or ""),
                                   data.get("area"), registered_on)
    intake_store.insert_reclamation(tx.session, project, digest=digest, by=by)
    return intake_store.reclamation_row(tx.session, project.project_id), True


def accept_reclamation_project(tx: Tx, project_id: str, accepted_on: date, accepted_area: str | None,
                               document_ref: str) -> tuple[ReclamationProject, bool]:
    """验收 published: the accepted area enters the pool as a LAND lot, once."""
    row = intake_store.reclamation_row(tx.session, project_id)
    if row is None:
        raise NotKnown("reclamation_project_unknown", f"no reclamation project {project_id!r} is registered")
    cp = lock_county(tx.session, row.county_code, tx.now)
    project = intake_store.reclamation_from_row(intake_store.reclamation_row(tx.session, project_id, lock=True))
    area = None
    if accepted_area is not None:
        try:
            area = parse_amount(accepted_area, LAND_SCALE)
        except AmountError as e:
            raise QuotaDomainError([Problem(e.reason, "accepted_area", str(e))]) from None
    result = accept_reclamation(project, accepted_on, cp.policy, area, cst_date(tx.now))
    if result.changed:
        intake_store.mark_reclamation_accepted(tx.session, result.project, document_ref)
        take_in(tx, result.lot)
    return result.project, result.changed
