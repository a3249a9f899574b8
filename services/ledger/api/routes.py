"""The ledger's HTTP API (/v1). Amounts are decimal strings in the asset's unit; an unknown account or asset
is a 404, never a zero."""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Iterator
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BeforeValidator, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from services.ledger.api.schemas import (
    AssetOut,
    BalanceOut,
    BalancesQuery,
    BatchResults,
    EntriesPage,
    EntryOut,
    ItemResult,
    OpenAccountsIn,
    TransferOut,
    TransfersIn,
    VerifyOut,
)
from services.ledger.domain import Account, Transfer, TransferResult, TransferStatus, verify
from services.ledger.group_commit import GROUP_MAX
from services.ledger.handlers import BadTransfer, LedgerApp, to_new_account, to_request
from services.ledger.storage.repository import LedgerRepository, _utc, checked_entry
from shared.auth import Principal, principal, require
from shared.errors import ApiError, NotFound, Unprocessable
from shared.runtime import ServiceRuntime

MAX_SEQ = 2**63 - 1  # a journal position is a BIGINT: past it a 422 invalid_request, not the driver's overflow

router = APIRouter(prefix="/v1", tags=["ledger"])
READ = require("ledger:read", "ledger:write")  # finance:read is the settlement API's (shared/auth.py)
WRITE = require("ledger:write")


def _rt(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def _app(request: Request) -> LedgerApp:
    return request.app.state.ledger


@contextmanager
def _snapshot(request: Request) -> Iterator[LedgerRepository]:
    """A repository whose reads all see one snapshot (Database.read_snapshot), so that figures and the journal
    position reported with them (as_of_seq, head_seq) agree although writers commit meanwhile, and a read of
    the whole journal leaves the writers going."""
    with _rt(request).db.read_snapshot() as s:
        yield LedgerRepository(s)


def _fmt(app: LedgerApp, asset: str, units: int) -> str:
    return app.assets[asset].format(units)


def _flags(a: Account) -> list[str]:
    return [n for n in ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits", "closed") if getattr(a.flags, n)]


def _balance(app: LedgerApp, a: Account, seq: int, dp=None, dpo=None, cp=None, cpo=None) -> BalanceOut:
    dp = a.debits_pending if dp is None else dp
    dpo = a.debits_posted if dpo is None else dpo
    cp = a.credits_pending if cp is None else cp
    cpo = a.credits_posted if cpo is None else cpo
    f = lambda u: _fmt(app, a.asset, u)  # noqa: E731
    return BalanceOut(account_id=a.id, asset=a.asset, address=a.address, flags=_flags(a), debits_pending=f(dp),
                      debits_posted=f(dpo), credits_pending=f(cp), credits_posted=f(cpo), balance=f(cpo - dpo),
                      available=f(cpo - dpo - dp), as_of_seq=seq)


def _transfer(app: LedgerApp, t: Transfer) -> TransferOut:
    return TransferOut(
        transfer_id=t.id, debit_account=t.debit_account_id, credit_account=t.credit_account_id, asset=t.asset,
        amount=_fmt(app, t.asset, t.amount), code=t.code, pending=t.pending, timeout_seconds=t.timeout_seconds,
        post_pending_id=t.post_pending_id, void_pending_id=t.void_pending_id, linked=t.linked, refs=list(t.refs),
        metadata=dict(t.metadata), timestamp=t.timestamp, status=t.status.value, expires_at=t.expires_at,
        posted_amount=_fmt(app, t.asset, t.posted_amount) if t.pending and t.status is not TransferStatus.pending else None,
        resolved_by=t.resolved_by, resolved_at=t.resolved_at,
    )


@router.get("/assets", response_model=list[AssetOut])
def list_assets(request: Request, _: Principal = Depends(READ)):
    return [AssetOut(code=a.code, name=a.name, unit=a.unit, scale=a.scale) for a in _app(request).assets.values()]


@router.get("/assets/{code}", response_model=AssetOut, responses={404: {"description": "unknown asset"}})
def get_asset(code: str, request: Request, _: Principal = Depends(READ)):
    a = _app(request).assets.get(code)
    if a is None:
        raise NotFound("asset_not_found", f"no asset {code!r}")
    return AssetOut(code=a.code, name=a.name, unit=a.unit, scale=a.scale)


@router.post("/accounts", response_model=BatchResults, summary="Open accounts (idempotent by account id)")
def open_accounts(body: OpenAccountsIn, request: Request, _: Principal = Depends(WRITE)):
    app = _app(request)
    outcome = _rt(request).transaction(lambda uow: app.open_accounts(uow.session, [to_new_account(a) for a in body.accounts]))
    results = [ItemResult(index=r.index, id=r.id, result=r.result.value) for r in outcome.results]
    return BatchResults(results=results, ok=outcome.ok)


_RESULT_VALUES = {r: r.value for r in TransferResult}


_SUCCESS = (TransferResult.ok, TransferResult.exists)


def _batch_results(results: list) -> Response:
    """A BatchResults document, serialized as the response model would be, without validating our own figures
    item by item (a batch has up to 10,000)."""
    value = _RESULT_VALUES
    doc = {"results": [{"index": r.index, "id": r.id, "result": value[r.result]} for r in results],
           "ok": all(r.result in _SUCCESS for r in results)}
    return Response(orjson.dumps(doc), media_type="application/json")


def _submit_transfers(body: TransfersIn, request: Request) -> Response:
    app = _app(request)
    try:
        reqs = [to_request(s, app.assets, i) for i, s in enumerate(body.transfers)]
    except BadTransfer as exc:
        raise Unprocessable(exc.reason, str(exc), {"index": exc.index}) from None
    if len(reqs) <= GROUP_MAX:  # small requests that arrive together commit together
        return _batch_results(request.app.state.group_commit.submit(reqs))
    result = _rt(request).transaction(lambda uow: app.submit(uow.session, reqs))
    return _batch_results(result.outcome.results)


_TRANSFERS_IN = TypeAdapter(TransfersIn)
_BEARER = HTTPBearer(auto_error=False)


class _JsonBodyFirst(APIRoute):
    """POST /v1/transfers takes a JSON body in one step: parsed from its bytes with pydantic
    (TypeAdapter.validate_json, the same model, several times faster than json.loads then validating the
    dicts), the caller checked by the same dependencies called in place (principal, then WRITE's scope check),
    then one trip to the thread pool for the transaction. FastAPI's own way runs every sync dependency in
    the thread pool (three hand-offs per request) and costs more CPU than a single transfer does. Any body
    this does not take (another content type, invalid JSON, a validation error) goes the declared route's
    way, so errors, auth and the OpenAPI document stay exactly FastAPI's."""

    def get_route_handler(self):
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            if request.headers.get("content-type") == "application/json":
                raw = await request.body()  # cached on the request: the declared way reads it again for free
                if raw:
                    try:
                        body = _TRANSFERS_IN.validate_json(raw)
                    except ValidationError:
                        return await declared(request)
                    WRITE(principal(request, await _BEARER(request)))  # 401 / 403 as the dependencies say
                    return await run_in_threadpool(_submit_transfers, body, request)
            return await declared(request)

        return handler


def create_transfers(body: TransfersIn, request: Request, _: Principal = Depends(WRITE)):
    return _submit_transfers(body, request)


router.add_api_route(
    "/transfers", create_transfers, methods=["POST"], response_model=BatchResults, route_class_override=_JsonBodyFirst,
    summary="Create transfers: a batch of up to 10,000, applied in order; linked chains all-or-nothing")


# ":path": transfer ids have slashes (quota/reserve/R1/COD); one percent-encoded (%2F) arrives decoded the same
@router.get("/transfers/{transfer_id:path}", response_model=TransferOut, responses={404: {"description": "unknown transfer"}})
def get_transfer(transfer_id: str, request: Request, _: Principal = Depends(READ)):
    if "\x00" in transfer_id:  # no transfer id holds one; PostgreSQL refused the lookup itself (a 500)
        raise NotFound("transfer_not_found", f"no transfer {transfer_id!r}")
    with _rt(request).db.read_snapshot() as s:  # one moment; no write lock on SQLite
        repo = LedgerRepository(s)
        found = repo.transfers_by_id([transfer_id])
        if found:
            return _transfer(_app(request), found[0])
        failed = repo.failed(transfer_id)
    if failed:
        raise ApiError(404, "transfer_failed", f"transfer {transfer_id!r} failed: {failed.result.value}",
                       {"result": failed.result.value})
    raise NotFound("transfer_not_found", f"no transfer {transfer_id!r}")


# A '+' written as such in a URL's query is a space once decoded (form encoding): 'as_of=...T23:59:59+08:00' typed
# into a browser or curl arrives as '...T23:59:59 08:00'. A space can stand nowhere else after the time: read as '+'.
_OFFSET_AFTER_SPACE = re.compile(r"([0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?) ([0-9]{2}(?::?[0-9]{2})?)$")


def _plus_restored(value):
    return _OFFSET_AFTER_SPACE.sub(r"\1+\2", value) if isinstance(value, str) else value


AsOf = Annotated[datetime | None, BeforeValidator(_plus_restored)]


def _account_or_404(repo: LedgerRepository, account_id: str) -> Account:
    a = repo.account(account_id)
    if a is None:
        raise NotFound("account_not_found", f"no account {account_id!r}")
    return a


@router.get("/accounts/{account_id:path}/balance", response_model=BalanceOut,
            summary="Balance now, or as of a time or a journal position")
def balance(account_id: str, request: Request, as_of: AsOf = None,
            at_seq: int | None = Query(default=None, ge=0), _: Principal = Depends(READ)):
    app = _app(request)
    with _snapshot(request) as repo:
        a = _account_or_404(repo, account_id)
        if as_of is None and at_seq is None:
            return _balance(app, a, repo.head().seq)
        if as_of is not None and as_of.tzinfo is None:
            raise Unprocessable("as_of_needs_timezone", "as_of must carry a timezone, e.g. 2026-06-30T23:59:59+08:00")
        seq = repo.seq_as_of(as_of) if as_of is not None else min(at_seq, repo.head().seq)
        if at_seq is not None and as_of is not None:
            seq = min(seq, at_seq)
        if repo.account_created_seq(account_id) > seq:
            raise NotFound("account_not_found_at", f"account {account_id!r} did not exist at journal position {seq}")
        return _balance(app, a, seq, *repo.balance_upto(account_id, seq))


@router.post("/balances:query", response_model=list[BalanceOut], summary="Balances of many accounts at once")
def balances(body: BalancesQuery, request: Request, _: Principal = Depends(READ)):
    app = _app(request)
    with _snapshot(request) as repo:
        found = {a.id: a for a in repo.accounts_where(ids=body.account_ids)}
        missing = list(dict.fromkeys(i for i in body.account_ids if i not in found))  # each named once
        if missing:
            raise NotFound("account_not_found", f"unknown accounts: {', '.join(missing[:20])}")
        seq = repo.head().seq
        return [_balance(app, found[i], seq) for i in body.account_ids]


@router.get("/balances", response_model=list[BalanceOut], summary="Balances by address prefix, e.g. all pools of a county",
            description="Up to `limit` accounts (default 1,000, at most 10,000) in account id order, after the account "
                        "`after` if given. When there are more, a `Link` header with `rel=\"next\"` holds the URL of the "
                        "next page; the last page has none.")
def balances_by_address(request: Request, response: Response, address_prefix: str = Query(min_length=3),
                        asset: str | None = None, after: str | None = Query(default=None, max_length=256),
                        limit: int = Query(default=1000, ge=1, le=10000), _: Principal = Depends(READ)):
    app = _app(request)
    if asset is not None and asset not in app.assets:
        raise NotFound("asset_not_found", f"no asset {asset!r}")
    with _snapshot(request) as repo:
        seq = repo.head().seq
        found = repo.accounts_where(address_prefix=address_prefix, asset=asset, limit=limit + 1, after=after)
    page = found[:limit]
    if len(found) > limit:  # a cut list says so: it was the whole list as far as a reader could tell
        query = {"address_prefix": address_prefix, "after": page[-1].id, "limit": limit}
        if asset is not None:
            query["asset"] = asset
        response.headers["Link"] = f'<{quote(request.url.path)}?{urlencode(query)}>; rel="next"'
    return [_balance(app, a, seq) for a in page]


@router.get("/accounts/{account_id:path}/entries", response_model=EntriesPage,
            summary="An account's journal entries in journal order, paginated by seq")
def entries(account_id: str, request: Request, after_seq: int = Query(default=0, ge=0, le=MAX_SEQ),
            limit: int = Query(default=100, ge=1, le=1000), _: Principal = Depends(READ)):
    app = _app(request)
    with _rt(request).db.read_snapshot() as s:  # one moment; no write lock on SQLite
        repo = LedgerRepository(s)
        a = _account_or_404(repo, account_id)
        rows = repo.entries(account_id, after_seq, limit + 1, repo.account_created_seq(account_id))
    f = lambda u: _fmt(app, a.asset, u)  # noqa: E731
    out = []
    for r in rows[:limit]:
        debit = r.debit_account_id == account_id
        credit = r.credit_account_id == account_id
        out.append(EntryOut(seq=r.seq, kind=r.kind, transfer_id=r.transfer_id, recorded_at=_utc(r.recorded_at),
                            debits_pending=f(r.d_debits_pending if debit else 0), debits_posted=f(r.d_debits_posted if debit else 0),
                            credits_pending=f(r.d_credits_pending if credit else 0), credits_posted=f(r.d_credits_posted if credit else 0),
                            hash=r.hash))
    return EntriesPage(entries=out, next_after_seq=out[-1].seq if len(rows) > limit else None)


@router.get("/accounts/{account_id:path}/pending", response_model=list[TransferOut],
            summary="Pending transfers touching an account, oldest first, paginated",
            description="Up to `limit` pending transfers (default 1,000, at most 10,000), after the transfer `after` if "
                        "given. When there are more, a `Link` header with `rel=\"next\"` holds the URL of the next page "
                        "(its `after` is the last transfer of this one); the last page has none.")
def pending(account_id: str, request: Request, response: Response, after: str | None = None,
            limit: int = Query(default=1000, ge=1, le=10000), _: Principal = Depends(READ)):
    with _rt(request).db.read_snapshot() as s:  # one moment; no write lock on SQLite
        repo = LedgerRepository(s)
        _account_or_404(repo, account_id)
        # a NUL: no such transfer (PostgreSQL refused the lookup itself, a 500)
        cursor = repo.transfers_by_id([after]) if after is not None and "\x00" not in after else []
        if after is not None and not cursor:
            raise NotFound("transfer_not_found", f"no transfer {after!r} (after)")
        if cursor and account_id not in (cursor[0].debit_account_id, cursor[0].credit_account_id):
            # another account's transfer: its time would start this account's page anywhere, and silently skip
            # its holds before it (a page's last hold posted or voided since is still of this account)
            raise Unprocessable("cursor_not_of_account", f"transfer {after!r} (after) does not touch {account_id}")
        found = repo.pending_of(account_id, limit + 1, after)
    page = found[:limit]
    if len(found) > limit:
        query = urlencode({"after": page[-1].id, "limit": limit})
        response.headers["Link"] = f'<{quote(request.url.path)}?{query}>; rel="next"'
    return [_transfer(_app(request), t) for t in page]


@router.get("/accounts/{account_id:path}", response_model=BalanceOut, responses={404: {"description": "unknown account"}})
def get_account(account_id: str, request: Request, _: Principal = Depends(READ)):
    with _snapshot(request) as repo:
        return _balance(_app(request), _account_or_404(repo, account_id), repo.head().seq)


@router.get("/journal/verify", response_model=VerifyOut,
            summary="Verify the hash chain from the start, or from a checkpoint seq (trusting the entry before it)")
def verify_journal(request: Request, from_seq: int = Query(default=1, ge=1, le=MAX_SEQ), _: Principal = Depends(READ)):
    # the head and the rows of one moment: no head_mismatch from a late append
    with _snapshot(request) as repo:
        return verify_chain(repo, from_seq)


def verify_chain(repo: LedgerRepository, from_seq: int = 1) -> VerifyOut:
    head = repo.head()
    start_hash = "0" * 64 if from_seq == 1 else repo.hash_at(from_seq - 1)
    if start_hash is None:
        raise NotFound("checkpoint_not_found", f"no journal entry {from_seq - 1}")
    first = repo.first_seq()
    if first is not None and first < 1:
        return VerifyOut(ok=False, checked=0, from_seq=from_seq, head_seq=head.seq, first_broken_seq=first,
                         reason="row_before_start")
    broken_row: list[tuple[int, str]] = []  # (seq, why) of a row that cannot stand as its entry

    def entries():
        for r in repo.journal_rows(from_seq):
            entry, problem = checked_entry(r)
            if problem:
                broken_row.append((r.seq, problem))
                return
            yield entry

    res = verify(entries(), start_prev_hash=start_hash, start_seq=from_seq)
    if broken_row and (res.ok or res.first_broken_seq >= broken_row[0][0]):
        return VerifyOut(ok=False, checked=res.checked, from_seq=from_seq, head_seq=head.seq,
                         first_broken_seq=broken_row[0][0], reason=broken_row[0][1])
    # the chain must end at the head, also when no row was left to check (a journal emptied, or cut at the
    # checkpoint, verified as ok); the break is the first row missing before the head (a gap) or past it
    end = from_seq - 1 + res.checked
    if res.ok and (end, res.last_hash) != (head.seq, head.hash):
        return VerifyOut(ok=False, checked=res.checked, from_seq=from_seq, head_seq=head.seq,
                         first_broken_seq=min(end, head.seq) + 1 if end != head.seq else head.seq,
                         reason="seq_gap" if end < head.seq else "head_mismatch")
    return VerifyOut(ok=res.ok, checked=res.checked, from_seq=from_seq, head_seq=head.seq,
                     first_broken_seq=res.first_broken_seq, reason=res.reason)
