"""The hash-chained journal, balances as of a seq or a time, and account creation rules."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from services.ledger.domain import (
    DEFAULT_ASSETS,
    GENESIS,
    AccountFlags,
    AccountResult,
    MemoryLedger,
    NewAccount,
    TransferRequest as T,
    UnknownAccountError,
    address_kind,
    apply_batch,
    balance_as_of,
    balances_as_of,
    chain,
    create_account,
    create_accounts,
    default_flags,
    entry_deltas,
    expire_pending,
    verify,
)

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
ENT = "enterprise:91320612MA1W2B3C4D"


def snapshot(led: MemoryLedger) -> dict[str, tuple[int, int, int, int]]:
    return {a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) for a in led.accounts.values()}


def busy_ledger():
    """A ledger built in steps one minute apart; returns it and (seq, time, balances) after each step."""
    led = MemoryLedger()
    history = []
    steps = [
        lambda now: create_accounts(led, [NewAccount("mint", "COD", "external:生态环境局"),
                                          NewAccount("pool", "COD", "county:320612/pool")], now),
        lambda now: apply_batch(led, [T("t1", "mint", "pool", 50_000, code="release", refs=("evt-1",),
                                        metadata={"lot": "2024-COD-01", "备注": "关闭退出"})], now),
        lambda now: create_account(led, NewAccount("ent", "COD", ENT), now),
        lambda now: apply_batch(led, [T("p1", "pool", "ent", 20_000, pending=True, timeout_seconds=90),
                                      T("p2", "pool", "ent", 10_000, pending=True, timeout_seconds=90),
                                      T("p3", "pool", "ent", 5_000, pending=True)], now),
        lambda now: apply_batch(led, [T("post1", amount=15_000, post_pending_id="p1"),
                                      T("void3", void_pending_id="p3")], now),
        lambda now: expire_pending(led, led.due_pending(now), now),  # p2 expires (90 s)
        lambda now: apply_batch(led, [T("t2", "ent", "pool", 5_000, linked=True), T("t3", "pool", "mint", 1)], now),
    ]
    for i, step in enumerate(steps):
        now = T0 + timedelta(minutes=i)
        out = step(now)
        led.apply(out)
        history.append((led.journal_head().seq, now, snapshot(led)))
    assert led.transfers["p2"].status == "expired"
    return led, history


def test_journal_verifies():
    led, _ = busy_ledger()
    result = verify(led.journal)
    assert result.ok and result.checked == len(led.journal) == 12 and result.first_broken_seq is None
    assert [e.kind for e in led.journal] == [
        "account_created", "account_created", "transfer_posted", "account_created", "transfer_pending",
        "transfer_pending", "transfer_pending", "pending_posted", "pending_voided", "pending_expired",
        "transfer_posted", "transfer_posted",
    ]
    assert led.journal[0].prev_hash == GENESIS
    assert all(e.prev_hash == p.hash for p, e in zip(led.journal, led.journal[1:]))


def test_hash_is_sha256_of_documented_canonical_json():
    led, _ = busy_ledger()
    e = led.journal[2]  # carries non-ASCII metadata
    doc = {"seq": e.seq, "kind": e.kind, "transfer_id": e.transfer_id, "payload": e.payload,
           "recorded_at": e.recorded_at, "prev_hash": e.prev_hash}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == e.hash
    assert e.payload["meta.备注"] == "关闭退出" and e.payload["ref.0"] == "evt-1"
    assert e.recorded_at == "2024-05-01T00:01:00.000000+00:00"


@pytest.mark.parametrize("index", [0, 3, 7, 10])
def test_tampered_payload_is_found_at_that_entry(index):
    led, _ = busy_ledger()
    entries = list(led.journal)
    e = entries[index]
    entries[index] = dataclasses.replace(e, payload={**e.payload, "asset": "SO2"})
    result = verify(entries)
    assert (result.ok, result.first_broken_seq, result.reason, result.checked) == (False, e.seq, "hash_mismatch", index)


@pytest.mark.parametrize("index", [0, 5, 10])
def test_tampered_hash_is_found_at_that_entry(index):
    led, _ = busy_ledger()
    entries = list(led.journal)
    entries[index] = dataclasses.replace(entries[index], hash="f" * 64)
    assert verify(entries).first_broken_seq == entries[index].seq


def test_rehashed_entry_breaks_the_next_link():
    led, _ = busy_ledger()
    entries = list(led.journal)
    e = entries[4]
    forged = chain(e.prev_hash, e.seq, e.kind, e.transfer_id, {**e.payload, "amount": 1}, e.recorded_at)
    entries[4] = forged
    result = verify(entries)
    assert (result.first_broken_seq, result.reason) == (e.seq + 1, "prev_hash_mismatch")


def test_missing_entry_is_a_seq_gap_and_suffix_verifies_from_its_anchor():
    led, _ = busy_ledger()
    entries = list(led.journal)
    del entries[6]
    result = verify(entries)
    assert (result.first_broken_seq, result.reason, result.checked) == (7, "seq_gap", 6)
    suffix = led.journal[6:]
    assert verify(suffix, start_prev_hash=led.journal[5].hash, start_seq=7).ok
    assert not verify(suffix).ok


def test_non_canonical_payloads_are_refused():
    for bad in ({"x": 1.5}, {"x": True}, {"x": None}, {"x": [1]}, {1: "x"}):
        with pytest.raises(ValueError):
            chain(GENESIS, 1, "transfer_posted", "t", bad, "2024-01-01T00:00:00.000000+00:00")
    with pytest.raises(ValueError):
        chain(GENESIS, 1, "made_up_kind", "t", {}, "2024-01-01T00:00:00.000000+00:00")
    with pytest.raises(ValueError):
        chain(GENESIS, 0, "transfer_posted", "t", {}, "2024-01-01T00:00:00.000000+00:00")


def test_balance_as_of_every_seq_and_time_reproduces_history():
    led, history = busy_ledger()
    for seq, when, balances in history:
        assert {k: tuple(dataclasses.astuple(v)) for k, v in balances_as_of(led.journal, upto_seq=seq).items()} == balances
        by_time = balances_as_of(led.journal, as_of=when + timedelta(seconds=30))
        assert {k: dataclasses.astuple(v) for k, v in by_time.items()} == balances
        for aid, b in balances.items():
            assert dataclasses.astuple(balance_as_of(led.journal, aid, upto_seq=seq)) == b
            own = [e for e in led.journal if aid in (e.payload.get("account_id"), e.payload.get("debit_account_id"),
                                                      e.payload.get("credit_account_id"))]
            assert dataclasses.astuple(balance_as_of(own, aid, upto_seq=seq)) == b  # the account's entries suffice
    # every seq in between too, against a replay of the deltas
    for seq in range(1, len(led.journal) + 1):
        sums: dict[str, list[int]] = {}
        for e in led.journal[:seq]:
            for d in entry_deltas(e):
                row = sums.setdefault(d.account_id, [0, 0, 0, 0])
                for i, v in enumerate(d[2:]):
                    row[i] += v
        for aid, row in sums.items():
            assert list(dataclasses.astuple(balance_as_of(led.journal, aid, upto_seq=seq))) == row


def test_unknown_account_is_an_error_not_zero():
    led, history = busy_ledger()
    with pytest.raises(UnknownAccountError):
        balance_as_of(led.journal, "nobody")
    first_seq = history[0][0]
    with pytest.raises(UnknownAccountError):
        balance_as_of(led.journal, "ent", upto_seq=first_seq)  # created later
    with pytest.raises(UnknownAccountError):
        balance_as_of(led.journal, "ent", as_of=T0)


def test_stale_view_outcome_is_refused_by_memory_ledger():
    led = MemoryLedger()
    a = create_account(led, NewAccount("x", "LAND", "external:x"), T0)
    b = create_account(led, NewAccount("y", "LAND", "external:y"), T0)
    led.apply(a)
    with pytest.raises(ValueError):
        led.apply(b)  # computed on the old head


# --- accounts ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "request_, expected",
    [
        (NewAccount("pool", "LAND", "county:320612/pool"), AccountResult.exists),
        (NewAccount("pool", "LAND", "county:320612/pool", AccountFlags(debits_must_not_exceed_credits=True)),
         AccountResult.exists),
        (NewAccount("pool", "LAND", "county:320612/pool", AccountFlags()), AccountResult.exists_with_different_flags),
        (NewAccount("pool", "ENERGY", "county:320612/pool"), AccountResult.exists_with_different_asset),
        (NewAccount("pool", "LAND", "county:320612/reserve"), AccountResult.exists_with_different_address),
        (NewAccount("new", "LAND", "park:320612-P01"), AccountResult.ok),
        (NewAccount("", "LAND", "park:320612-P01"), AccountResult.id_must_not_be_empty),
        (NewAccount("a b", "LAND", "park:320612-P01"), AccountResult.id_invalid),
        (NewAccount("x" * 129, "LAND", "park:320612-P01"), AccountResult.id_invalid),
        (NewAccount("park/P01/balance", "LAND", "park:320612-P01"), AccountResult.id_reserved_suffix),
        (NewAccount("p/entries", "LAND", "park:320612-P01"), AccountResult.id_reserved_suffix),
        (NewAccount("p/pending", "LAND", "park:320612-P01"), AccountResult.id_reserved_suffix),
        (NewAccount("park/P01/balances", "LAND", "park:320612-P01"), AccountResult.ok),
        (NewAccount("new", "GOLD", "park:320612-P01"), AccountResult.asset_unknown),
        (NewAccount("new", "LAND", "enterprise:123"), AccountResult.address_invalid),
        (NewAccount("new", "LAND", "planet:mars"), AccountResult.address_invalid),
        (NewAccount("new", "LAND", "park:320612-P01", AccountFlags(True, True)),
         AccountResult.flags_are_mutually_exclusive),
    ],
)
def test_account_rules(request_, expected):
    led = MemoryLedger()
    led.apply(create_account(led, NewAccount("pool", "LAND", "county:320612/pool"), T0))
    out = create_account(led, request_, T0)
    assert [o.result for o in out.results] == [expected]
    assert len(out.accounts) == len(out.journal) == (1 if expected is AccountResult.ok else 0)
    led.apply(out)
    assert verify(led.journal).ok


def test_addresses_and_default_flags():
    assert address_kind("county:320612/pool") == "county"
    assert address_kind("township:320612101") == "township"
    assert address_kind("park:320612-P01") == "park"
    assert address_kind(ENT) == "enterprise"
    assert address_kind("project:PRJ-2024-001") == "project"
    assert address_kind("retired:320612") == "retired"
    assert address_kind("external:生态环境局") == "external"
    for bad in ("county:3206", "township:32061210", "enterprise:91320612MA1W2B3C4I", "county", "external:", ":x"):
        assert address_kind(bad) is None, bad
    assert default_flags("external:x") == AccountFlags() == default_flags("issuance:320612")
    for constrained in ("county:320612/pool", "township:320612101", "park:P1", ENT, "project:p", "retired:320612"):
        assert default_flags(constrained) == AccountFlags(debits_must_not_exceed_credits=True)


def test_default_assets():
    assert {k: (a.unit, a.scale) for k, a in DEFAULT_ASSETS.items()} == {
        "LAND": ("亩", 4), "ENERGY": ("tce", 3), "COD": ("t", 4), "NH3N": ("t", 4), "SO2": ("t", 4),
        "NOX": ("t", 4), "VOCS": ("t", 4), "CNY": ("元", 2),
    }
    assert DEFAULT_ASSETS["LAND"].parse("12.5") == 125_000 and DEFAULT_ASSETS["CNY"].format(12345) == "123.45"
