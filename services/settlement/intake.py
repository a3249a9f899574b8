"""Facts coming in — over HTTP, from a CSV/XLSX import or from Kafka — checked and stored the same way.

Each function holds the shared cut-off lock first and reads the clock after it (see ``storage.locks``): the
``received_at`` it stores is what decides which statement takes the fact. A fact re-sent with the same id and the
same content is a no-op (``created`` False); the same id with other content is refused.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from services.settlement import clock
from services.settlement.domain import (
    BuyBack,
    ConsumedLot,
    PartyError,
    PeriodError,
    ProceedsError,
    QuotaAllocation,
    ReceiptError,
    StatisticsReport,
    TaxReceipt,
    resolve_correction,
    validate_receipt,
    validate_statistics_report,
)
from services.settlement.domain.agreements import tax_kind_code
from services.settlement.domain.parties import park, township
from services.settlement.domain.proceeds import validate_allocation, validate_buyback
from services.settlement.storage.inputs import InputsRepository, receipt_from_row
from services.settlement.storage.locks import hold_enterprise, hold_intake
from services.settlement.storage.statements import StatementsRepository
from services.settlement.storage.rows import period, to_db
from shared.amounts import AmountError, parse_amount
from shared.db import data_exception, database_unavailable
from shared.contracts.assessment import EnterpriseRegistered
from shared.contracts.quota import BuybackOwed, LotCreated, QuotaAllocated
from shared.contracts.settlement import StatisticsReported, TaxReceiptReported

log = logging.getLogger(__name__)
CNY_SCALE = 2
# Allocated quantities only weigh lots against each other (compensation pro rata), so one scale fine enough for
# every asset (亩 0.0001, tce 0.001, t 0.0001) is used for all of them.
ALLOCATION_UNIT_SCALE = 6


def received_now(session: Session) -> datetime:
    """When a fact is received: the clock read under the intake lock (storage.locks), and never at or before a
    cut-off already taken. The finalizing instance's clock may run ahead of this one's, or this one be stepped
    back: a fact committed after a finalization but stamped at or before its cut-off was neither in that
    statement nor, being older than its cut-off, in the next one — no statement ever took it."""
    hold_intake(session)
    now = clock.now()
    last = StatementsRepository(session).latest_cutoff()
    return last + timedelta(microseconds=1) if last is not None and now <= last else now


def _fen(text: str, what: str, error=ReceiptError, **kw) -> int:
    try:
        return parse_amount(text, CNY_SCALE, **kw)
    except AmountError as exc:
        raise error(exc.reason, f"{what}: {exc}") from None


# -- tax receipts -------------------------------------------------------------------------------------------

def record_tax_receipt(session: Session, ev: TaxReceiptReported, *, channel: str, event_id: str | None = None,
                       wait_for_enterprise: bool = False):
    """Returns (stored row, created); (None, False) when it waits for its enterprise. ``wait_for_enterprise`` (the
    intake topic): a receipt of an enterprise not known yet waits for it instead of being refused — the tax bureau's
    topic and the register's events are not ordered against each other, and a department learns of a refusal only
    from the dead-letter topic. Over HTTP and in imports the caller is answered unknown_enterprise at once."""
    now = received_now(session)
    repo = InputsRepository(session)
    rid = ev.receipt_id
    tax_kind = tax_kind_code(ev.tax_kind)
    amount = _fen(ev.amount, f"receipt {rid}: amount", allow_zero=True, allow_negative=True)
    try:
        month = period(ev.month)
    except PeriodError as exc:
        raise ReceiptError(exc.reason, f"receipt {rid}: {exc}") from None
    existing = repo.receipt_row(rid)
    if existing is not None:
        return _resent(existing, ev, tax_kind, amount), False
    if amount < 0:
        raise ReceiptError("negative_tax", f"receipt {rid}: tax amount {ev.amount} is negative")
    known = repo.enterprise_known(ev.enterprise_credit_code) or _known_after_lock(session, repo, ev, wait_for_enterprise)
    receipt = TaxReceipt(receipt_id=rid, enterprise=ev.enterprise_credit_code, month=month, tax_kind=tax_kind,
                         amount_fen=amount, received_at=now, corrects=ev.corrects)
    if known and ev.corrects:
        original = repo.receipt_row(ev.corrects, for_update=True)
        if original is None:
            raise ReceiptError("correction_target_unknown", f"receipt {rid} corrects {ev.corrects}, which is not known")
        if original.corrected_by == rid:  # a copy of this correction committed while we waited for the lock
            return _resent(repo.receipt_row(rid), ev, tax_kind, amount), False
        first = receipt_from_row(original)
        if receipt.received_at <= first.received_at:
            # taken after the original (it read that row) though this replica's clock says before: a correction
            # stamped earlier was refused correction_before_original, for good
            now = first.received_at + timedelta(microseconds=1)
            receipt = replace(receipt, received_at=now)
        receipt = resolve_correction(receipt, first, already_corrected=original.corrected_by is not None)
    if not known and wait_for_enterprise and _may_become_known(ev.enterprise_credit_code):
        # every other refusal still comes at once (a correction's replaced amount is known when it is taken in)
        validate_receipt(replace(receipt, replaced_amount_fen=0) if ev.corrects else receipt, now=now)
        _wait(repo, TAX_RECEIPT, rid, ev, event_id, now, "receipt_id_conflict")
        return None, False
    validate_receipt(receipt, now=now, known_enterprises=(ev.enterprise_credit_code,) if known else ())
    repo.add_receipt(receipt, channel, event_id)
    return repo.receipt_row(rid), True


def _resent(existing, ev: TaxReceiptReported, tax_kind: str, amount: int):
    """The stored receipt, when ``ev`` is a copy of it; otherwise its id was used for another receipt."""
    if (existing.enterprise, existing.month, existing.tax_kind, existing.amount_fen, existing.corrects) == (
            ev.enterprise_credit_code, ev.month, tax_kind, amount, ev.corrects):
        return existing
    raise ReceiptError("receipt_id_conflict", f"receipt {ev.receipt_id} was already recorded with other content")


# -- inputs waiting for their enterprise ---------------------------------------------------------------------------

TAX_RECEIPT, STATISTICS_REPORT = "tax_receipt", "statistics_report"
_CREDIT_CODE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}")  # GB 32100's characters: what the register and agreements hold


def _may_become_known(code: str) -> bool:
    """Only a code in the credit codes' characters can ever be named by the register or an agreement: another one
    (e.g. typed in full width) would wait for ever, and is refused unknown_enterprise at once."""
    return _CREDIT_CODE.fullmatch(code) is not None
_WAITING_EVENTS = {TAX_RECEIPT: TaxReceiptReported, STATISTICS_REPORT: StatisticsReported}


def _known_after_lock(session: Session, repo: InputsRepository, ev, wait_for_enterprise: bool) -> bool:
    """Before an input waits: the enterprise's lock, then look again. A writer making it known at this moment
    (another replica taking the register's event) holds that lock from before its insert until it commits, and looks
    for what waits only after taking it: one of the two sees the other's row, so nothing waits for an enterprise
    already known."""
    code = ev.enterprise_credit_code
    if not (wait_for_enterprise and _may_become_known(code)):
        return False
    hold_enterprise(session, code)
    return repo.enterprise_known(code)


def _content(kind: str, ev) -> tuple:
    """What makes two copies the same input, as a stored one is compared (_resent, record_statistics): amounts in fen,
    the tax kind by its code — '1000' and '1000.00', 增值税 and VAT are one receipt, waiting or not."""
    if kind == TAX_RECEIPT:
        return (ev.enterprise_credit_code, ev.month, tax_kind_code(ev.tax_kind),
                _fen(ev.amount, f"receipt {ev.receipt_id}: amount", allow_zero=True, allow_negative=True), ev.corrects)
    return (ev.enterprise_credit_code, ev.month, ev.measure,
            _fen(ev.amount, f"statistics report {ev.report_id}: amount", allow_zero=True, allow_negative=True))


def _wait(repo: InputsRepository, kind: str, input_id: str, ev, event_id: str | None, now: datetime,
          conflict: str) -> None:
    existing = repo.waiting_row(kind, input_id)
    if existing is None:
        payload = json.dumps(ev.model_dump(mode="json", by_alias=True), sort_keys=True, ensure_ascii=False)
        repo.add_waiting(kind, input_id, ev.enterprise_credit_code, payload, event_id, now)
    elif _content(kind, _WAITING_EVENTS[kind].model_validate(json.loads(existing.payload))) != _content(kind, ev):
        raise ReceiptError(conflict, f"{kind} {input_id} is already waiting for its enterprise with other content")


def remember_enterprises(session: Session, enterprises: list[tuple[str, str | None, str | None]], known_from: str,
                         now: datetime) -> None:
    """(credit code, county, name) of each, now known; what waited for them is taken in, in the order it came."""
    repo = InputsRepository(session)
    codes = sorted({code for code, _, _ in enterprises})
    known = repo.known_among(codes) if codes else set()
    new = [c for c in codes if c not in known]
    if new:
        hold_intake(session)  # before the enterprises' locks, as an intake takes them (_take_waiting needs it)
    for code in new:  # in one order: see _known_after_lock
        hold_enterprise(session, code)
    repo.remember_enterprises(enterprises, known_from, now)
    if new:
        for row in repo.waiting_of(new):  # only an enterprise not known until now has inputs waiting for it
            _take_waiting(session, repo, row)


def _take_waiting(session: Session, repo: InputsRepository, row) -> None:
    """A refusal now (e.g. its id was used meanwhile over HTTP for another receipt) stays on the row, visible at
    GET /v1/waiting-inputs and in countypool_settlement_inputs_waiting; its savepoint undoes only itself. So does any
    other failure of this one input (a value the database refuses): the register event, agreement or lot that made its
    enterprise known must not fail for it."""
    savepoint = session.begin_nested()
    try:
        ev = _WAITING_EVENTS[row.kind].model_validate(json.loads(row.payload))
        if row.kind == TAX_RECEIPT:
            record_tax_receipt(session, ev, channel="kafka", event_id=row.event_id)
        else:
            record_statistics(session, ev, channel="kafka")
    except Exception as exc:  # noqa: BLE001 - recorded on the row and logged
        if database_unavailable(exc):
            raise  # not this input's fault: the whole transaction again
        savepoint.rollback()
        reason = getattr(exc, "reason", None) or ("invalid_value" if data_exception(exc) else "not_taken_in")
        if reason == "not_taken_in":
            log.exception("waiting %s %s could not be taken in", row.kind, row.input_id)
        repo.refuse_waiting(row.kind, row.input_id, reason, str(exc), clock.now())
        return
    savepoint.commit()
    repo.drop_waiting(row.kind, row.input_id)


# -- statistics -----------------------------------------------------------------------------------------------

def record_statistics(session: Session, ev: StatisticsReported, *, channel: str, wait_for_enterprise: bool = False):
    """As record_tax_receipt."""
    now = received_now(session)
    repo = InputsRepository(session)
    amount = _fen(ev.amount, f"statistics report {ev.report_id}: amount", allow_zero=True, allow_negative=True)
    existing = repo.statistics_row(ev.report_id)
    if existing is not None:
        if (existing.enterprise, existing.month, existing.measure, existing.amount_fen) == (
                ev.enterprise_credit_code, ev.month, ev.measure, amount):
            return existing, False
        raise ReceiptError("report_id_conflict", f"statistics report {ev.report_id} was already recorded with other content")
    report = StatisticsReport(report_id=ev.report_id, enterprise=ev.enterprise_credit_code, month=period(ev.month),
                              measure=ev.measure, amount_fen=amount, received_at=now)
    known = repo.enterprise_known(ev.enterprise_credit_code) or _known_after_lock(session, repo, ev, wait_for_enterprise)
    if not known and wait_for_enterprise and _may_become_known(ev.enterprise_credit_code):
        validate_statistics_report(report, now=now)
        _wait(repo, STATISTICS_REPORT, ev.report_id, ev, None, now, "report_id_conflict")
        return None, False
    validate_statistics_report(report, now=now, known_enterprises=(ev.enterprise_credit_code,) if known else ())
    repo.add_statistics(report, channel)
    return repo.statistics_row(ev.report_id), True


# -- quota proceeds -------------------------------------------------------------------------------------------

def allocation_id_of(ev: QuotaAllocated) -> str:
    return f"{ev.request_id}:{ev.asset}"  # one allocation per request and asset


def record_allocation(session: Session, ev: QuotaAllocated, *, event_id: str) -> bool:
    now = received_now(session)
    repo = InputsRepository(session)
    aid = allocation_id_of(ev)
    due = _fen(ev.amount_due, f"allocation {aid}: amount_due", ProceedsError, allow_zero=True)
    try:
        units = parse_amount(ev.amount, ALLOCATION_UNIT_SCALE)
        lots = tuple(
            ConsumedLot(lot.lot_id, lot.source_ref if lot.source_kind == "release" and lot.earns_compensation else None,
                        township(lot.township_code), parse_amount(lot.amount, ALLOCATION_UNIT_SCALE))
            for lot in ev.lots)
        destination = park(ev.park_id) if ev.park_id else None
    except (AmountError, PartyError) as exc:
        raise ProceedsError(exc.reason, f"allocation {aid}: {exc}") from None
    existing = repo.allocation_row(aid)
    if existing is not None:
        changed = _allocation_change(repo, existing, ev, units=units, due=due, destination=destination, lots=lots)
        if changed is None:
            return False
        raise ProceedsError("allocation_conflict", f"allocation {aid} was already recorded with another {changed}")
    alloc = QuotaAllocation(allocation_id=aid, project_id=ev.project_id, asset=ev.asset, amount_units=units,
                            price=ev.price_per_unit, amount_due_fen=due, destination=destination, lots=lots,
                            allocated_on=ev.allocated_on, received_at=now)
    validate_allocation(alloc)
    repo.add_allocation(alloc, ev.county_code, ev.request_id, event_id)
    for lot in lots:
        if lot.enterprise and len(lot.enterprise) == 18:
            remember_enterprises(session, [(lot.enterprise, ev.county_code, None)], "quota", now)
    return True


def _allocation_change(repo: InputsRepository, existing, ev: QuotaAllocated, *, units: int, due: int,
                       destination: str | None, lots: tuple[ConsumedLot, ...]) -> str | None:
    """The first field (as the event names it) in which ``ev`` differs from the allocation recorded under its id;
    None when it is the same allocation again. Every field counts: a re-send is the same body or a conflict."""
    fields = (
        ("county_code", existing.county_code, ev.county_code),
        ("request_id", existing.request_id, ev.request_id),
        ("asset", existing.asset, ev.asset),
        ("project_id", existing.project_id, ev.project_id),
        ("amount", existing.amount_units, units),
        ("price_per_unit", existing.price, ev.price_per_unit),
        ("amount_due", existing.amount_due_fen, due),
        ("park_id", existing.destination, destination),
        ("allocated_on", existing.allocated_on, ev.allocated_on),
    )
    changed = next((name for name, recorded, sent in fields if recorded != sent), None)
    if changed is None and repo.allocation_lots(existing.allocation_id) != sorted(lots, key=lambda lot: lot.lot_id):
        changed = "lots"
    return changed


def record_buyback(session: Session, ev: BuybackOwed, *, event_id: str, occurred_at: datetime) -> bool:
    """A paid lot bought back: the county fund owes the enterprise. Its month is when the quota service said so.
    False when it was recorded before with the same figures."""
    fact = QuotaFact(ev, event_id, occurred_at)
    refused = record_quota_facts(session, [fact])
    if fact.event_id in refused:
        raise refused[fact.event_id]
    return fact.created


@dataclass
class QuotaFact:
    event: LotCreated | BuybackOwed
    event_id: str
    occurred_at: datetime
    created: bool = False


def record_quota_facts(session: Session, facts: list[QuotaFact]) -> dict[str, ProceedsError]:
    """Lots and buy-backs (one of each per paid release: most of what quota sends here), in order, in a few
    statements whatever their number; the enterprises they name are remembered, the first mention first. A
    buy-back with a bad amount, or with other figures than one recorded before, is refused (returned by event
    id) and leaves nothing."""
    now = received_now(session)
    repo = InputsRepository(session)
    buyback_ids = [f"buyback:{f.event.lot_id}" for f in facts if type(f.event) is BuybackOwed]
    recorded = {r.buyback_id: (r.amount_fen, r.enterprise) for r in repo.buyback_rows(buyback_ids)}
    lots: list[dict] = []
    buybacks: list[tuple[BuyBack, str, str]] = []
    known: list[tuple[str, str | None, str | None]] = []
    refused: dict[str, ProceedsError] = {}
    for fact in facts:
        ev = fact.event
        if type(ev) is LotCreated:
            lots.append(dict(lot_id=ev.lot_id, county_code=ev.county_code, asset=ev.asset, source_kind=ev.source_kind,
                             source_ref=ev.source_ref, township_code=ev.township_code, dated=ev.dated,
                             received_at=to_db(now)))
            if ev.source_kind == "release" and len(ev.source_ref) == 18:
                known.append((ev.source_ref, ev.county_code, None))
            continue
        buyback_id = f"buyback:{ev.lot_id}"  # a paid lot is bought back once; distinct from the lot id it cites
        try:
            amount = _fen(ev.amount_due, f"buy-back of lot {ev.lot_id}: amount_due", ProceedsError)
            if buyback_id in recorded:
                if recorded[buyback_id] == (amount, ev.enterprise_credit_code):
                    continue
                raise ProceedsError("buyback_conflict",
                                    f"buy-back of lot {ev.lot_id} was already recorded with other figures")
            b = BuyBack(buyback_id=buyback_id, enterprise=ev.enterprise_credit_code, lot_id=ev.lot_id,
                        amount_fen=amount, agreed_on=fact.occurred_at.astimezone(clock.CST).date(), received_at=now)
            validate_buyback(b)
        except ProceedsError as exc:
            refused[fact.event_id] = exc
            continue
        recorded[buyback_id] = (amount, ev.enterprise_credit_code)
        buybacks.append((b, ev.county_code, fact.event_id))
        known.append((ev.enterprise_credit_code, ev.county_code, None))
        fact.created = True
    repo.add_lots(lots)
    repo.add_buybacks(buybacks)
    remember_enterprises(session, known, "quota", now)
    return refused


def record_enterprise(session: Session, ev: EnterpriseRegistered) -> None:
    remember_enterprises(session, [(ev.credit_code, ev.county_code, ev.name_)], "assessment", clock.now())
