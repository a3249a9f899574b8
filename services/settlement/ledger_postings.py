"""The money movements of a finalized statement, as commands to the ledger (``TransfersRequested`` on
``countypool.ledger.commands``, written to the outbox in the finalizing transaction — settlement never touches
ledger tables).

One transfer per money line, payer's CNY account debited, payee's credited, so every ledger transfer traces back
to one statement line and its sources. Transfer ids are ``settlement:<county>:<period>:L<line no, 5 digits>`` (``L00001``): re-sending a
finalization is idempotent at the ledger, and different content under the same id is refused there rather than
posted twice. Command event ids are derived the same way, so the ledger's inbox drops a re-sent command.

Accounts are ``<party>/CNY`` with the party string as address (``township:320612101``, ``park:P01``,
``county:320612/fund``, ``enterprise:<credit code>``, ``project:<id>``), opened on first use by the command
itself. They are opened with ``flags=[]`` — *no* balance constraint — on purpose: a party's CNY account here is
its settlement position with the county (what it is owed minus what it owes), not a bank balance. A park that
owes townships their share of the tax it collected, or a project that owes the county for the quota it was
allocated, must be able to show a negative position; the cash settling it moves outside these books. The
ledger's default for such addresses ("must not go negative") would refuse exactly the payables a statement
exists to record. Across all parties the positions still sum to zero, line by line.
"""
from __future__ import annotations

from typing import Iterator

from services.settlement.domain import Posting, Statement
from services.settlement.domain.lines import StatementLine
from shared.amounts import format_amount
from shared.contracts.ledger import AccountSpec, TransferSpec, TransfersRequested

ASSET = "CNY"
ACCOUNT_SUFFIX = f"/{ASSET}"
# A command carries at most this many transfers and about this many bytes serialized, whichever comes first. With
# short source ids a transfer is ~450 bytes, so 1,000 of them fit; long refs, parties and allocation ids can make
# one ~2 kB, and then bytes decide. The ledger's consumer takes messages of up to 1 MiB
# (services/ledger/main.py, consumer_max_message_bytes) and the outbox refuses events above
# shared.outbox.MAX_EVENT_BYTES (900 KiB): half a MiB keeps every command well under both.
TRANSFERS_PER_COMMAND = 1000
COMMAND_BYTES = 512 * 1024
# what a command's envelope adds to its transfers and accounts (ids, source, type, times, subject): ~0.5 kB
ENVELOPE_ALLOWANCE = 4 * 1024


def party_of_account(account_id: str) -> str:
    if not account_id.endswith(ACCOUNT_SUFFIX):
        raise ValueError(f"{account_id!r} is not a settlement CNY account")
    return account_id[: -len(ACCOUNT_SUFFIX)]


def account_spec(account_id: str) -> AccountSpec:
    return AccountSpec(account_id=account_id, asset=ASSET, address=party_of_account(account_id), flags=[])


def _transfer(p: Posting, line: StatementLine, county: str, period: str) -> TransferSpec:
    return TransferSpec(
        transfer_id=p.transfer_id, debit_account=p.debit_account, credit_account=p.credit_account, asset=ASSET,
        amount=format_amount(p.amount_fen, 2), code=f"settlement.{line.kind.value}",
        refs=[p.statement_id, *line.sources[:5]],
        metadata=_metadata(line, county, period),
    )


def _metadata(line: StatementLine, county: str, period: str) -> dict[str, str]:
    """Where the transfer comes from; month and allocation id too, so that replay rebuilds compensation per
    enterprise from these commands (services/settlement/replay.py)."""
    md = {"county": county, "period": period, "line_no": str(line.line_no), "kind": line.kind.value}
    if line.month is not None:
        md["month"] = line.month
    if line.allocation_id is not None:
        md["allocation_id"] = line.allocation_id
    return md


def ledger_commands(statement: Statement, postings: tuple[Posting, ...],
                    run: str) -> Iterator[tuple[str, TransfersRequested]]:
    """(event id, command) pairs, each with at most ``TRANSFERS_PER_COMMAND`` transfers and at most about
    ``COMMAND_BYTES`` serialized (see ``split_by_size``), with the accounts they use. Event ids number the commands
    from 1 within ``run`` (one finalization): the split depends only on the transfers, so finalizing the same
    statement again (a database restored from before its finalization) sends the same transfers, which the ledger
    takes as repeats of the standing ones and answers again; under the first run's event ids its inbox would
    drop them unanswered, and the postings would stay 'requested' for ever."""
    lines = {ln.line_no: ln for ln in statement.lines}
    label = statement.period.label
    transfers = [_transfer(p, lines[p.line_no], statement.county, label) for p in postings]
    for n, part in enumerate(split_by_size(transfers), 1):
        accounts = sorted({a for t in part for a in (t.debit_account, t.credit_account)})
        cmd = TransfersRequested(transfers=part, open_accounts=[account_spec(a) for a in accounts])
        yield f"settlement:{statement.county}:{label}:postings:{n}:{run}", cmd


def _chains(transfers: list[TransferSpec]) -> Iterator[list[TransferSpec]]:
    """Linked chains in order: a transfer with ``linked`` belongs with the next; a chain ends at the first one
    without (an open chain at the end stays one piece too, for the ledger to refuse whole)."""
    chain: list[TransferSpec] = []
    for t in transfers:
        chain.append(t)
        if not t.linked:
            yield chain
            chain = []
    if chain:
        yield chain


def _size(model) -> int:
    return len(model.model_dump_json().encode())  # as the envelope writes it (pydantic, UTF-8), or more


def split_by_size(transfers: list[TransferSpec], *, max_transfers: int = TRANSFERS_PER_COMMAND,
                  max_bytes: int = COMMAND_BYTES) -> list[list[TransferSpec]]:
    """Consecutive transfers in parts of at most ``max_transfers`` whose command (with its ``open_accounts``) is at
    most ``max_bytes`` serialized, counting ``ENVELOPE_ALLOWANCE`` for the envelope; a linked chain never
    straddles two parts (one longer or bigger than a part goes alone). Greedy in order, on each transfer's and
    account's own serialized size: the same transfers always give the same parts."""
    account_size: dict[str, int] = {}
    parts: list[list[TransferSpec]] = []
    part: list[TransferSpec] = []
    used: set[str] = set()
    size = ENVELOPE_ALLOWANCE
    for chain in _chains(transfers):
        chain_size = sum(_size(t) + 1 for t in chain)  # + the comma between items
        new = {a for t in chain for a in (t.debit_account, t.credit_account)} - used
        for a in new:
            if a not in account_size:
                account_size[a] = _size(account_spec(a)) + 1
        grown = chain_size + sum(account_size[a] for a in new)
        if part and (len(part) + len(chain) > max_transfers or size + grown > max_bytes):
            parts.append(part)
            part, used, size = [], set(), ENVELOPE_ALLOWANCE
            new = {a for t in chain for a in (t.debit_account, t.credit_account)}
            grown = chain_size + sum(account_size[a] for a in new)
        part.extend(chain)
        used |= new
        size += grown
    if part:
        parts.append(part)
    return parts
