"""Finance API, statements: run a draft, finalize, list periods, read a statement (lines paginated and filterable,
party totals, hash; ETag on finalized ones), export it, a party's position across periods, an enterprise's
compensation. Reads need ``finance:read``; running and finalizing need ``settlement:admin``.

Every read runs in one snapshot (``Database.read_snapshot``): a draft is replaced by each re-run, and a read in
read-committed statements could pair the header (hash, line count, totals) of one draft with the lines of the next,
which is what finance systems reconcile. An export keeps its snapshot until the last line is streamed."""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator

import hashlib
import json
from datetime import timedelta

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from services.settlement.api import statement_exports as exports
from services.settlement.api.schemas import (
    COUNTY_PATTERN,
    CREDIT_CODE_PATTERN,
    CompensationLine,
    CompensationOut,
    FinalizeIn,
    LineOut,
    PartyPosition,
    PartyTotalOut,
    PeriodsOut,
    PolicyRef,
    PositionPeriod,
    PostingStatus,
    RejectedPosting,
    StatementPage,
    StatementSummary,
    StatisticsTotalOut,
)
from services.settlement.domain import LineKind, Period, StatementLine
from services.settlement.domain.export import yuan
from services.settlement.domain.parties import party_kind
from services.settlement.domain.statement import FINALIZED
from services.settlement.statement_runs import StatementRuns, statement_id
from services.settlement.storage.rows import from_db
from services.settlement.storage.statements import StatementsRepository
from shared.auth import Principal, require
from services.settlement.domain.errors import SettlementDomainError
from services.settlement.metrics import RUNS
from shared.errors import ApiError, NotFound
from shared.runtime import ServiceRuntime

router = APIRouter(prefix="/v1", tags=["settlement statements"])
READ = require("finance:read", "settlement:admin")
ADMIN = require("settlement:admin")
COUNTY = Path(pattern=COUNTY_PATTERN, examples=["320612"])
PERIOD = Path(pattern=r"^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$", examples=["2026-03", "2026-Q1", "2026"],
              description="a month, a quarter or a year")
KINDS = "|".join(k.value for k in LineKind)


def _rt(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def _runs(request: Request) -> StatementRuns:
    return request.app.state.statement_runs


def summary_of(h, postings: dict | None) -> StatementSummary:
    return StatementSummary(
        statement_id=statement_id(h.county_code, h.period), county_code=h.county_code, period=h.period,
        period_start=h.period_start, period_end=h.period_end, status=h.status, as_of=from_db(h.as_of),
        finalized_at=from_db(h.finalized_at), content_hash=h.content_hash, line_count=h.line_count,
        money_total=yuan(h.money_total_fen), unmatched_receipts=h.unmatched_receipts,
        policy=PolicyRef(id=h.policy_id, version=h.policy_version),
        postings=PostingStatus(**postings) if postings is not None else None,
    )


def _summary(repo: StatementsRepository, h) -> StatementSummary:
    if h.status != FINALIZED:
        return summary_of(h, None)
    postings: dict = repo.posting_counts(h.county_code, h.period)
    if postings.get("rejected"):
        postings["rejected_lines"] = [RejectedPosting(line_no=r.line_no, transfer_id=r.transfer_id, reason=r.reason)
                                      for r in repo.rejected_postings(h.county_code, h.period)]
    return summary_of(h, postings)


def _header_or_404(repo: StatementsRepository, county: str, period: str):
    h = repo.header(county, period)
    if h is None:
        raise NotFound("statement_not_found", f"no statement {county}/{period}: run a draft first")
    return h


def line_out(ln: StatementLine) -> LineOut:
    return LineOut(line_no=ln.line_no, kind=ln.kind.value, payer=ln.payer, payee=ln.payee, amount=yuan(ln.amount_fen),
                   agreement_id=ln.agreement_id, agreement_version=ln.agreement_version, tax_kind=ln.tax_kind,
                   month=ln.month, agreement_year=ln.agreement_year, adjusts=ln.adjusts.value if ln.adjusts else None,
                   measure=ln.measure, allocation_id=ln.allocation_id, sources=list(ln.sources),
                   source_count=ln.source_count)


def _total_out(t) -> PartyTotalOut:
    return PartyTotalOut(party=t.party, receivable=yuan(t.receivable_fen), payable=yuan(t.payable_fen),
                         net=yuan(t.receivable_fen - t.payable_fen))


def _stat_out(t) -> StatisticsTotalOut:
    return StatisticsTotalOut(party=t.party, measure=t.measure, gained=yuan(t.gained), ceded=yuan(t.ceded))


def _etag(h, request: Request, summary: StatementSummary) -> str | None:
    """A finalized statement's lines never change, but the ledger's answers to its postings arrive after it (the
    summary counts them): its ETag is its content hash with those counts, per representation (query)."""
    if h.status != FINALIZED:
        return None
    postings = summary.postings.model_dump_json() if summary.postings is not None else ""
    variant = hashlib.sha256(f"{sorted(request.query_params.multi_items())}|{postings}".encode()).hexdigest()[:12]
    return f'"{h.content_hash}-{variant}"'


def _not_modified(request: Request, etag: str | None) -> Response | None:
    if etag is None:
        return None
    wanted = [t.strip() for t in request.headers.get("if-none-match", "").split(",") if t.strip()]
    if etag in wanted or "*" in wanted or f"W/{etag}" in wanted:
        return Response(status_code=304, headers={"ETag": etag})
    return None


def _cache_headers(etag: str | None, h) -> dict:
    headers = {"X-Content-Hash": h.content_hash}
    if etag:
        headers.update({"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"})
    else:
        headers["Cache-Control"] = "no-store"
    return headers


# -- running ---------------------------------------------------------------------------------------------------

@contextmanager
def counted(action: str):
    """countypool_settlement_runs_total: refused (a 4xx answer: bad period, out of order) vs failed (a fault)."""
    try:
        yield
    except ApiError:
        RUNS.labels(action, "refused").inc()
        raise
    except SettlementDomainError:
        RUNS.labels(action, "refused").inc()
        raise
    except Exception:
        RUNS.labels(action, "failed").inc()
        raise
    RUNS.labels(action, "succeeded").inc()


@router.post("/counties/{county}/periods/{period}/draft", response_model=StatementSummary,
             summary="Compute (again) the draft statement of a period; same inputs give the same content hash")
def run_draft(request: Request, county: str = COUNTY, period: str = PERIOD, who: Principal = Depends(ADMIN)):
    with counted("draft"):
        result = _runs(request).draft(county, period, who.id)
    return summary_of(result.header, None)


@router.post("/counties/{county}/periods/{period}/finalize", response_model=StatementSummary,
             summary="Finalize a period: recomputed at the cut-off, immutable afterwards, money posted to the ledger; "
                     "periods close in order. Finalizing a finalized period answers it again.")
def run_finalize(request: Request, county: str = COUNTY, period: str = PERIOD,
                 body: FinalizeIn | None = Body(default=None), who: Principal = Depends(ADMIN)):
    with counted("finalize"):
        result = _runs(request).finalize(county, period, who.id, body.expected_content_hash if body else None)
    with _rt(request).db.read_snapshot() as s:
        return _summary(StatementsRepository(s), result.header)


# -- reading ---------------------------------------------------------------------------------------------------

@router.get("/counties/{county}/periods", response_model=PeriodsOut, summary="Periods and statements of a county")
def list_periods(request: Request, county: str = COUNTY, _: Principal = Depends(READ)):
    with _rt(request).db.read_snapshot() as s:  # the headers and their postings of one moment
        repo = StatementsRepository(s)
        headers = repo.headers(county)
        out = [_summary(repo, h) for h in headers]
    closed = [h for h in headers if h.status == FINALIZED]
    next_month = Period.containing(closed[-1].period_end + timedelta(days=1), "month").label if closed else None
    return PeriodsOut(county_code=county, last_closed=closed[-1].period if closed else None, next_to_close=next_month,
                      statements=out)


@router.get("/counties/{county}/periods/{period}/statement", response_model=StatementPage,
            summary="A statement: summary, party totals, hash and a page of lines (filter by party, agreement, kind)",
            responses={304: {"description": "not modified (If-None-Match on a finalized statement)"}})
def get_statement(request: Request, county: str = COUNTY, period: str = PERIOD,
                  party: str | None = Query(default=None, description="lines where it pays or is paid"),
                  agreement: str | None = None, kind: str | None = Query(default=None, pattern=f"^({KINDS})$"),
                  after_line: int = Query(default=0, ge=0, le=2**31 - 1),  # line_no is an INTEGER column
                  limit: int = Query(default=100, ge=1, le=1000),
                  _: Principal = Depends(READ)):
    if party is not None:
        party_kind(party)  # a typo is 422 invalid_party, not a page without lines
    # header, totals, count and lines of one draft, though it is re-run meanwhile (module docstring). Pages are
    # read in snapshots of their own: a client compares each page's content_hash with the first's (next_after_line)
    with _rt(request).db.read_snapshot() as s:
        repo = StatementsRepository(s)
        h = _header_or_404(repo, county, period)
        summary = _summary(repo, h)
        etag = _etag(h, request, summary)
        if (not_modified := _not_modified(request, etag)) is not None:
            return not_modified
        filters = dict(party=party, agreement=agreement, kind=kind)
        lines = repo.lines_page(county, period, after_line=after_line, limit=limit + 1, **filters)
        page = StatementPage(
            **summary.model_dump(),
            totals=[_total_out(t) for t in repo.totals(county, period, party)],
            statistics_totals=[_stat_out(t) for t in repo.statistics_totals(county, period, party)],
            lines=[line_out(ln) for ln in lines[:limit]],
            matching_lines=repo.count_lines(county, period, **filters),
            next_after_line=lines[limit - 1].line_no if len(lines) > limit else None,
        )
    return Response(page.model_dump_json(), media_type="application/json", headers=_cache_headers(etag, h))


@router.get("/counties/{county}/periods/{period}/statement/export",
            summary="Export a statement: CSV (lines or totals), XLSX (summary, lines, totals) or JSON; ?headers=zh "
                    "for Chinese column headers",
            responses={200: {"content": {"text/csv": {}, exports.XLSX_TYPE: {}, "application/json": {}}}})
def export_statement(request: Request, county: str = COUNTY, period: str = PERIOD,
                     format: str = Query(default="csv", pattern="^(csv|xlsx|json)$"),
                     headers: str = Query(default="en", pattern="^(en|zh|key)$"),
                     part: str = Query(default="lines", pattern="^(lines|totals)$", description="CSV only"),
                     _: Principal = Depends(READ)):
    # The summary, totals and every line from one snapshot, held until the body is sent: the lines are streamed,
    # read after this function returned (a session of their own would see a draft re-run meanwhile).
    snapshot = ExitStack()
    s = snapshot.enter_context(_rt(request).db.read_snapshot())
    try:
        repo = StatementsRepository(s)
        h = _header_or_404(repo, county, period)
        summary_model = _summary(repo, h)
        etag = _etag(h, request, summary_model)
        if (not_modified := _not_modified(request, etag)) is not None:
            snapshot.close()
            return not_modified
        summary = summary_model.model_dump(mode="json")
        totals = repo.totals(county, period)
        stats = repo.statistics_totals(county, period)
        lines = repo.stream_lines(county, period)  # lazy: read while the body is sent
        name = f"statement-{county}-{period}"
        cache = _cache_headers(etag, h)
        if format == "xlsx":
            with snapshot:
                data = exports.xlsx(summary, lines, totals, headers)
            return Response(data, media_type=exports.XLSX_TYPE, headers={
                **cache, "Content-Disposition": f'attachment; filename="{name}.xlsx"'})
        if format == "csv":
            body = exports.csv_lines(lines, headers) if part == "lines" else exports.csv_totals(totals, headers)
            return StreamingResponse(_in_snapshot(snapshot, body), media_type=exports.CSV_TYPE, headers={
                **cache, "Content-Disposition": f'attachment; filename="{name}-{part}.csv"'})
        body = exports.json_document(summary, lines, [_total_out(t).model_dump() for t in totals],
                                     [_stat_out(t).model_dump() for t in stats], lambda ln: line_out(ln).model_dump())
        return StreamingResponse(_in_snapshot(snapshot, body), media_type="application/json", headers=cache)
    except BaseException:
        snapshot.close()
        raise


def _in_snapshot(snapshot: ExitStack, body: Iterator[bytes]) -> Iterator[bytes]:
    """``body``, then ``snapshot`` closed. Started here, inside its ``with``: a started generator dropped unfinished
    (a client gone) is closed, and the snapshot with it; one never started would keep the snapshot open."""
    def held() -> Iterator[bytes]:
        with snapshot:
            yield b""
            yield from body

    stream = held()
    next(stream)
    return stream


@router.get("/counties/{county}/parties/{party:path}/position", response_model=PartyPosition,
            summary="A party's receivable, payable and net in every statement of the county, with the running "
                    "finalized net")
def party_position(request: Request, party: str, county: str = COUNTY, _: Principal = Depends(READ)):
    party_kind(party)  # a typo is 422 invalid_party, not a position of zero
    with _rt(request).db.read_snapshot() as s:
        rows = StatementsRepository(s).party_totals_by_period(county, party)
    periods, cum, rec, pay = [], 0, 0, 0
    for r in rows:
        net = r.receivable_fen - r.payable_fen
        if r.status == FINALIZED:
            cum, rec, pay = cum + net, rec + r.receivable_fen, pay + r.payable_fen
        periods.append(PositionPeriod(period=r.period, status=r.status, receivable=yuan(r.receivable_fen),
                                      payable=yuan(r.payable_fen), net=yuan(net), cumulative_finalized_net=yuan(cum)))
    return PartyPosition(county_code=county, party=party, periods=periods, finalized_receivable=yuan(rec),
                         finalized_payable=yuan(pay), finalized_net=yuan(cum))


@router.get("/enterprises/{credit_code}/compensation", response_model=CompensationOut,
            summary="What an enterprise is paid for the quota it freed (腾退补偿) and for rights bought back, by period")
def enterprise_compensation(request: Request, credit_code: str = Path(pattern=CREDIT_CODE_PATTERN),
                            county: str | None = Query(default=None, pattern=COUNTY_PATTERN),
                            _: Principal = Depends(READ)):
    kinds = (LineKind.COMPENSATION.value, LineKind.BUYBACK.value)
    with _rt(request).db.read_snapshot() as s:
        rows = StatementsRepository(s).lines_to_payee(f"enterprise:{credit_code}", kinds, county)
    lines = [CompensationLine(county_code=r.county_code, period=r.period, status=r.status, line_no=r.line_no, kind=r.kind,
                              payer=r.payer, amount=yuan(r.amount_fen), allocation_id=r.allocation_id, month=r.month,
                              sources=json.loads(r.sources)) for r in rows]
    final = sum(r.amount_fen for r in rows if r.status == FINALIZED)
    # Until a period closes, a month and its quarter may both be drafted, each with the same allocation or
    # buy-back: each is owed once, as the latest draft holding it computes it.
    latest: dict[tuple, tuple] = {}
    for r in rows:
        if r.status != FINALIZED:
            key = (r.county_code, r.kind, r.allocation_id, r.sources)
            if key not in latest or r.computed_at >= latest[key][0]:
                latest[key] = (r.computed_at, r.amount_fen)
    draft = sum(amount for _at, amount in latest.values())
    return CompensationOut(enterprise_credit_code=credit_code, lines=lines, finalized_total=yuan(final),
                           draft_total=yuan(draft))
