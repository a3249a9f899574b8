"""Ledger commands of the batch path: many lots' chains per command, each command small enough for Kafka."""
from __future__ import annotations

from datetime import date

from services.quota.application.ledger_commands import MAX_COMMAND_TRANSFERS, MoveSet, _command
from services.quota.domain.ledger_moves import intake_moves
from services.quota.domain.lots import Basis, SourceKind, new_lot
from shared.envelope import new_envelope


def _lot(county, policy, release_id: str, amount: int):
    return new_lot(lot_id=f"release:{release_id}", county_code=county, asset="VOCS", amount=amount,
                   source_kind=SourceKind.ENTERPRISE, source_ref="9" * 18, township_code=f"{county}100123",
                   dated=date(2024, 1, 1), basis=Basis.FREE, buyback_price_fen_per_unit=None, origin_id=release_id,
                   policy=policy)


def test_a_full_command_of_the_longest_ids_stays_under_the_kafka_message_limit(county, policy):
    # the longest release id whose transfer ids ("quota/retire/release:<id>") are still ledger identifiers (200)
    longest = 200 - len("quota/retire/release:")
    lots = [_lot(county, policy, f"{i:06d}".ljust(longest, "R"), 10**17 + i) for i in range(MAX_COMMAND_TRANSFERS // 2)]
    cmd = _command([MoveSet(intake_moves(lot), county, lot_id=lot.lot_id) for lot in lots])
    assert len(cmd.transfers) == MAX_COMMAND_TRANSFERS
    size = len(new_envelope(cmd, subject=cmd.transfers[0].transfer_id, source="/countypool/quota").to_json())
    assert size < 1_000_000, size  # Kafka's default message limit and the ledger's consumer_max_message_bytes


def test_a_command_of_many_chains_says_what_one_command_per_chain_would(county, policy):
    sets = [MoveSet(intake_moves(_lot(county, policy, f"R{i}", 1000 * (i + 1))), county, lot_id=f"release:R{i}")
            for i in range(3)]
    one = [_command([ms]) for ms in sets]
    many = _command(sets)
    assert many.transfers == [t for cmd in one for t in cmd.transfers]
    assert [t.linked for t in many.transfers] == [True, False] * 3, "each chain closes before the next"
    assert many.open_accounts == list(dict.fromkeys(a for cmd in one for a in cmd.open_accounts))
