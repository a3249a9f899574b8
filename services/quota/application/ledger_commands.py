"""Turning the domain's LedgerTransfer tuples into TransfersRequested commands for the ledger (through the
outbox, never its tables), and remembering each transfer asked so its answer can be matched."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from shared.amounts import format_amount
from shared.contracts.ledger import AccountSpec, TransfersRequested, TransferSpec
from services.quota.application.tx import BatchTx, Tx
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


def command_key(county_code: str) -> str:
    """The Kafka key of every command moving the county's pool: the pool is the aggregate its transfers share
    (a void freeing quota and a later reservation of it must reach the ledger in order, so on one partition)."""
    return f"county:{county_code}/pool"


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


@dataclass(frozen=True)
class MoveSet:
    """One tuple of moves (a linked chain travels whole) and what it is for; ``cause``: the position of the
    message asking for it in a batch."""

    moves: Sequence[LedgerTransfer]
    county_code: str
    request_id: str | None = None
    lot_id: str | None = None
    cause: int | None = None

    def specs(self) -> list[TransferSpec]:
        ref = self.request_id or self.lot_id or ""
        return [transfer_spec(m, self.county_code, ref) for m in self.moves]

    def asked_rows(self, known: set[str], now: datetime) -> list[dict]:
        return [dict(transfer_id=m.transfer_id, purpose=PURPOSE[m.code], county_code=self.county_code, asset=m.asset,
                     amount=m.amount, debit_account=m.debit_account, credit_account=m.credit_account,
                     request_id=self.request_id, lot_id=self.lot_id, state="asked", ledger_reason=None, asked_at=now,
                     answered_at=None)
                for m in self.moves if m.transfer_id not in known]


def _command(sets: Sequence[MoveSet]) -> TransfersRequested:
    specs = [s for ms in sets for s in ms.specs()]
    accounts: dict[str, AccountSpec] = {}
    for ms in sets:
        for m in ms.moves:
            for acct in (m.debit_account, m.credit_account):
                if acct not in accounts:  # the first mention names it (a spec built only then: a batch's
                    accounts[acct] = account_spec(acct, m.asset)  # lots share a few accounts)
    return TransfersRequested(transfers=specs, open_accounts=list(accounts.values()))


def send_moves(tx: Tx, moves: Sequence[LedgerTransfer], *, county_code: str, request_id: str | None = None,
               lot_id: str | None = None) -> bool:
    """One command per tuple (a linked chain must travel whole). A tuple whose every id was asked before
    is not sent again: the outbox already delivers it, and the ledger would only answer 'exists'."""
    if not moves:
        return False
    known = transfer_store.known_ids(tx.session, [m.transfer_id for m in moves])
    if len(known) == len(moves):
        return False
    ms = MoveSet(moves, county_code, request_id, lot_id)
    cmd = _command([ms])
    tx.emit(cmd, subject=command_key(county_code))
    transfer_store.record_asked(tx.session, ms.asked_rows(known, tx.now))
    return True


# A command of 400 transfers with the longest ids (200 characters) is ~0.3 MB: well under Kafka's 1 MB message
# limit and the ledger's consumer_max_message_bytes (1 MiB); usual ids make it ~170 kB.
MAX_COMMAND_TRANSFERS = 400


def send_many(btx: BatchTx, sets: Sequence[MoveSet]) -> int:
    """``send_moves`` of many tuples at once: one lookup of the ids asked before, one insert of the new ones,
    and the tuples still to send travel together, whole, in commands of one county (each keyed by its pool, as
    ``send_moves``'s) and at most MAX_COMMAND_TRANSFERS (the ledger applies each linked chain of a command on its
    own, as if it had come alone). Returns the commands."""
    asked = transfer_store.known_ids(btx.session, [m.transfer_id for ms in sets for m in ms.moves])
    todo: dict[str, list[MoveSet]] = {}  # county -> its tuples in order; counties in order of first mention
    rows: list[dict] = []
    for ms in sets:  # in order, as one send_moves after the other would
        if all(m.transfer_id in asked for m in ms.moves):
            continue
        rows += ms.asked_rows(asked, btx.now)
        asked.update(m.transfer_id for m in ms.moves)
        todo.setdefault(ms.county_code, []).append(ms)
    sent = 0
    for county, county_sets in todo.items():
        for chunk in _chunks(county_sets):
            cmd = _command(chunk)
            causes = {ms.cause for ms in chunk}
            btx.emit(cmd, command_key(county), causes.pop() if len(causes) == 1 else None)
            sent += 1
    transfer_store.record_asked(btx.session, rows)
    return sent


def _chunks(sets: Sequence[MoveSet]) -> list[list[MoveSet]]:
    """Consecutive tuples, whole, at most MAX_COMMAND_TRANSFERS transfers a chunk (a longer tuple alone)."""
    chunks: list[list[MoveSet]] = []
    size = MAX_COMMAND_TRANSFERS
    for ms in sets:
        if size + len(ms.moves) > MAX_COMMAND_TRANSFERS:
            chunks.append([])
            size = 0
        chunks[-1].append(ms)
        size += len(ms.moves)
    return chunks
