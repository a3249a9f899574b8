"""The ledger transfers each pool step implies, as plain data for the ledger service.

Account ids are ``f"{address}/{asset}"``:
- ``county:{county}/pool/{asset}``          the county reserve (收储池)
- ``county:{county}/retired/{asset}``       the retired share, never reused
- ``project:{project_id}/{asset}``          what a project holds (reserved pending, allocated posted)
- ``external:rights-register/{asset}``      issuance account for released rights
- ``external:land-reclamation/{asset}``     issuance account for 增减挂钩 land

Why an external account for releases rather than debiting the enterprise: the ledger does not hold the
enterprises' historic grants, so an enterprise account would go negative; the designated external
account may, and the lot (not the ledger) remembers the enterprise.

Transfer ids derive from the release / reclamation project / request id and the asset, so a redelivered
event produces the same ids and the ledger answers "exists" instead of moving twice. A TigerBeetle-style
``linked`` flag chains a transfer to the next one in the same tuple: they succeed or fail together.
Post and void repeat the pending transfer's accounts and full amount, for readability.
Expiry needs no transfer: the ledger expires a pending transfer itself after ``timeout_seconds``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Iterable, Sequence

from services.quota.domain.lots import Lot, SourceKind


class TransferCode(StrEnum):
    RELEASE_INTAKE = "quota_release_intake"
    RECLAMATION_INTAKE = "quota_reclamation_intake"
    RETIRE = "quota_retire"
    RESERVE = "quota_reserve"
    ALLOCATE = "quota_allocate"  # posts a reservation
    VOID_RESERVATION = "quota_void_reservation"  # cancel, refusal, our own expiry


@dataclass(frozen=True)
class LedgerTransfer:
    transfer_id: str
    debit_account: str
    credit_account: str
    asset: str
    amount: int
    code: TransferCode
    pending: bool = False
    timeout_seconds: int | None = None  # only on pending transfers
    post_pending_id: str | None = None
    void_pending_id: str | None = None
    linked: bool = False  # chained to the next transfer of the same tuple


def pool_account(county_code: str, asset: str) -> str:
    return f"county:{county_code}/pool/{asset}"


def retired_account(county_code: str, asset: str) -> str:
    return f"county:{county_code}/retired/{asset}"


def project_account(project_id: str, asset: str) -> str:
    return f"project:{project_id}/{asset}"


def rights_register_account(asset: str) -> str:
    return f"external:rights-register/{asset}"


def land_reclamation_account(asset: str) -> str:
    return f"external:land-reclamation/{asset}"


def _chain(transfers: Sequence[LedgerTransfer]) -> tuple[LedgerTransfer, ...]:
    """Link every transfer to the next, the last one closes the chain. (A copy with ``linked`` set, made
    field by field: ``dataclasses.replace`` costs several times more, and intake chains one per lot.)"""
    last = len(transfers) - 1
    return tuple(t if t.linked == (i < last) else LedgerTransfer(
        t.transfer_id, t.debit_account, t.credit_account, t.asset, t.amount, t.code, t.pending, t.timeout_seconds,
        t.post_pending_id, t.void_pending_id, i < last) for i, t in enumerate(transfers))


def intake_moves(lot: Lot) -> tuple[LedgerTransfer, ...]:
    """Taking a lot in: issuance -> pool for the whole amount, then pool -> retired for the retired part."""
    if lot.source_kind is SourceKind.RECLAMATION:
        source, code = land_reclamation_account(lot.asset), TransferCode.RECLAMATION_INTAKE
    else:
        source, code = rights_register_account(lot.asset), TransferCode.RELEASE_INTAKE
    pool = pool_account(lot.county_code, lot.asset)
    moves = [LedgerTransfer(f"quota/intake/{lot.lot_id}", source, pool, lot.asset, lot.amount, code)]
    if lot.retired:
        moves.append(LedgerTransfer(f"quota/retire/{lot.lot_id}", pool, retired_account(lot.county_code, lot.asset),
                                    lot.asset, lot.retired, TransferCode.RETIRE))
    return _chain(moves)


def reserve_transfer_id(request_id: str, asset: str) -> str:
    return f"quota/reserve/{request_id}/{asset}"


def _pending(request_id: str, project_id: str, county_code: str, asset: str, amount: int) -> LedgerTransfer:
    return LedgerTransfer(reserve_transfer_id(request_id, asset), pool_account(county_code, asset),
                          project_account(project_id, asset), asset, amount, TransferCode.RESERVE)


def reserve_moves(
    request_id: str, project_id: str, county_code: str, lines: Iterable[tuple[str, int]], timeout_seconds: int
) -> tuple[LedgerTransfer, ...]:
    """One pending pool -> project transfer per line, linked: a request is reserved whole or not at all."""
    return _chain([
        replace(_pending(request_id, project_id, county_code, asset, amount), pending=True,
                timeout_seconds=timeout_seconds)
        for asset, amount in lines
    ])


def allocate_moves(
    request_id: str, project_id: str, county_code: str, lines: Iterable[tuple[str, int]]
) -> tuple[LedgerTransfer, ...]:
    return _chain([
        replace(_pending(request_id, project_id, county_code, asset, amount),
                transfer_id=f"quota/post/{request_id}/{asset}", code=TransferCode.ALLOCATE,
                post_pending_id=reserve_transfer_id(request_id, asset))
        for asset, amount in lines
    ])


def void_moves(
    request_id: str, project_id: str, county_code: str, lines: Iterable[tuple[str, int]], *, late: bool = False
) -> tuple[LedgerTransfer, ...]:
    """Voids are not linked: each releases what it can; voiding a pending transfer the ledger never made
    or already expired fails harmlessly. ``late`` voids answer a reservation confirmed after the request
    closed, under their own ids because a failed id stays failed."""
    kind = "void-late" if late else "void"
    return tuple(
        replace(_pending(request_id, project_id, county_code, asset, amount),
                transfer_id=f"quota/{kind}/{request_id}/{asset}", code=TransferCode.VOID_RESERVATION,
                void_pending_id=reserve_transfer_id(request_id, asset))
        for asset, amount in lines
    )


def repost_moves(request_id: str, asset: str, pool: str, project: str, amount: int) -> tuple[LedgerTransfer, ...]:
    """What makes an allocation the ledger refused to post (its reservation expired first, the ledger away longer
    than the hold) true there as well: our reservation voided, if it still holds (else that void fails harmlessly),
    then the units moved pool -> project at once. Not linked, in this order, under ids of their own (a failed id
    stays failed). The units are in the pool: no other request was given them here."""
    return (
        LedgerTransfer(f"quota/repost-void/{request_id}/{asset}", pool, project, asset, amount,
                       TransferCode.VOID_RESERVATION, void_pending_id=reserve_transfer_id(request_id, asset)),
        LedgerTransfer(f"quota/repost/{request_id}/{asset}", pool, project, asset, amount, TransferCode.ALLOCATE),
    )

