"""POST /v1/imports: a department file (CSV or XLSX) of enterprises or indicators.

The file comes as multipart/form-data (field ``file``; ``kind``, ``department``, ``year``, ``all_or_nothing``
as form fields or query parameters) or as the raw request body (text/csv, the XLSX media type, or
application/octet-stream) with the options in the query. The multipart body is read with the standard
library's MIME parser, so the service needs no extra form-parsing package.
"""
from __future__ import annotations

import email.parser
import email.policy

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from services.assessment.api.deps import runtime
from services.assessment.api.schemas import BadRowOut, ImportReportOut, RowProblemOut
from services.assessment.imports import ImportOptions, ImportRefused, ImportReport, import_file
from shared.api import FILE_BODY_LIMIT
from shared.auth import Principal, principal
from shared.errors import ApiError, Unprocessable

router = APIRouter(prefix="/v1", tags=["imports"])
MAX_BYTES = FILE_BODY_LIMIT  # what the HTTP layer takes of a file body (shared.api)

_FORM_SCHEMA = {
    "type": "object",
    "required": ["file", "kind"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "CSV (UTF-8 or GB18030) or XLSX"},
        "kind": {"type": "string", "enum": ["enterprises", "indicators"]},
        "department": {"type": "string", "description": "whose figures (indicators files)"},
        "year": {"type": "integer", "description": "the file's year when rows have no year column"},
        "all_or_nothing": {"type": "boolean", "default": False},
    },
}
OPENAPI = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": _FORM_SCHEMA},
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {"schema": {"type": "string", "format": "binary"}},
}}, "parameters": [
    {"name": n, "in": "query", "required": False, "schema": s} for n, s in _FORM_SCHEMA["properties"].items() if n != "file"
]}


def _multipart(content_type: str, body: bytes) -> tuple[bytes | None, dict[str, str]]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise Unprocessable("invalid_multipart", "the multipart body could not be read")
    data, fields = None, {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "file":
            data = payload
        elif name:
            fields[name] = payload.decode("utf-8").strip()
    return data, fields


def _options(values: dict[str, str]) -> ImportOptions:
    kind = values.get("kind", "")
    if kind not in ("enterprises", "indicators"):
        raise Unprocessable("invalid_request", "kind must be 'enterprises' or 'indicators'")
    year = values.get("year") or None
    if year is not None and not (year.isascii() and year.isdigit()):  # int() refuses some str.isdigit() digits ('²'): a 500
        raise Unprocessable("invalid_request", "year must be a number")
    flag = values.get("all_or_nothing", "false").lower()
    return ImportOptions(kind=kind, department=values.get("department") or None, year=int(year) if year else None,
                         all_or_nothing=flag in ("1", "true", "yes", "on"))


def _may_import(p: Principal, options: ImportOptions) -> None:
    # a department may import what it may publish; the county's assessment office may import anything
    scope = "publish:EnterpriseReported" if options.kind == "enterprises" else f"publish:IndicatorsReported:{options.department}"
    if not (p.allows("assessment:write") or p.allows(scope)):
        raise ApiError(403, "insufficient_scope", f"needs assessment:write or {scope}")


def report_out(r: ImportReport) -> ImportReportOut:
    return ImportReportOut(
        kind=r.kind, format=r.format, rows=r.rows, accepted=r.accepted, rejected=r.rejected, written=r.written,
        all_or_nothing=r.all_or_nothing, outcomes=r.outcomes, ignored_columns=r.ignored_columns,
        bad_rows=[BadRowOut(line=b.line, credit_code=b.credit_code,
                            problems=[RowProblemOut(field=e.field, column=e.column, reason=e.reason, message=e.message)
                                      for e in b.problems]) for b in r.bad_rows])


@router.post("/imports", response_model=ImportReportOut, openapi_extra=OPENAPI,
             responses={422: {"description": "the file as a whole cannot be taken (missing column, unreadable)"}},
             summary="Import a CSV/XLSX file of enterprises or indicators; every bad row is reported with its line")
async def post_import(request: Request, p: Principal = Depends(principal)):
    body = await request.body()
    if len(body) > MAX_BYTES:
        raise ApiError(413, "file_too_large", f"at most {MAX_BYTES // (1024 * 1024)} MB per file")
    ctype = request.headers.get("content-type", "")
    values = dict(request.query_params)
    if ctype.startswith("multipart/form-data"):
        data, fields = _multipart(ctype, body)
        if data is None:
            raise Unprocessable("file_required", "the multipart body has no 'file' part")
        values = {**fields, **values}
    else:
        data = body
    if not data:
        raise Unprocessable("file_required", "the file is empty")
    options = _options(values)
    _may_import(p, options)
    try:
        report = await run_in_threadpool(import_file, runtime(request), data, options, principal=p.id)
    except ImportRefused as exc:
        raise Unprocessable(exc.reason, str(exc), exc.details) from None
    return report_out(report)
