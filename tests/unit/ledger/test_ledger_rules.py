"""Rule table: one row per transfer outcome (TigerBeetle style), each against the same small ledger."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from services.ledger.domain import (
    MAX_BALANCE,
    AccountFlags,
    FailedTransfer,
    MemoryLedger,
    NewAccount,
    TransferRequest as T,
    TransferResult as R,
    TransferStatus as S,
    apply_batch,
    create_accounts,
    expire_pending,
    verify,
)

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)
ENT = "enterprise:91320612MA1W2B3C4D"


def base_ledger() -> MemoryLedger:
    """mint (external) funded pool with 1000 (t0); p1 100 pending 60 s, p0 50 pending forever,
    p2 30 posted in full by post2, p3 20 voided by void3 - all pool -> ent."""
    led = MemoryLedger()
    accounts = [
        NewAccount("mint", "LAND", "external:mint"),
        NewAccount("mint2", "LAND", "issuance:320612"),
        NewAccount("pool", "LAND", "county:320612/pool"),
        NewAccount("ent", "LAND", ENT),
        NewAccount("cny", "CNY", "external:treasury"),
        NewAccount("shut", "LAND", "project:p-9", AccountFlags(debits_must_not_exceed_credits=True, closed=True)),
        NewAccount("debt", "LAND", "township:320612101", AccountFlags(credits_must_not_exceed_debits=True)),
    ]
    out = create_accounts(led, accounts, T0)
    assert out.ok
    led.apply(out)
    setup = [
        T("t0", "mint", "pool", 1000, code="release", refs=("ev-1",), metadata={"lot": "L1"}),
        T("p1", "pool", "ent", 100, code="reserve", pending=True, timeout_seconds=60),
        T("p0", "pool", "ent", 50, code="reserve", pending=True),
        T("p2", "pool", "ent", 30, code="reserve", pending=True),
        T("post2", post_pending_id="p2"),
        T("p3", "pool", "ent", 20, code="reserve", pending=True),
        T("void3", void_pending_id="p3"),
    ]
    out = apply_batch(led, setup, T0)
    assert out.ok, out.results
    led.apply(out)
    return led


def balances(led: MemoryLedger) -> dict[str, tuple[int, int, int, int]]:
    return {
        a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) for a in led.accounts.values()
    }


@dataclass
class Row:
    batch: list[T]
    expected: list[R]
    setup: list[list[T]] = field(default_factory=list)  # batches applied first (their results not checked)
    advance: int = 0  # seconds after T0 at which `batch` runs
    deltas: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # expected balance changes
    statuses: dict[str, tuple[S, int]] = field(default_factory=dict)  # transfer id -> (status, posted_amount)


POOL_AVAILABLE = 1000 - 100 - 50 - 30  # credits_posted - pending - posted debits after base_ledger()
T0_RETRY = T("t0", "mint", "pool", 1000, code="release", refs=("ev-1",), metadata={"lot": "L1"})


def retry_t0(**changes) -> T:
    fields = {f: getattr(T0_RETRY, f) for f in T0_RETRY.__dataclass_fields__}
    fields.update(changes)
    return T(**fields)


ROWS: dict[str, Row] = {
    # accepted
    "created": Row([T("n1", "pool", "ent", 10)], [R.ok], deltas={"pool": (0, 10, 0, 0), "ent": (0, 0, 0, 10)},
                   statuses={"n1": (S.posted, 0)}),
    "created_pending": Row([T("n1", "pool", "ent", 10, pending=True, timeout_seconds=5)], [R.ok],
                           deltas={"pool": (10, 0, 0, 0), "ent": (0, 0, 10, 0)}, statuses={"n1": (S.pending, 0)}),
    "created_up_to_available": Row([T("n1", "pool", "ent", POOL_AVAILABLE)], [R.ok],
                                   deltas={"pool": (0, POOL_AVAILABLE, 0, 0), "ent": (0, 0, 0, POOL_AVAILABLE)}),
    "created_with_its_asset_stated": Row([T("n1", "pool", "ent", 10, asset="LAND")], [R.ok],
                                         deltas={"pool": (0, 10, 0, 0), "ent": (0, 0, 0, 10)}),
    "exists": Row([T0_RETRY], [R.exists]),
    "exists_with_its_asset_stated": Row([retry_t0(asset="LAND")], [R.exists]),
    "exists_second_phase_with_empty_fields": Row([T("post2", post_pending_id="p2")], [R.exists]),
    "exists_second_phase_with_explicit_fields": Row(
        [T("post2", "pool", "ent", 30, code="reserve", post_pending_id="p2")], [R.exists]),
    "exists_with_different_flags": Row([retry_t0(pending=True)], [R.exists_with_different_flags]),
    "exists_with_different_flags_linked": Row([retry_t0(linked=True), T("n1", "pool", "ent", 1)],
                                              [R.exists_with_different_flags, R.linked_event_failed]),
    "exists_with_different_pending_id": Row([T("post2", post_pending_id="p1")], [R.exists_with_different_pending_id]),
    "exists_with_different_debit_account_id": Row([retry_t0(debit_account_id="mint2")],
                                                  [R.exists_with_different_debit_account_id]),
    "exists_with_different_credit_account_id": Row([retry_t0(credit_account_id="ent")],
                                                   [R.exists_with_different_credit_account_id]),
    "exists_with_different_asset": Row([retry_t0(asset="CNY")], [R.exists_with_different_asset]),
    "exists_with_different_asset_before_amount": Row(  # 1 CNY is 100 fen; the units alone would not tell
        [retry_t0(asset="CNY", amount=100_000)], [R.exists_with_different_asset]),
    "exists_with_different_asset_second_phase": Row([T("post2", post_pending_id="p2", asset="CNY")],
                                                    [R.exists_with_different_asset]),
    "exists_with_different_amount": Row([retry_t0(amount=999)], [R.exists_with_different_amount]),
    # '0' posts the full amount: a retry with 0 of a post that posted 40 of p1's 100 did not happen ('exists' would
    # tell the caller all 100 went through); with its own 40 it did
    "exists_with_different_amount_full_after_partial_post": Row(
        [T("part1", post_pending_id="p1", amount=0), T("part1", post_pending_id="p1", amount=40)],
        [R.exists_with_different_amount, R.exists], setup=[[T("part1", post_pending_id="p1", amount=40)]],
        statuses={"p1": (S.posted_pending, 40)}),
    "exists_with_different_timeout": Row(
        [T("p1", "pool", "ent", 100, code="reserve", pending=True, timeout_seconds=61)],
        [R.exists_with_different_timeout]),
    "exists_with_different_code": Row([retry_t0(code="other")], [R.exists_with_different_code]),
    "exists_with_different_refs": Row([retry_t0(refs=("ev-2",))], [R.exists_with_different_refs]),
    "exists_with_different_metadata": Row([retry_t0(metadata={"lot": "L2"})], [R.exists_with_different_metadata]),
    # rejected
    "id_must_not_be_empty": Row([T("", "pool", "ent", 1)], [R.id_must_not_be_empty]),
    "flags_are_mutually_exclusive": Row([T("n1", "pool", "ent", 1, pending=True, post_pending_id="p1")],
                                        [R.flags_are_mutually_exclusive]),
    "flags_are_mutually_exclusive_post_and_void": Row([T("n1", post_pending_id="p1", void_pending_id="p1")],
                                                      [R.flags_are_mutually_exclusive]),
    "timeout_must_not_be_negative": Row([T("n1", "pool", "ent", 1, pending=True, timeout_seconds=-1)],
                                        [R.timeout_must_not_be_negative]),
    "timeout_reserved_for_pending_transfer": Row([T("n1", "pool", "ent", 1, timeout_seconds=5)],
                                                 [R.timeout_reserved_for_pending_transfer]),
    "amount_must_not_be_negative": Row([T("n1", "pool", "ent", -1)], [R.amount_must_not_be_negative]),
    "amount_must_not_be_zero": Row([T("n1", "pool", "ent", 0)], [R.amount_must_not_be_zero]),
    "amount_must_not_be_zero_pending": Row([T("n1", "pool", "ent", 0, pending=True)], [R.amount_must_not_be_zero]),
    "accounts_must_be_different": Row([T("n1", "pool", "pool", 1)], [R.accounts_must_be_different]),
    "debit_account_not_found": Row([T("n1", "nobody", "ent", 1)], [R.debit_account_not_found]),
    "credit_account_not_found": Row([T("n1", "pool", "nobody", 1)], [R.credit_account_not_found]),
    "accounts_must_have_the_same_asset": Row([T("n1", "cny", "pool", 1)], [R.accounts_must_have_the_same_asset]),
    "asset_differs_from_accounts": Row([T("n1", "pool", "ent", 1, asset="CNY")], [R.asset_differs_from_accounts]),
    "asset_differs_from_accounts_post": Row([T("n1", post_pending_id="p1", asset="CNY")],
                                            [R.asset_differs_from_accounts], statuses={"p1": (S.pending, 0)}),
    "asset_differs_from_accounts_void": Row([T("n1", void_pending_id="p1", asset="CNY")],
                                            [R.asset_differs_from_accounts], statuses={"p1": (S.pending, 0)}),
    "debit_account_closed": Row([T("n1", "shut", "pool", 1)], [R.debit_account_closed]),
    "credit_account_closed": Row([T("n1", "pool", "shut", 1)], [R.credit_account_closed]),
    "overflows_debits": Row([T("n1", "mint", "mint2", MAX_BALANCE)], [R.overflows_debits]),
    "overflows_credits": Row([T("n1", "mint2", "pool", MAX_BALANCE)], [R.overflows_credits]),
    "exceeds_credits": Row([T("n1", "pool", "ent", POOL_AVAILABLE + 1)], [R.exceeds_credits]),
    "exceeds_credits_pending_counted": Row([T("n1", "pool", "ent", POOL_AVAILABLE + 1, pending=True)],
                                           [R.exceeds_credits]),
    "exceeds_debits": Row([T("n1", "mint", "debt", 1)], [R.exceeds_debits]),
    "pending_transfer_not_found": Row([T("n1", post_pending_id="nope")], [R.pending_transfer_not_found]),
    "pending_transfer_not_pending": Row([T("n1", post_pending_id="t0")], [R.pending_transfer_not_pending]),
    "pending_transfer_has_different_accounts": Row([T("n1", debit_account_id="mint", post_pending_id="p1")],
                                                   [R.pending_transfer_has_different_accounts]),
    "pending_transfer_already_posted": Row([T("n1", post_pending_id="p2")], [R.pending_transfer_already_posted]),
    "pending_transfer_already_voided": Row([T("n1", void_pending_id="p3")], [R.pending_transfer_already_voided]),
    "pending_transfer_expired": Row([T("n1", post_pending_id="p1")], [R.pending_transfer_expired], advance=60),
    "pending_transfer_expired_void": Row([T("n1", void_pending_id="p1")], [R.pending_transfer_expired], advance=61),
    "exceeds_pending_transfer_amount": Row([T("n1", amount=101, post_pending_id="p1")],
                                           [R.exceeds_pending_transfer_amount]),
    "pending_transfer_has_different_amount": Row([T("n1", amount=40, void_pending_id="p1")],
                                                 [R.pending_transfer_has_different_amount]),
    # second phase
    "pending_posted": Row([T("n1", post_pending_id="p1")], [R.ok], advance=59,
                          deltas={"pool": (-100, 100, 0, 0), "ent": (0, 0, -100, 100)},
                          statuses={"p1": (S.posted_pending, 100), "n1": (S.posted, 0)}),
    "pending_partially_posted": Row([T("n1", "pool", "ent", 40, post_pending_id="p1")], [R.ok],
                                    deltas={"pool": (-100, 40, 0, 0), "ent": (0, 0, -100, 40)},
                                    statuses={"p1": (S.posted_pending, 40)}),
    "pending_voided": Row([T("n1", void_pending_id="p1")], [R.ok],
                          deltas={"pool": (-100, 0, 0, 0), "ent": (0, 0, -100, 0)},
                          statuses={"p1": (S.voided, 0), "n1": (S.voided, 0)}),
    "pending_never_expires_without_timeout": Row([T("n1", post_pending_id="p0")], [R.ok], advance=10**8,
                                                 deltas={"pool": (-50, 50, 0, 0), "ent": (0, 0, -50, 50)}),
    "pending_created_and_posted_in_one_batch": Row(
        [T("n1", "pool", "ent", 10, pending=True, timeout_seconds=1), T("n2", amount=4, post_pending_id="n1")],
        [R.ok, R.ok], deltas={"pool": (0, 4, 0, 0), "ent": (0, 0, 0, 4)}, statuses={"n1": (S.posted_pending, 4)}),
    # linked chains
    "linked_chain_ok_sees_earlier_members": Row(  # ent holds 30 before: n2 needs n1's 10
        [T("n1", "pool", "ent", 10, linked=True), T("n2", "ent", "pool", 40)], [R.ok, R.ok],
        deltas={"pool": (0, 10, 0, 40), "ent": (0, 40, 0, 10)}),
    "linked_event_failed": Row(
        [T("n1", "pool", "ent", 10, linked=True), T("n2", "ent", "pool", 41, linked=True), T("n3", "pool", "ent", 1),
         T("n4", "pool", "ent", 1)],
        [R.linked_event_failed, R.exceeds_credits, R.linked_event_failed, R.ok],
        deltas={"pool": (0, 1, 0, 0), "ent": (0, 0, 0, 1)}),
    "linked_event_failed_rolls_back_second_phase": Row(
        [T("n1", void_pending_id="p1", linked=True), T("n2", "pool", "ent", -1)],
        [R.linked_event_failed, R.amount_must_not_be_negative], statuses={"p1": (S.pending, 0)}),
    "linked_event_chain_open": Row([T("n1", "pool", "ent", 1, linked=True), T("n2", "pool", "ent", 1, linked=True)],
                                   [R.linked_event_failed, R.linked_event_chain_open]),
    "linked_event_chain_open_after_a_failure": Row(  # TigerBeetle checks the open end before the break
        [T("n1", "pool", "ent", POOL_AVAILABLE + 1, linked=True), T("n2", "pool", "ent", 1, linked=True)],
        [R.exceeds_credits, R.linked_event_chain_open]),
    "linked_event_chain_open_after_a_failure_and_more": Row(
        [T("n1", "pool", "ent", 1, linked=True), T("n2", "nobody", "ent", 1, linked=True),
         T("n3", "pool", "ent", 1, linked=True), T("n4", "pool", "ent", 1, linked=True)],
        [R.linked_event_failed, R.debit_account_not_found, R.linked_event_failed, R.linked_event_chain_open]),
    "linked_chain_retried_is_all_exists": Row(
        [T("n1", "pool", "ent", 10, linked=True), T("n2", "ent", "pool", 10)], [R.exists, R.exists],
        setup=[[T("n1", "pool", "ent", 10, linked=True), T("n2", "ent", "pool", 10)]]),
    # an id whose first attempt failed stays failed, even when the same request would now succeed
    "failed_id_stays_failed": Row(
        [T("n1", "pool", "ent", POOL_AVAILABLE + 1)], [R.exceeds_credits],
        setup=[[T("n1", "pool", "ent", POOL_AVAILABLE + 1)], [T("more", "mint", "pool", 10)]]),
    "failed_id_stays_failed_with_other_body": Row(
        [T("n1", "pool", "ent", 1)], [R.exceeds_credits], setup=[[T("n1", "pool", "ent", POOL_AVAILABLE + 1)]]),
    "failed_id_stays_failed_in_same_batch": Row(
        [T("n1", "nobody", "ent", 1), T("n1", "pool", "ent", 1)], [R.debit_account_not_found] * 2),
    "failed_chain_member_stays_failed": Row(
        [T("n1", "pool", "ent", 1, linked=True), T("n2", "pool", "ent", 1)], [R.linked_event_failed, R.exceeds_credits],
        setup=[[T("n1", "pool", "ent", 1, linked=True), T("n2", "pool", "ent", POOL_AVAILABLE)]]),
    "duplicate_in_batch_is_exists": Row([T("n1", "pool", "ent", 1), T("n1", "pool", "ent", 1)], [R.ok, R.exists],
                                        deltas={"pool": (0, 1, 0, 0), "ent": (0, 0, 0, 1)}),
}


def test_every_outcome_has_a_row():
    covered = {r for row in ROWS.values() for r in row.expected}
    assert covered == set(R), set(R) - covered


@pytest.mark.parametrize("name", list(ROWS))
def test_rule(name: str):
    row = ROWS[name]
    led = base_ledger()
    for batch in row.setup:
        led.apply(apply_batch(led, batch, T0))
    before = balances(led)
    journal_before = len(led.journal)
    transfers_before = dict(led.transfers)

    out = apply_batch(led, row.batch, T0 + timedelta(seconds=row.advance))
    assert [o.result for o in out.results] == row.expected
    assert [o.id for o in out.results] == [r.id for r in row.batch]
    led.apply(out)

    after = balances(led)
    for acct, (b, a) in {k: (before[k], after[k]) for k in after}.items():
        change = tuple(x - y for x, y in zip(a, b))
        assert change == row.deltas.get(acct, (0, 0, 0, 0)), acct
    for tid, (status, posted_amount) in row.statuses.items():
        t = led.transfers[tid]
        assert (t.status, t.posted_amount) == (status, posted_amount), tid
    accepted = sum(1 for o in out.results if o.result is R.ok)
    assert len(led.journal) - journal_before == accepted  # one entry per accepted transfer
    assert verify(led.journal).ok
    # nothing of a failed request is stored but its FailedTransfer; existing records are untouched on failure
    for i, (o, req) in enumerate(zip(out.results, row.batch)):
        stored = led.transfers.get(req.id)
        if any(r.id == req.id for r in row.batch[:i]):
            continue  # a duplicate within the batch refers to the earlier one
        if o.result in (R.id_must_not_be_empty,) or o.result.name.startswith("exists"):
            assert stored == transfers_before.get(req.id)
        elif o.result not in (R.ok, R.linked_event_failed, R.linked_event_chain_open):
            assert isinstance(stored, FailedTransfer) and stored.result is o.result
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in led.accounts.values():
        sums[a.asset][0] += a.credits_posted - a.debits_posted
        sums[a.asset][1] += a.credits_pending - a.debits_pending
    assert all(v == [0, 0] for v in sums.values())


def test_expire_pending_releases_only_due_transfers():
    led = base_ledger()
    before = balances(led)
    due = led.due_pending(T0 + timedelta(seconds=59))
    assert due == []
    now = T0 + timedelta(seconds=60)
    due = led.due_pending(now)
    assert [t.id for t in due] == ["p1"]
    out = expire_pending(led, list(led.transfers.values()), now)  # everything offered; only p1 is due
    assert [t.id for t in out.expired] == ["p1"]
    assert [e.kind for e in out.journal] == ["pending_expired"]
    led.apply(out)
    after = balances(led)
    assert after["pool"] == (before["pool"][0] - 100, *before["pool"][1:])
    assert after["ent"][2] == before["ent"][2] - 100
    p1 = led.transfers["p1"]
    assert (p1.status, p1.posted_amount, p1.resolved_at) == (S.expired, 0, now)
    # an expired pending transfer can be neither posted nor voided, and expiring again does nothing
    res = apply_batch(led, [T("n1", post_pending_id="p1"), T("n2", void_pending_id="p1")], now)
    assert [o.result for o in res.results] == [R.pending_transfer_expired] * 2
    again = expire_pending(led, [led.transfers["p1"]], now + timedelta(days=1))
    assert again.expired == [] and again.journal == [] and again.accounts == []
    assert verify(led.journal).ok


def test_floats_are_refused():
    led = base_ledger()
    with pytest.raises(TypeError):
        apply_batch(led, [T("n1", "pool", "ent", 1.0)], T0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        apply_batch(led, [T("n1", "pool", "ent", True)], T0)  # type: ignore[arg-type]


def test_naive_time_is_refused():
    with pytest.raises(ValueError):
        apply_batch(base_ledger(), [], datetime(2024, 1, 1))


def test_outcome_is_not_applied_by_the_engine():
    led = base_ledger()
    before = balances(led)
    apply_batch(led, [T("n1", "pool", "ent", 5), T("n2", void_pending_id="p1")], T0)
    assert balances(led) == before and "n1" not in led.transfers and led.transfers["p1"].status is S.pending
