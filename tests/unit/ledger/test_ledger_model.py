"""The engine against a plain reference model (TigerBeetle's auditor idea): Hypothesis drives accounts,
batches with pending/post/void and linked chains, retries, clock advances and expiry; every result,
balance and transfer state must match the model, and the ledger invariants must hold after every step."""
from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from services.ledger.domain import (
    AccountFlags,
    FailedTransfer,
    MemoryLedger,
    NewAccount,
    TransferRequest,
    apply_batch,
    balances_as_of,
    create_accounts,
    expire_pending,
    verify,
)

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
ACCOUNT_IDS = ["A", "B", "C", "D", "E"]
TRANSFER_POOL = ["T1", "T2", "T3"]
ADDRESSES = ["external:mint", "county:320612/pool", "enterprise:91320612MA1W2B3C4D", "project:p1", "not an address"]
FLAG_CHOICES = [
    None,
    AccountFlags(),
    AccountFlags(debits_must_not_exceed_credits=True),
    AccountFlags(credits_must_not_exceed_debits=True),
    AccountFlags(True, True),
    AccountFlags(debits_must_not_exceed_credits=True, closed=True),
]
LIMIT = 2**63 - 1


# ---------------------------------------------------------------------------------------------------------
# The reference model: dicts of plain values, chains by snapshot-and-restore, written without the engine.
# ---------------------------------------------------------------------------------------------------------
class Model:
    def __init__(self) -> None:
        self.accounts: dict[str, dict] = {}
        self.transfers: dict[str, dict] = {}  # id -> {"failed": result} or the effective fields

    def create_account(self, id, asset, address, flags) -> str:
        kind = address.split(":")[0] if ":" in address and " " not in address else None
        if flags is None:
            flags = AccountFlags() if kind == "external" else AccountFlags(debits_must_not_exceed_credits=True)
        if id in self.accounts:
            a = self.accounts[id]
            if a["flags"] != flags:
                return "exists_with_different_flags"
            if a["asset"] != asset:
                return "exists_with_different_asset"
            if a["address"] != address:
                return "exists_with_different_address"
            return "exists"
        if asset not in ("LAND", "CNY"):
            return "asset_unknown"
        if kind is None:
            return "address_invalid"
        if flags.debits_must_not_exceed_credits and flags.credits_must_not_exceed_debits:
            return "flags_are_mutually_exclusive"
        self.accounts[id] = dict(asset=asset, address=address, flags=flags, dp=0, dpo=0, cp=0, cpo=0)
        return "ok"

    def batch(self, reqs: list[TransferRequest], now: datetime) -> list[str]:
        results: list[str] = []
        i = 0
        while i < len(reqs):
            j = i
            while j < len(reqs) and reqs[j].linked:
                j += 1
            group = reqs[i : j + 1]
            i = j + 1
            if len(group) == 1 and not group[0].linked:
                r = self.one(group[0], now)
                self.remember_failure(group[0], r)
                results.append(r)
                continue
            saved = copy.deepcopy((self.accounts, self.transfers))
            got = []
            for k, req in enumerate(group):
                if req.linked and k == len(group) - 1:  # the batch ended inside the chain
                    got.append("linked_event_chain_open")
                else:
                    got.append(self.one(req, now))
                if got[-1] not in ("ok", "exists"):
                    break
            if got[-1] in ("ok", "exists"):
                results += got
                continue
            self.accounts, self.transfers = saved
            failing = len(got) - 1
            self.remember_failure(group[failing], got[-1])
            rest = ["linked_event_failed"] * (len(group) - failing - 1)
            if rest and group[-1].linked:  # the batch ended inside the chain: its end is named open all the same
                rest[-1] = "linked_event_chain_open"
            results += ["linked_event_failed"] * failing + [got[-1]] + rest
        return results

    def remember_failure(self, req, result):
        if result.startswith("exists") or result in ("ok", "id_must_not_be_empty", "linked_event_chain_open"):
            return
        self.transfers.setdefault(req.id, {"failed": result})

    def one(self, r: TransferRequest, now: datetime) -> str:
        if r.id == "":
            return "id_must_not_be_empty"
        if r.id in self.transfers:
            t = self.transfers[r.id]
            return t["failed"] if "failed" in t else self.compare(r, t)
        if [r.pending, r.post_pending_id != "", r.void_pending_id != ""].count(True) > 1:
            return "flags_are_mutually_exclusive"
        if r.timeout_seconds < 0:
            return "timeout_must_not_be_negative"
        if r.amount < 0:
            return "amount_must_not_be_negative"
        if r.post_pending_id or r.void_pending_id:
            if r.timeout_seconds > 0:
                return "timeout_reserved_for_pending_transfer"
            return self.second_phase(r, now)
        if r.debit_account_id == r.credit_account_id and r.debit_account_id != "":
            return "accounts_must_be_different"
        if r.timeout_seconds > 0 and not r.pending:
            return "timeout_reserved_for_pending_transfer"
        if r.amount == 0:
            return "amount_must_not_be_zero"
        if r.debit_account_id not in self.accounts:
            return "debit_account_not_found"
        if r.credit_account_id not in self.accounts:
            return "credit_account_not_found"
        dr, cr = self.accounts[r.debit_account_id], self.accounts[r.credit_account_id]
        if dr["asset"] != cr["asset"]:
            return "accounts_must_have_the_same_asset"
        if r.asset not in ("", dr["asset"]):
            return "asset_differs_from_accounts"
        if dr["flags"].closed:
            return "debit_account_closed"
        if cr["flags"].closed:
            return "credit_account_closed"
        if dr["dp"] + dr["dpo"] + r.amount > LIMIT:
            return "overflows_debits"
        if cr["cp"] + cr["cpo"] + r.amount > LIMIT:
            return "overflows_credits"
        if dr["flags"].debits_must_not_exceed_credits and dr["dp"] + dr["dpo"] + r.amount > dr["cpo"]:
            return "exceeds_credits"
        if cr["flags"].credits_must_not_exceed_debits and cr["cp"] + cr["cpo"] + r.amount > cr["dpo"]:
            return "exceeds_debits"
        if r.pending:
            dr["dp"] += r.amount
            cr["cp"] += r.amount
        else:
            dr["dpo"] += r.amount
            cr["cpo"] += r.amount
        self.transfers[r.id] = dict(
            flags=(r.pending, r.linked, False, False), pid="", dr=r.debit_account_id, cr=r.credit_account_id,
            asset=dr["asset"], amount=r.amount, timeout=r.timeout_seconds, code=r.code, refs=tuple(r.refs), meta=dict(r.metadata),
            status="pending" if r.pending else "posted", posted=0,
            expires=now + timedelta(seconds=r.timeout_seconds) if r.pending and r.timeout_seconds else None,
        )
        return "ok"

    def second_phase(self, r: TransferRequest, now: datetime) -> str:
        pid = r.post_pending_id or r.void_pending_id
        p = self.transfers.get(pid)
        if p is None or "failed" in p:
            return "pending_transfer_not_found"
        if not p["flags"][0]:
            return "pending_transfer_not_pending"
        if r.debit_account_id not in ("", p["dr"]) or r.credit_account_id not in ("", p["cr"]):
            return "pending_transfer_has_different_accounts"
        if r.asset not in ("", p["asset"]):
            return "asset_differs_from_accounts"
        if r.amount > p["amount"]:
            return "exceeds_pending_transfer_amount"
        posting = r.post_pending_id != ""
        if not posting and r.amount not in (0, p["amount"]):
            return "pending_transfer_has_different_amount"
        if p["status"] == "posted_pending":
            return "pending_transfer_already_posted"
        if p["status"] == "voided":
            return "pending_transfer_already_voided"
        if p["status"] == "expired" or (p["expires"] is not None and p["expires"] <= now):
            return "pending_transfer_expired"
        amount = (r.amount or p["amount"]) if posting else p["amount"]
        dr, cr = self.accounts[p["dr"]], self.accounts[p["cr"]]
        if posting and dr["flags"].closed:
            return "debit_account_closed"
        if posting and cr["flags"].closed:
            return "credit_account_closed"
        dr["dp"] -= p["amount"]
        cr["cp"] -= p["amount"]
        if posting:
            dr["dpo"] += amount
            cr["cpo"] += amount
        p["status"] = "posted_pending" if posting else "voided"
        p["posted"] = amount if posting else 0
        self.transfers[r.id] = dict(
            flags=(False, r.linked, posting, not posting), pid=pid, dr=p["dr"], cr=p["cr"], asset=p["asset"],
            amount=amount,
            timeout=0, code=r.code or p["code"], refs=tuple(r.refs), meta=dict(r.metadata),
            status="posted" if posting else "voided", posted=0, expires=None,
        )
        return "ok"

    def compare(self, r: TransferRequest, t: dict) -> str:
        second = bool(r.post_pending_id or r.void_pending_id)
        if (r.pending, r.linked, bool(r.post_pending_id), bool(r.void_pending_id)) != t["flags"]:
            return "exists_with_different_flags"
        if (r.post_pending_id or r.void_pending_id) != t["pid"]:
            return "exists_with_different_pending_id"
        if not (second and r.debit_account_id == "") and r.debit_account_id != t["dr"]:
            return "exists_with_different_debit_account_id"
        if not (second and r.credit_account_id == "") and r.credit_account_id != t["cr"]:
            return "exists_with_different_credit_account_id"
        if r.asset not in ("", t["asset"]):
            return "exists_with_different_asset"
        if not (second and r.amount == 0) and r.amount != t["amount"]:
            return "exists_with_different_amount"
        if r.post_pending_id and r.amount == 0 and t["amount"] != self.transfers[t["pid"]]["amount"]:
            return "exists_with_different_amount"  # 0 is the pending's full amount: not what a partial post posted
        if tuple(r.refs) != t["refs"]:
            return "exists_with_different_refs"
        if dict(r.metadata) != t["meta"]:
            return "exists_with_different_metadata"
        if r.timeout_seconds != t["timeout"]:
            return "exists_with_different_timeout"
        if not (second and r.code == "") and r.code != t["code"]:
            return "exists_with_different_code"
        return "exists"

    def expire(self, now: datetime) -> set[str]:
        gone = set()
        for tid, p in self.transfers.items():
            if p.get("status") == "pending" and p["expires"] is not None and p["expires"] <= now:
                self.accounts[p["dr"]]["dp"] -= p["amount"]
                self.accounts[p["cr"]]["cp"] -= p["amount"]
                p["status"] = "expired"
                gone.add(tid)
        return gone


# ---------------------------------------------------------------------------------------------------------
def often(p_percent: int):
    """True about p_percent% of the time (shrinks towards False)."""
    return st.integers(0, 99).map(lambda roll: roll >= 100 - p_percent)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = MemoryLedger()
        self.model = Model()
        self.now = T0
        self.sent: list[TransferRequest] = []
        self.counter = 0

    def _create(self, id, asset, address, flags):
        out = create_accounts(self.ledger, [NewAccount(id, asset, address, flags)], self.now)
        assert [o.result.value for o in out.results] == [self.model.create_account(id, asset, address, flags)]
        self.ledger.apply(out)

    @initialize()
    def some_accounts(self):
        self._create("A", "LAND", "external:mint", None)
        self._create("B", "LAND", "county:320612/pool", None)
        self._create("C", "LAND", "enterprise:91320612MA1W2B3C4D", None)
        self._create("D", "LAND", "township:320612101", AccountFlags(credits_must_not_exceed_debits=True))
        self._submit([TransferRequest("fund-B", "A", "B", 300), TransferRequest("fund-C", "A", "C", 100)])

    @rule(
        id=st.sampled_from(ACCOUNT_IDS), asset=st.sampled_from(["LAND", "LAND", "CNY", "GOLD"]),
        address=st.sampled_from(ADDRESSES), flags=st.sampled_from(FLAG_CHOICES),
    )
    def create_account(self, id, asset, address, flags):
        self._create(id, asset, address, flags)

    def _submit(self, batch: list[TransferRequest]):
        out = apply_batch(self.ledger, batch, self.now)
        expected = self.model.batch(batch, self.now)
        assert [o.result.value for o in out.results] == expected, (batch, expected)
        self.ledger.apply(out)
        self.sent += batch

    def _request(self, draw) -> TransferRequest:
        """Mostly meaningful requests (fresh ids, existing accounts, live pending ids), sometimes odd ones."""
        if draw(often(6)) or not self.sent:
            tid = draw(st.sampled_from(["", *TRANSFER_POOL]))  # reuse of a small pool: collisions
        else:
            self.counter += 1
            tid = f"N{self.counter}"
        kind = draw(st.sampled_from(["plain"] * 4 + ["pending"] * 3 + ["post"] * 2 + ["void", "odd"]))
        if draw(often(10)):
            amount = draw(st.sampled_from([0, -1, LIMIT, LIMIT - 1]))
        else:
            amount = draw(st.integers(1, 30) if kind in ("plain", "pending") else st.integers(0, 30))
        common = dict(
            id=tid, amount=amount, code=draw(st.sampled_from(["", "alloc"])), linked=draw(often(25)),
            refs=draw(st.sampled_from([(), ("ev-1",)])), metadata=draw(st.sampled_from([{}, {"lot": "L1"}])),
            asset=draw(st.sampled_from(["", "", "LAND", "LAND", "CNY"])),  # "" = not stated; CNY: mostly wrong
        )
        known = sorted(self.model.accounts) or ["A"]
        account = st.one_of(st.sampled_from(known), st.just("X")) if draw(often(5)) else st.sampled_from(known)
        if kind in ("plain", "pending"):
            debit = draw(account)
            others = [a for a in known if a != debit]
            credit = draw(st.sampled_from(others)) if others and not draw(often(5)) else draw(account)
            timeout = draw(st.sampled_from([0, 3, 5, 10, 30])) if kind == "pending" else 0
            if draw(often(4)):
                timeout = draw(st.sampled_from([-1, 2]))
            return TransferRequest(debit_account_id=debit, credit_account_id=credit, pending=kind == "pending", timeout_seconds=timeout, **common)
        live = sorted(t for t, m in self.model.transfers.items() if m.get("status") == "pending")
        other = sorted(self.model.transfers) + TRANSFER_POOL
        pid = draw(st.sampled_from(live)) if live and not draw(often(35)) else draw(st.sampled_from(other))
        if kind == "odd":  # flags that exclude each other
            return TransferRequest(pending=draw(st.booleans()), post_pending_id=pid, void_pending_id=pid, **common)
        named = draw(often(25))
        return TransferRequest(
            debit_account_id=draw(account) if named else "", credit_account_id=draw(account) if named else "",
            timeout_seconds=2 if draw(often(4)) else 0,
            post_pending_id=pid if kind == "post" else "", void_pending_id=pid if kind == "void" else "", **common,
        )

    @rule(data=st.data(), size=st.integers(1, 6))
    def submit(self, data, size):
        self._submit([self._request(data.draw) for _ in range(size)])

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def resubmit(self, data):
        batch = data.draw(st.lists(st.sampled_from(self.sent), min_size=1, max_size=4))
        self._submit(batch)

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), field=st.sampled_from(
        ["debit_account_id", "credit_account_id", "amount", "code", "pending", "timeout_seconds", "post_pending_id",
         "void_pending_id", "linked", "refs", "metadata", "asset"]))
    def resubmit_changed(self, data, field):
        """A sent id with one field changed: exists_with_different_<field> (or its stored failure)."""
        req = data.draw(st.sampled_from(self.sent))
        value = {
            "debit_account_id": "B", "credit_account_id": "C", "amount": 7, "code": "changed", "pending": True,
            "timeout_seconds": 5, "post_pending_id": "T1", "void_pending_id": "T2", "linked": False,
            "refs": ("ev-9",), "metadata": {"lot": "L9"}, "asset": "LAND" if req.asset == "CNY" else "CNY",
        }[field]
        self._submit([dataclasses.replace(req, **{field: value})])

    @rule(seconds=st.integers(0, 12))
    def advance_clock(self, seconds):
        self.now += timedelta(seconds=seconds)

    @rule()
    def expire(self):
        out = expire_pending(self.ledger, self.ledger.due_pending(self.now), self.now)
        assert {t.id for t in out.expired} == self.model.expire(self.now)
        self.ledger.apply(out)

    @invariant()
    def same_state_as_model(self):
        for aid, m in self.model.accounts.items():
            a = self.ledger.accounts[aid]
            assert (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) == (
                m["dp"], m["dpo"], m["cp"], m["cpo"]), aid
        assert set(self.ledger.accounts) == set(self.model.accounts)
        assert set(self.ledger.transfers) == set(self.model.transfers)
        for tid, m in self.model.transfers.items():
            t = self.ledger.transfers[tid]
            if "failed" in m:
                assert isinstance(t, FailedTransfer) and t.result.value == m["failed"]
            else:
                assert (t.status.value, t.posted_amount, t.amount, t.debit_account_id, t.asset) == (
                    m["status"], m["posted"], m["amount"], m["dr"], m["asset"]), tid

    @invariant()
    def balances_sum_to_zero_per_asset(self):
        sums = defaultdict(lambda: [0, 0])
        for a in self.ledger.accounts.values():
            sums[a.asset][0] += a.credits_posted - a.debits_posted
            sums[a.asset][1] += a.credits_pending - a.debits_pending
        assert all(v == [0, 0] for v in sums.values()), dict(sums)

    @invariant()
    def constrained_accounts_never_below_zero(self):
        for a in self.ledger.accounts.values():
            if a.flags.debits_must_not_exceed_credits:
                assert a.debits_pending + a.debits_posted <= a.credits_posted
            if a.flags.credits_must_not_exceed_debits:
                assert a.credits_pending + a.credits_posted <= a.debits_posted

    @invariant()
    def journal_verifies_and_rebuilds_balances(self):
        assert verify(self.ledger.journal).ok
        rebuilt = balances_as_of(self.ledger.journal)
        assert set(rebuilt) == set(self.ledger.accounts)
        for aid, b in rebuilt.items():
            a = self.ledger.accounts[aid]
            assert (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted) == (
                a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


LedgerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLedgerAgainstModel = LedgerMachine.TestCase
