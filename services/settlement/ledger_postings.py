"""The money movements of a finalized statement, as commands to the ledger (``TransfersRequested`` on
``countypool.ledger.commands``, written to the outbox in the finalizing transaction — settlement never touches
ledger tables).

One transfer per money line, payer's CNY account debited, payee's credited, so every ledger transfer traces back
to one statement line and its sources. Transfer ids are ``settlement:<county>:<period>:L<line no>``: re-sending a
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
# Transfers per command: keeps each Kafka message well under the broker's 1 MB default.
TRANSFERS_PER_COMMAND = 1000


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


def ledger_commands(statement: Statement, postings: tuple[Posting, ...]) -> Iterator[tuple[str, TransfersRequested]]:
    """(event id, command) pairs, each with at most ``TRANSFERS_PER_COMMAND`` transfers and the accounts they use."""
    lines = {ln.line_no: ln for ln in statement.lines}
    label = statement.period.label
    for i in range(0, len(postings), TRANSFERS_PER_COMMAND):
        part = postings[i : i + TRANSFERS_PER_COMMAND]
        accounts = sorted({a for p in part for a in (p.debit_account, p.credit_account)})
        cmd = TransfersRequested(
            transfers=[_transfer(p, lines[p.line_no], statement.county, label) for p in part],
            open_accounts=[account_spec(a) for a in accounts],
        )
        yield f"settlement:{statement.county}:{label}:postings:{i // TRANSFERS_PER_COMMAND + 1}", cmd
