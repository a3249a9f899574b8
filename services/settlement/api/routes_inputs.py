"""Finance API, inputs: agreements and amendments, the county's settlement policy, tax receipts (one, or a CSV/XLSX
import), statistics reports. Writes need ``settlement:admin`` (receipts also the tax bureau's
``publish:TaxReceiptReported``); reads need ``finance:read``."""
from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from services.settlement import clock, intake
from services.settlement.agreement_registry import record_version
from services.settlement.api.agreement_terms import agreement_out, terms_of
from services.settlement.api.receipt_import import BadRow, detect_format, read_rows
from services.settlement.api.schemas import (
    COUNTY_PATTERN,
    MONTH_PATTERN,
    AgreementIn,
    AgreementList,
    AgreementOut,
    AmendmentIn,
    ImportReport,
    PolicyIn,
    PolicyOut,
    PolicyVersionList,
    RowProblem,
    StatisticsReportIn,
    StatisticsReportOut,
    TaxReceiptIn,
    TaxReceiptList,
    TaxReceiptOut,
    WaitingInputList,
    WaitingInputOut,
)
from services.settlement.domain import SettlementDomainError
from services.settlement.domain.export import yuan
from services.settlement.policy_registry import record_policy
from services.settlement.storage.inputs import InputsRepository
from services.settlement.storage.rows import from_db
from shared.amounts import AmountError
from shared.auth import Principal, require
from shared.contracts.settlement import StatisticsReported, TaxReceiptReported
from shared.db import DB_ERRORS, unique_violation
from shared.errors import NotFound
from shared.runtime import ServiceRuntime

router = APIRouter(prefix="/v1", tags=["settlement inputs"])
READ = require("finance:read", "settlement:admin")
ADMIN = require("settlement:admin")
RECEIPTS = require("publish:TaxReceiptReported", "settlement:admin")
COUNTY = Path(pattern=COUNTY_PATTERN, examples=["320612"])
REMAINDERS = ("compensation: the enterprise that freed the most units (ties: smallest credit code); "
              "the rest: the county fund; revenue shares: the agreement's remainder_to party")


def _rt(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


# -- agreements ---------------------------------------------------------------------------------------------

def _store_agreement(request: Request, body, agreement_id: str, county: str, amendment: bool, who: Principal,
                     response) -> AgreementOut:
    terms = terms_of(body, agreement_id)

    def work(uow):
        _, county_code, created = record_version(uow.session, terms, county, version=body.version, amendment=amendment,
                                                 by=who.id, now=clock.now())
        return agreement_out(InputsRepository(uow.session).agreement_rows(agreement_id), created)

    out = _rt(request).transaction(work)
    response.status_code = 201 if out.created else 200
    return out


@router.post("/agreements", response_model=AgreementOut, status_code=201,
             summary="Record a revenue-sharing agreement (version 1); 409 overlapping_agreements if another agreement "
                     "already shares the same tax of the same enterprise and month",
             responses={200: {"description": "identical version already recorded"}, 409: {"description": "conflict"}})
def create_agreement(body: AgreementIn, request: Request, response: Response,
                     who: Principal = Depends(ADMIN)):
    return _store_agreement(request, body, body.agreement_id, body.county_code, False, who, response)


@router.post("/agreements/{agreement_id}/versions", response_model=AgreementOut, status_code=201,
             summary="Amend an agreement: a new version with the full terms, applying from effective_from")
def amend_agreement(agreement_id: str, body: AmendmentIn, request: Request, response: Response,
                    who: Principal = Depends(ADMIN)):
    return _store_agreement(request, body, agreement_id, "", True, who, response)


@router.get("/agreements/{agreement_id}", response_model=AgreementOut, responses={404: {"description": "unknown"}})
def get_agreement(agreement_id: str, request: Request, _: Principal = Depends(READ)):
    with _rt(request).db.read_snapshot() as s:  # one moment, and no write lock on SQLite
        rows = InputsRepository(s).agreement_rows(agreement_id)
        if not rows:
            raise NotFound("agreement_not_found", f"no agreement {agreement_id!r}")
        return agreement_out(rows)


@router.get("/agreements", response_model=AgreementList, summary="Agreements of a county or an enterprise, by id")
def list_agreements(request: Request, county: str | None = Query(default=None, pattern=COUNTY_PATTERN),
                    enterprise: str | None = None, after: str = "", limit: int = Query(default=50, ge=1, le=500),
                    _: Principal = Depends(READ)):
    with _rt(request).db.read_snapshot() as s:  # one moment, and no write lock on SQLite
        repo = InputsRepository(s)
        ids = repo.agreement_ids(county=county, enterprise=enterprise, after=after, limit=limit + 1)
        out = [agreement_out(repo.agreement_rows(i)) for i in ids[:limit]]
    return AgreementList(agreements=out, next_after=ids[limit - 1] if len(ids) > limit else None)


# -- policy ---------------------------------------------------------------------------------------------------

def _policy_out(row) -> PolicyOut:
    return PolicyOut(county_code=row.county_code, version=row.version, policy_id=row.policy_id,
                     compensation_bp=row.compensation_bp, township_weight=row.township_weight,
                     park_weight=row.park_weight, fund_weight=row.fund_weight, effective_from=row.effective_from,
                     recorded_at=from_db(row.recorded_at), recorded_by=row.recorded_by, remainders=REMAINDERS)


@router.put("/counties/{county}/settlement-policy", response_model=PolicyOut,
            summary="Set the county's settlement policy: a new version when it changes, splitting the proceeds of "
                    "allocations made from its effective_from until a later-dated version's (409 effective_in_closed_period)",
            responses={409: {"description": "effective_in_closed_period: in or before a finalized period (unless "
                                            "before the earliest version, where none splits)"}})
def put_policy(body: PolicyIn, request: Request, county: str = COUNTY, who: Principal = Depends(ADMIN)):
    def work(uow):
        policy, _ = record_policy(uow.session, county, policy_id=body.policy_id or f"policy-{county}",
                                  compensation_bp=body.compensation_bp, township_weight=body.township_weight,
                                  park_weight=body.park_weight, fund_weight=body.fund_weight,
                                  effective_from=body.effective_from, by=who.id, now=clock.now())
        row = next(r for r in InputsRepository(uow.session).policy_rows(county) if r.version == policy.version)
        return _policy_out(row)

    return _rt(request).transaction(work)  # refusals: api.errors (409 for the state of things, 422 for the input)


@router.get("/counties/{county}/settlement-policy", response_model=PolicyOut, responses={404: {"description": "none yet"}},
            summary="The county's settlement policy: the version with the latest effective_from, of a month's two the "
                    "later, which applies from then on (maybe from a later month; earlier ones: see versions)")
def get_policy(request: Request, county: str = COUNTY, _: Principal = Depends(READ)):
    with _rt(request).db.read_snapshot() as s:  # one moment, and no write lock on SQLite
        row = InputsRepository(s).latest_policy_row(county)
    if row is None:
        raise NotFound("policy_not_found", f"county {county} has no settlement policy")
    return _policy_out(row)


@router.get("/counties/{county}/settlement-policy/versions", response_model=PolicyVersionList,
            responses={404: {"description": "none yet"}},
            summary="Every version of the county's settlement policy, each with the month it takes effect from")
def get_policy_versions(request: Request, county: str = COUNTY, _: Principal = Depends(READ)):
    with _rt(request).db.read_snapshot() as s:  # one moment, and no write lock on SQLite
        rows = InputsRepository(s).policy_rows(county)
    if not rows:
        raise NotFound("policy_not_found", f"county {county} has no settlement policy")
    return PolicyVersionList(county_code=county, versions=[_policy_out(r) for r in rows])


# -- tax receipts ---------------------------------------------------------------------------------------------

def receipt_out(row, created: bool = False) -> TaxReceiptOut:
    return TaxReceiptOut(
        receipt_id=row.receipt_id, enterprise_credit_code=row.enterprise, month=row.month, tax_kind=row.tax_kind,
        amount=yuan(row.amount_fen), corrects=row.corrects,
        replaced_amount=yuan(row.replaced_amount_fen) if row.replaced_amount_fen is not None else None,
        corrected_by=row.corrected_by, received_at=from_db(row.received_at), channel=row.channel, created=created)


@router.post("/tax-receipts", response_model=TaxReceiptOut, status_code=201,
             summary="Record a tax receipt (a correction names the receipt it replaces and gives the new amount)",
             responses={200: {"description": "identical receipt already recorded"}})
def post_receipt(body: TaxReceiptIn, request: Request, response: Response,
                 _: Principal = Depends(RECEIPTS)):
    ev = TaxReceiptReported(**body.model_dump())
    row, created = _rt(request).transaction(lambda uow: intake.record_tax_receipt(uow.session, ev, channel="http"))
    response.status_code = 201 if created else 200
    return receipt_out(row, created)


def _import_row(session: Session, row_no: int, doc: dict[str, str]) -> bool | RowProblem:
    """True recorded, False unchanged, or the row's problem; a bad row undoes only itself (a savepoint). A row whose
    id another writer (the intake topic, another replica) was inserting at that moment is read again once that one
    committed: unchanged, or the conflict named. It broke the unique key, and the whole file was refused with it."""
    for attempt in (1, 2):
        savepoint = session.begin_nested()
        try:
            fields = {k: (v if v != "" else None) for k, v in doc.items()}
            ev = TaxReceiptReported(**TaxReceiptIn(**fields).model_dump())
            created = intake.record_tax_receipt(session, ev, channel="import")[1]
            savepoint.commit()
            return created
        except ValidationError as exc:
            savepoint.rollback()
            msg = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            return RowProblem(row=row_no, receipt_id=doc.get("receipt_id"), reason="invalid_row", message=msg)
        except (SettlementDomainError, AmountError) as exc:
            savepoint.rollback()
            return RowProblem(row=row_no, receipt_id=doc.get("receipt_id"), reason=exc.reason, message=str(exc))
        except DB_ERRORS as exc:
            savepoint.rollback()
            if attempt == 2 or not unique_violation(exc):
                raise
    raise AssertionError("unreachable")


@router.post("/tax-receipts/import", response_model=ImportReport,
             summary="Import receipts from CSV (UTF-8 or GB18030) or XLSX: good rows are recorded, bad rows reported "
                     "with a reason",
             responses={422: {"description": "the file as a whole cannot be taken: import_not_text (neither UTF-8 "
                                             "nor GB18030), import_not_csv, import_not_xlsx, import_empty, "
                                             "import_header_incomplete, import_header_ambiguous"}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}, "example":
                              "receipt_id,enterprise_credit_code,month,tax_kind,amount,corrects\n"
                              "TAX-1,91320612MA1W2B3C4M,2026-03,VAT,1250000.00,\n"},
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                     "schema": {"type": "string", "format": "binary"}}}}})
async def import_receipts(request: Request, format: str | None = Query(default=None, pattern="^(csv|xlsx)$"),
                          _: Principal = Depends(RECEIPTS)):
    content = await request.body()
    fmt = detect_format(request.headers.get("content-type"), format, content)
    rows = list(read_rows(content, fmt))

    def work(uow):
        report = ImportReport(rows=len(rows), recorded=0, unchanged=0, rejected=[])
        for row_no, doc in rows:
            if isinstance(doc, BadRow):  # refused by the reader (a row shifted by an unquoted "1,234")
                report.rejected.append(RowProblem(row=row_no, receipt_id=doc.receipt_id, reason=doc.reason,
                                                  message=doc.message))
                continue
            outcome = _import_row(uow.session, row_no, doc)
            if isinstance(outcome, RowProblem):
                report.rejected.append(outcome)
            elif outcome:
                report.recorded += 1
            else:
                report.unchanged += 1
        return report

    return _rt(request).transaction(work)


@router.get("/tax-receipts", response_model=TaxReceiptList, summary="Receipts by enterprise and month, by id")
def list_receipts(request: Request, enterprise: str | None = None,
                  month: str | None = Query(default=None, pattern=MONTH_PATTERN), after: str = "",
                  limit: int = Query(default=100, ge=1, le=1000), _: Principal = Depends(READ)):
    with _rt(request).db.read_snapshot() as s:  # one moment, and no write lock on SQLite
        rows = InputsRepository(s).receipts(enterprise=enterprise, month=month, after=after, limit=limit + 1)
    out = [receipt_out(r) for r in rows[:limit]]
    return TaxReceiptList(receipts=out, next_after=out[-1].receipt_id if len(rows) > limit else None)


@router.get("/tax-receipts/{receipt_id}", response_model=TaxReceiptOut)
def get_receipt(receipt_id: str, request: Request, _: Principal = Depends(READ)):
    with _rt(request).db.read_snapshot() as s:  # one moment, and no write lock on SQLite
        row = InputsRepository(s).receipt_row(receipt_id)
    if row is None:
        raise NotFound("receipt_not_found", f"no receipt {receipt_id!r}")
    return receipt_out(row)


# -- inputs waiting for their enterprise ------------------------------------------------------------------------

@router.get("/waiting-inputs", response_model=WaitingInputList,
            summary="Receipts and statistics reports from the intake topic that wait for their enterprise to be known "
                    "(and any refused when it was), by kind and id")
def list_waiting(request: Request, enterprise: str | None = None,
                 state: str | None = Query(default=None, pattern="^(waiting|refused)$"),
                 after: str = Query(default="", max_length=230, description="`next_after` of the page before"),
                 limit: int = Query(default=100, ge=1, le=1000), _: Principal = Depends(READ)):
    kind, _sep, input_id = after.partition("/")
    with _rt(request).db.read_snapshot() as s:
        rows = InputsRepository(s).waiting(enterprise=enterprise, refused=None if state is None else state == "refused",
                                           after=(kind, input_id), limit=limit + 1)
    out = [WaitingInputOut(kind=r.kind, input_id=r.input_id, enterprise_credit_code=r.enterprise,
                           waiting_since=from_db(r.waiting_since), content=json.loads(r.payload),
                           state="refused" if r.refused_reason else "waiting", refused_reason=r.refused_reason,
                           refused_message=r.refused_message,
                           refused_at=from_db(r.refused_at) if r.refused_at is not None else None)
           for r in rows[:limit]]
    return WaitingInputList(inputs=out, next_after=f"{out[-1].kind}/{out[-1].input_id}" if len(rows) > limit else None)


# -- statistics -----------------------------------------------------------------------------------------------

@router.post("/statistics-reports", response_model=StatisticsReportOut, status_code=201,
             summary="Record a statistic (value added / output) that agreements share (统计分成)")
def post_statistics(body: StatisticsReportIn, request: Request, response: Response,
                    _: Principal = Depends(require("publish:StatisticsReported", "settlement:admin"))):
    ev = StatisticsReported(**body.model_dump())
    row, created = _rt(request).transaction(lambda uow: intake.record_statistics(uow.session, ev, channel="http"))
    response.status_code = 201 if created else 200
    return StatisticsReportOut(report_id=row.report_id, enterprise_credit_code=row.enterprise, month=row.month,
                               measure=row.measure, amount=yuan(row.amount_fen), received_at=from_db(row.received_at),
                               created=created)
