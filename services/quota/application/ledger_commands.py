"""Turning the domain's LedgerTransfer tuples into TransfersRequested commands for the ledger (through the
outbox, never its tables), and remembering each transfer asked so its answer can be matched."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from pydantic_core import to_json

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
    return _command_of([(ms, ms.specs()) for ms in sets])


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


# A command carries at most MAX_COMMAND_TRANSFERS transfers and at most about COMMAND_BYTES serialized, whichever comes
# first (as settlement's, services/settlement/ledger_postings.py). The ledger's consumer takes commands of up to 1 MiB
# (services/ledger/main.py, consumer_max_message_bytes) and the outbox refuses events above
# shared.outbox.MAX_EVENT_BYTES (900 KiB): half a MiB keeps every command well under both. Counting alone is not
# enough: a lot's chain is ~0.74 kB with usual ids (a full command ~150 kB), but ids are counted in characters
# (release ids up to 150, transfer ids up to 200) and serialized in UTF-8, so the same 400 transfers of the
# longest release ids are ~256 kB in ASCII, ~487 kB in Chinese characters and ~602 kB in 4-byte ones.
MAX_COMMAND_TRANSFERS = 400
COMMAND_BYTES = 512 * 1024
# what a command's envelope adds to its transfers and accounts (id, source, type, subject, times, correlation and
# causation ids of up to 200 characters each): ~0.5 kB, ~2.5 kB at most
ENVELOPE_ALLOWANCE = 4 * 1024


def send_many(btx: BatchTx, sets: Sequence[MoveSet]) -> int:
    """``send_moves`` of many tuples at once: one lookup of the ids asked before, one insert of the new ones,
    and the tuples still to send travel together, whole, in commands of one county (each keyed by its pool, as
    ``send_moves``'s), at most MAX_COMMAND_TRANSFERS transfers and about COMMAND_BYTES serialized each (the ledger
    applies each linked chain of a command on its own, as if it had come alone). Returns the commands."""
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
            cmd = _command_of(chunk)
            causes = {ms.cause for ms, _ in chunk}
            btx.emit(cmd, command_key(county), causes.pop() if len(causes) == 1 else None)
            sent += 1
    transfer_store.record_asked(btx.session, rows)
    return sent


def _size(model) -> int:
    """UTF-8 bytes of the model as pydantic writes it into the envelope (or more: None fields included)."""
    return len(to_json(model))


def _command_of(chunk: Sequence[tuple[MoveSet, list[TransferSpec]]]) -> TransfersRequested:
    """The command of these tuples (their specs built already) and the accounts they name."""
    accounts: dict[str, AccountSpec] = {}
    for ms, _ in chunk:
        for m in ms.moves:
            for acct in (m.debit_account, m.credit_account):
                if acct not in accounts:  # the first mention names it (a spec built only then: a batch's
                    accounts[acct] = account_spec(acct, m.asset)  # lots share a few accounts)
    return TransfersRequested(transfers=[t for _, specs in chunk for t in specs], open_accounts=list(accounts.values()))


def _chunks(sets: Sequence[MoveSet], *, max_transfers: int | None = None,
            max_bytes: int | None = None) -> list[list[tuple[MoveSet, list[TransferSpec]]]]:
    """Consecutive tuples, whole (a linked chain never straddles two commands), with their specs: at most
    ``max_transfers`` transfers a chunk and, counting ENVELOPE_ALLOWANCE for the envelope, at most ``max_bytes``
    serialized with the accounts the chunk opens (a tuple longer or bigger than that goes alone). Greedy in order
    on each spec's and account's own serialized size: the same tuples always give the same chunks."""
    max_transfers = MAX_COMMAND_TRANSFERS if max_transfers is None else max_transfers
    max_bytes = COMMAND_BYTES if max_bytes is None else max_bytes
    account_size: dict[str, int] = {}  # a batch's lots share a few accounts: each measured once
    chunks: list[list[tuple[MoveSet, list[TransferSpec]]]] = []
    count, size, opened = 0, 0, set()
    for ms in sets:
        specs = ms.specs()
        grown = sum(_size(t) + 1 for t in specs)  # + the comma between items
        accounts = {(a, m.asset) for m in ms.moves for a in (m.debit_account, m.credit_account)}
        for a, asset in accounts:
            if a not in account_size:
                account_size[a] = _size(account_spec(a, asset)) + 1
        new = {a for a, _ in accounts} - opened
        if chunks and count + len(specs) <= max_transfers and size + grown + sum(map(account_size.get, new)) <= max_bytes:
            opened |= new
        else:
            chunks.append([])
            count, size, opened = 0, ENVELOPE_ALLOWANCE, {a for a, _ in accounts}
            new = opened
        chunks[-1].append((ms, specs))
        count += len(specs)
        size += grown + sum(map(account_size.get, new))
    return chunks
