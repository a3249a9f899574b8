"""Turning the domain's LedgerTransfer tuples into TransfersRequested commands for the ledger (through the
outbox, never its tables), and remembering each transfer asked so its answer can be matched."""
from __future__ import annotations

from typing import Sequence

from shared.amounts import format_amount
from shared.contracts.ledger import AccountSpec, TransfersRequested, TransferSpec
from services.quota.application.tx import Tx
from services.quota.domain.assets import ASSETS
from services.quota.domain.ledger_moves import LedgerTransfer, TransferCode
from services.quota.storage import transfer_store

PURPOSE = {
    TransferCode.RELEASE_INTAKE: "intake",
    TransferCode.RECLAMATION_INTAKE: "intake",
    TransferCode.RETIRE: "retire",
    TransferCode.RESERVE: "reserve",
    TransferCode.ALLOCATE: "post",
    TransferCode.VOID_RESERVATION: "void",
}


def account_spec(account_id: str, asset: str) -> AccountSpec:
    # ids are f"{address}/{asset}" (ledger_moves' convention), so the address is all before the last '/'
    return AccountSpec(account_id=account_id, asset=asset, address=account_id.rsplit("/", 1)[0])


def transfer_spec(m: LedgerTransfer, county_code: str, ref: str) -> TransferSpec:
    return TransferSpec(
        transfer_id=m.transfer_id, debit_account=m.debit_account, credit_account=m.credit_account, asset=m.asset,
        amount=format_amount(m.amount, ASSETS[m.asset].scale), code=m.code.value, pending=m.pending,
        timeout_seconds=m.timeout_seconds or 0, post_pending_id=m.post_pending_id or "",
        void_pending_id=m.void_pending_id or "", linked=m.linked, refs=[ref],
        metadata={"county_code": county_code},
    )


def send_moves(tx: Tx, moves: Sequence[LedgerTransfer], *, county_code: str, request_id: str | None = None,
               lot_id: str | None = None) -> bool:
    """One command per tuple (a linked chain must travel whole). A tuple whose every id was asked before
    is not sent again: the outbox already delivers it, and the ledger would only answer 'exists'."""
    if not moves:
        return False
    known = transfer_store.known_ids(tx.session, [m.transfer_id for m in moves])
    if len(known) == len(moves):
        return False
    ref = request_id or lot_id or ""
    specs = [transfer_spec(m, county_code, ref) for m in moves]
    accounts: dict[str, AccountSpec] = {}
    for m in moves:
        for acct in (m.debit_account, m.credit_account):
            accounts.setdefault(acct, account_spec(acct, m.asset))
    tx.emit(TransfersRequested(transfers=specs, open_accounts=list(accounts.values())), subject=specs[0].transfer_id)
    transfer_store.record_asked(tx.session, [
        dict(transfer_id=m.transfer_id, purpose=PURPOSE[m.code], county_code=county_code, asset=m.asset,
             amount=m.amount, debit_account=m.debit_account, credit_account=m.credit_account, request_id=request_id,
             lot_id=lot_id, state="asked", ledger_reason=None, asked_at=tx.now, answered_at=None)
        for m in moves if m.transfer_id not in known])
    return True
