"""Ledger commands of a finalized statement are split by serialized size as well as by count: a command of 1,000
transfers with long refs, parties and allocation ids is well above the ledger consumer's 1 MiB (dead-lettered as
``message_too_large``) and the outbox's MAX_EVENT_BYTES (refused when written)."""
from __future__ import annotations

from datetime import date

from services.settlement.domain import compute_statement, finalize
from services.settlement.domain.periods import Period
from services.settlement.ledger_postings import (
    COMMAND_BYTES,
    TRANSFERS_PER_COMMAND,
    account_spec,
    ledger_commands,
    split_by_size,
)
from shared.contracts.ledger import TransferSpec, TransfersRequested
from shared.envelope import new_envelope
from shared.outbox import MAX_EVENT_BYTES
from settlement_factories import COUNTY, T1, T2, agreement, allocation, at, policy

LEDGER_CONSUMER_CAP = 1024 * 1024  # services/ledger/main.py, LedgerSettings.consumer_max_message_bytes


def _long(tag: str, i: int) -> str:
    return f"{tag}-{i:05d}-" + "z" * 120


def _statement(n_allocations: int = 800):
    """Allocations with long ids, projects and lots: each money line's transfer carries ~1 kB of refs and metadata."""
    allocs = [allocation(_long("AL", i), 10_000 + i,
                         [(_long(f"LOT{j}", i), f"E{i % 7}", (T1, T2)[j % 2], 1 + j) for j in range(6)],
                         on=date(2026, 1, 5), project=_long("PRJ", i)[:100])  # a project id is at most 100
              for i in range(n_allocations)]
    st_ = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[agreement()], policy=policy(),
                            as_of=at(2026, 2, 5), allocations=allocs)
    return finalize(st_)


def _wire_size(statement_id: str, event_id: str, cmd) -> int:
    """The command as the outbox writes it and Kafka carries it."""
    env = new_envelope(cmd, subject=statement_id, source="/countypool/settlement", producer="settlement",
                       event_id=event_id)
    return len(env.to_json())


def test_commands_with_large_transfers_stay_under_the_byte_budget_with_every_transfer_in_order():
    final, postings = _statement()
    commands = list(ledger_commands(final, postings, "r1"))
    transfers = [t for _, c in commands for t in c.transfers]
    assert [t.transfer_id for t in transfers] == [p.transfer_id for p in postings], "each posting once, in order"
    sizes = [_wire_size(final.statement_id, eid, c) for eid, c in commands]
    assert max(sizes) <= COMMAND_BYTES < MAX_EVENT_BYTES < LEDGER_CONSUMER_CAP, sizes
    assert all(len(c.transfers) <= TRANSFERS_PER_COMMAND for _, c in commands)
    # what it guards against: by count alone these transfers would make commands above the ledger's cap
    per_transfer = sum(sizes) / len(transfers)
    assert per_transfer * TRANSFERS_PER_COMMAND > LEDGER_CONSUMER_CAP
    assert len(commands) > -(-len(postings) // TRANSFERS_PER_COMMAND)
    # the parts are full, not split needlessly: all but the last come close to the budget
    assert min(sizes[:-1]) > COMMAND_BYTES * 0.9, sizes
    for _, c in commands:
        used = {a for t in c.transfers for a in (t.debit_account, t.credit_account)}
        assert [a.account_id for a in c.open_accounts] == sorted(used)


def test_commands_are_the_same_on_every_run_under_the_run_s_own_ids():
    """The same statement finalized again (a database restored from before) sends the same transfers, under event
    ids of its own run: the ledger answers them as repeats of standing transfers; under the first run's ids its
    inbox dropped them unanswered."""
    final, postings = _statement(300)
    first = [(eid, c.model_dump()) for eid, c in ledger_commands(final, postings, "r1")]
    again_final, again_postings = _statement(300)
    again = [(eid, c.model_dump()) for eid, c in ledger_commands(again_final, again_postings, "r2")]
    assert len(first) > 1 and [c for _, c in first] == [c for _, c in again]
    assert [eid for eid, _ in first] == [f"settlement:{COUNTY}:2026-01:postings:{i}:r1" for i in range(1, len(first) + 1)]
    assert [eid for eid, _ in again] == [f"settlement:{COUNTY}:2026-01:postings:{i}:r2" for i in range(1, len(first) + 1)]


def _spec(i: int, linked: bool, fat: int) -> TransferSpec:
    return TransferSpec(transfer_id=f"t{i:05d}", debit_account=f"county:{COUNTY}/a{i % 13}/CNY",
                        credit_account=f"township:{i % 17:09d}/CNY", asset="CNY", amount="1.00", code="settlement.x",
                        linked=linked, refs=[f"r{i}-" + "q" * 190] * (fat % 20),
                        metadata={f"k{j}": "v" * 900 for j in range(fat % 7)})


def _chained(lengths: list[int]) -> list[TransferSpec]:
    """Linked chains of the given lengths, one after the other, transfers of varied size."""
    out: list[TransferSpec] = []
    for length in lengths:
        for k in range(length):
            i = len(out)
            out.append(_spec(i, linked=k < length - 1, fat=i * 7 + 3))
    return out


def _chain_of(transfers: list[TransferSpec]) -> dict[str, int]:
    chain, out = 0, {}
    for t in transfers:
        out[t.transfer_id] = chain
        if not t.linked:
            chain += 1
    return out


def test_a_linked_chain_never_straddles_two_commands():
    lengths = [1, 3, 1, 40, 2, 1, 1, 7, 120, 1, 5, 1, 1, 33, 2] * 4
    transfers = _chained(lengths)
    chain = _chain_of(transfers)
    budget = 256 * 1024
    parts = split_by_size(transfers, max_transfers=150, max_bytes=budget)
    assert [t for p in parts for t in p] == transfers
    assert sum(len({chain[t.transfer_id] for t in p}) > 1 for p in parts) > 4
    for p in parts:
        assert not p[-1].linked, "a part ends where a chain ends"
        assert len(p) <= 150
        # open_accounts included, as ledger_commands builds the command
        accounts = sorted({a for t in p for a in (t.debit_account, t.credit_account)})
        cmd = TransfersRequested(transfers=p, open_accounts=[account_spec(a) for a in accounts])
        alone = len({chain[t.transfer_id] for t in p}) == 1
        assert _wire_size("stmt", "cmd-1", cmd) <= budget or alone, "over the budget only a chain that is by itself"
    firsts = [chain[p[0].transfer_id] for p in parts]
    lasts = [chain[p[-1].transfer_id] for p in parts]
    assert all(last < first for last, first in zip(lasts, firsts[1:])), "no chain in two parts"
    assert split_by_size(transfers, max_transfers=150, max_bytes=budget) == parts, "the same parts every time"


def test_a_chain_longer_or_bigger_than_a_part_travels_alone_and_whole():
    transfers = _chained([2, 30, 2])
    by_count = split_by_size(transfers, max_transfers=10)
    assert [len(p) for p in by_count] == [2, 30, 2]
    by_bytes = split_by_size(transfers, max_bytes=8 * 1024)  # the 30-chain alone is far bigger
    assert transfers[2:32] in by_bytes
    assert [t for p in by_bytes for t in p] == transfers
    assert all(not p[-1].linked for p in by_bytes)
