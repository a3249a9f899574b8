"""The batch path's ledger commands (ledger_commands.send_many) are bounded in bytes, not only in transfers: ids are
limited in characters and serialized in UTF-8, so 400 transfers of the same shape can be 150 kB or 1.6 MB. Each
command, in the real envelope with the longest correlation and causation ids, stays under half a MiB (the ledger's
consumer takes 1 MiB, the outbox 900 KiB); linked chains stay whole, in order, keyed by their county's pool."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from services.quota.application import ledger_commands
from services.quota.application.ledger_commands import MoveSet, command_key, send_many
from services.quota.application.tx import BatchTx
from services.quota.domain.ledger_moves import LedgerTransfer, TransferCode, intake_moves
from services.quota.domain.lots import Basis, SourceKind, new_lot
from services.quota.storage import tables as T
from services.quota.storage import transfer_store
from shared.envelope import new_envelope
from shared.outbox import EventTooLarge, Outbox

AT = datetime(2024, 6, 1, tzinfo=timezone.utc)
HALF_MIB = 512 * 1024
WIDE = "\U0001F600"  # 4 bytes in UTF-8, one character for the contracts' limits


@pytest.fixture
def sent(monkeypatch):
    """send_many without a database (no id asked before): the commands it emits, as (command, key, cause)."""
    monkeypatch.setattr(transfer_store, "known_ids", lambda session, ids: set())
    monkeypatch.setattr(transfer_store, "record_asked", lambda session, rows: None)

    def send(sets):
        btx = BatchTx(None, AT)
        send_many(btx, sets)
        return btx.emitted
    return send


def envelope_bytes(cmd, key: str) -> int:
    env = new_envelope(cmd, subject=key, source="/countypool/quota", producer="quota", correlation_id=WIDE * 200,
                       causation_id=WIDE * 200)
    return len(env.to_json())


def intake_sets(county: str, policy, n: int, width: int, char: str = "R") -> list[MoveSet]:
    out = []
    for i in range(n):
        rid = f"{i:06d}".rjust(width, char)
        lot = new_lot(lot_id=f"release:{rid}", county_code=county, asset="COD", amount=10**15 + i,
                      source_kind=SourceKind.ENTERPRISE, source_ref="9" * 18, township_code=f"{county}100123",
                      dated=date(2024, 1, 1), basis=Basis.FREE, buyback_price_fen_per_unit=None, origin_id=rid,
                      policy=policy)
        out.append(MoveSet(intake_moves(lot), county, lot_id=lot.lot_id, cause=i))
    return out


def wide_chains(county: str, n: int) -> list[MoveSet]:
    """Chains of the longest ids (200 characters, two-byte-plus UTF-8), each opening its own accounts: no such
    chain is built by the service today, but send_many takes any."""
    out = []
    for i in range(n):
        tag = f"{i:04d}"
        pool = f"county:{county}/x{'甲' * 200}"[:192] + tag + "/COD"
        project = f"project:{'甲' * 200}"[:192] + tag + "/COD"
        reserve = LedgerTransfer(f"quota/reserve/{'甲' * 200}"[:196] + tag, pool, project, "COD", 10**15,
                                 TransferCode.RESERVE, pending=True, timeout_seconds=86_400, linked=True)
        post = LedgerTransfer(f"quota/post/{'甲' * 200}"[:196] + tag, pool, project, "COD", 10**15,
                              TransferCode.ALLOCATE, post_pending_id=reserve.transfer_id)
        out.append(MoveSet((reserve, post), county, request_id=f"R{'甲' * 200}"[:196] + tag, cause=i))
    return out


def check_whole_and_in_order(emitted, sets) -> None:
    """Every chain whole, in order, in commands of its county keyed by its pool, with the accounts they name."""
    assert [t.transfer_id for cmd, _, _ in emitted for t in cmd.transfers] == \
        [m.transfer_id for ms in sets for m in ms.moves]
    for cmd, key, _ in emitted:
        assert key == command_key(sets[0].county_code)
        assert not cmd.transfers[-1].linked, "a chain never straddles two commands"
        named = {a for t in cmd.transfers for a in (t.debit_account, t.credit_account)}
        assert {a.account_id for a in cmd.open_accounts} == named


def test_intake_chains_of_the_widest_release_ids_go_in_commands_under_half_a_mib(sent, county, policy):
    # 400 transfers (the count cap) of release ids of 150 4-byte characters: one command of ~600 kB by count alone
    sets = intake_sets(county, policy, 200, 150, WIDE)
    emitted = sent(sets)
    check_whole_and_in_order(emitted, sets)
    sizes = [envelope_bytes(cmd, key) for cmd, key, _ in emitted]
    assert len(emitted) == 2 and all(s <= HALF_MIB for s in sizes), sizes
    assert sum(sizes) > HALF_MIB + 50_000, "split by bytes, not because of the count"


def test_commands_the_outbox_would_refuse_by_count_alone_are_split_under_half_a_mib(sent, county):
    sets = wide_chains(county, 200)  # 400 transfers, 400 accounts
    whole = ledger_commands._command(sets)
    env = new_envelope(whole, subject=command_key(county), source="/countypool/quota")
    with pytest.raises(EventTooLarge):  # what one command of them all would meet
        Outbox(T.messaging["outbox"], "quota").check_rows(
            [(env.id, env.type, whole.topic, env.subject, env.to_json().decode(), env.time)])
    emitted = sent(sets)
    check_whole_and_in_order(emitted, sets)
    assert all(envelope_bytes(cmd, key) <= HALF_MIB for cmd, key, _ in emitted)
    again = sent(sets)
    assert [[t.transfer_id for t in c.transfers] for c, _, _ in again] == \
        [[t.transfer_id for t in c.transfers] for c, _, _ in emitted], "the same chains, the same commands"


def test_usual_ids_still_fill_a_command_by_count(sent, county, policy):
    sets = intake_sets(county, policy, 250, 20)  # "release:RRRR...000123": 500 transfers
    emitted = sent(sets)
    check_whole_and_in_order(emitted, sets)
    assert [len(cmd.transfers) for cmd, _, _ in emitted] == [400, 100]
    assert envelope_bytes(*emitted[0][:2]) < 200_000
    assert [cause for _, _, cause in emitted] == [None, None], "a command of many lots is caused by none of them"


def test_a_chain_bigger_than_a_command_travels_alone_and_whole(sent, county, monkeypatch):
    sets = wide_chains(county, 3)
    monkeypatch.setattr(ledger_commands, "COMMAND_BYTES", 8 * 1024)  # less than one chain and its accounts
    emitted = sent(sets)
    check_whole_and_in_order(emitted, sets)
    assert [len(cmd.transfers) for cmd, _, _ in emitted] == [2, 2, 2]
    assert [cause for _, _, cause in emitted] == [0, 1, 2]
