"""Property test: random releases, reclamations, requests, rounds, ledger answers (late, duplicated),
approvals (early, duplicated), cancels and clock moves, checked after every step against a reference
model and a tiny in-test ledger that applies the moves the domain emits."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from shared.amounts import format_amount
from services.quota.domain.allocation import apply_decision, run_allocation_round
from services.quota.domain.assets import ASSETS
from services.quota.domain.identifiers import credit_code_check_char
from services.quota.domain.ledger_moves import LedgerTransfer, intake_moves, pool_account
from services.quota.domain.lots import Lot, accept_release
from services.quota.domain.policy import PoolPolicy, PriorityPolicy
from services.quota.domain.pool_view import available_by_asset, pool_figures
from services.quota.domain.projects import ProjectFacts
from services.quota.domain.provenance import Consumption, allocate_request
from services.quota.domain.reclamation import accept_reclamation, register_reclamation
from services.quota.domain.reconciliation import ledger_figures_from_balances, reconcile
from services.quota.domain.releases import ReleaseStatus, parse_release, releases_verified_by, verify_release
from services.quota.domain.requests import (
    OPEN_STATES, QuotaRequest, RequestTransition, cancel, expire_if_due, on_approval, on_ledger_expired,
    on_ledger_refused, on_ledger_reserved, open_request,
)

COUNTY = "320612"
T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
POLICY = PoolPolicy(
    county_code=COUNTY,
    retire_share_bp={"COD": 2000, "SO2": 3333, "LAND": 500},
    price_fen_per_unit={"COD": 1_234_567, "SO2": 3, "ENERGY": 77_777},
    reservation_timeout_seconds=6 * 3600,
    request_wait_seconds=8 * 3600,
    priority=PriorityPolicy(strategic_industries=frozenset({"C39"})),
)
DEPARTMENT = {"COD": "ecology", "SO2": "ecology", "ENERGY": "development_reform"}
USED = ("COD", "SO2", "ENERGY", "LAND")
PROJECTS = {
    f"P{i}": ProjectFacts(f"P{i}", COUNTY, True, "AB"[i % 2], 1_000_000 * (i % 3), "C39" if i == 1 else "C26")
    for i in range(4)
}


def credit_code(serial: int) -> str:
    body = f"91{COUNTY}MA{serial:07d}"
    return body + credit_code_check_char(body)


@dataclass
class Pending:
    transfer: LedgerTransfer
    expires_at: datetime
    state: str = "pending"


class LedgerModel:
    """Just enough of the ledger: balances = credits - debits, pending with timeout, idempotent ids."""

    def __init__(self) -> None:
        self.posted: dict[str, int] = defaultdict(int)
        self.pending: dict[str, Pending] = {}
        self.results: dict[str, str] = {}

    def pending_debits(self, account: str) -> int:
        return sum(p.transfer.amount for p in self.pending.values()
                   if p.state == "pending" and p.transfer.debit_account == account)

    def apply(self, t: LedgerTransfer, now: datetime) -> str:
        if t.transfer_id in self.results:
            return "exists"
        self.results[t.transfer_id] = result = self._apply(t, now)
        return result

    def _move(self, t: LedgerTransfer) -> None:
        self.posted[t.debit_account] -= t.amount
        self.posted[t.credit_account] += t.amount

    def _apply(self, t: LedgerTransfer, now: datetime) -> str:
        closing = t.post_pending_id or t.void_pending_id
        if closing:
            p = self.pending.get(closing)
            if p is None or p.state != "pending":
                return "pending_transfer_not_pending"
            p.state = "posted" if t.post_pending_id else "voided"
            if t.post_pending_id:
                self._move(p.transfer)
            return "ok"
        if not t.debit_account.startswith("external:"):
            if self.posted[t.debit_account] - self.pending_debits(t.debit_account) < t.amount:
                return "exceeds_credits"
        if t.pending:
            self.pending[t.transfer_id] = Pending(t, now + timedelta(seconds=t.timeout_seconds or 0))
        else:
            self._move(t)
        return "ok"

    def expire(self, now: datetime) -> list[str]:
        gone = [i for i, p in self.pending.items() if p.state == "pending" and p.expires_at <= now]
        for i in gone:
            self.pending[i].state = "expired"
        return gone


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.lots: dict[str, Lot] = {}
        self.requests: dict[str, QuotaRequest] = {}
        self.held_releases = []
        self.departed: set[str] = set()
        self.ledger = LedgerModel()
        self.inbox: list[tuple[str, str, str]] = []  # (answer, request id, transfer id), delivered in any order
        self.consumptions: list[Consumption] = []
        self.released_ref: Counter[str] = Counter()
        self.allocated_ref: Counter[str] = Counter()
        self.seq = 0

    def _next(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq}"

    def _ledger(self, moves, request_id: str | None = None) -> None:
        for m in moves:
            result = self.ledger.apply(m, self.now)
            if m.pending:
                assert result == "ok", f"the ledger refused a reservation our view allowed: {result}"
                self.inbox.append(("reserved", request_id, m.transfer_id))
            elif m.post_pending_id or not m.void_pending_id:
                assert result == "ok", f"{m.transfer_id}: {result}"

    def _take_in(self, lot: Lot) -> None:
        assert lot.lot_id not in self.lots
        self.lots[lot.lot_id] = lot
        self.released_ref[lot.asset] += lot.amount
        self._ledger(intake_moves(lot))

    def _apply(self, t: RequestTransition) -> None:
        self.requests[t.request.request_id] = t.request
        self._ledger(t.moves, t.request.request_id)
        if t.allocated_now:
            prov = allocate_request(t.request, self.lots.values(), POLICY)
            self.lots.update({lot.lot_id: lot for lot in prov.lots})
            self.consumptions.extend(prov.consumptions)
            for asset, amount in t.request.line_amounts:
                self.allocated_ref[asset] += amount

    def _pick(self, i: int, open_first: bool = False) -> QuotaRequest:
        ids = sorted(self.requests)
        if open_first:  # so approvals mostly meet requests that can still use them
            ids = [r for r in ids if self.requests[r].state in OPEN_STATES] or ids
        return self.requests[ids[i % len(ids)]]

    @initialize(units=st.lists(st.integers(50_000, 500_000), min_size=3, max_size=3))
    def seed_the_pool(self, units):
        # a stocked pool to start with, so most sagas get past the first round
        for asset, n in zip(("COD", "SO2", "ENERGY"), units):
            self.release(asset, n, 0, True)

    @rule(asset=st.sampled_from(("COD", "SO2", "ENERGY")), units=st.integers(1, 40_000),
          serial=st.integers(0, 3), exit_known=st.booleans())
    def release(self, asset, units, serial, exit_known):
        code = credit_code(serial)
        if exit_known:
            self.departed.add(code)
        payload = {
            "release_id": self._next("REL"), "department": DEPARTMENT[asset], "enterprise_credit_code": code,
            "township_code": f"{COUNTY}{100 + serial}", "county_code": COUNTY, "asset": asset,
            "amount": format_amount(units, ASSETS[asset].scale), "reason": "closure", "basis": "free",
            "document_ref": "doc", "released_on": date(2024, 1, 1 + self.seq % 28).isoformat(),
        }
        release = parse_release(payload, POLICY)
        decision = verify_release(release, self.departed, POLICY.verification)
        if decision.status is ReleaseStatus.ACCEPTED:
            self._take_in(accept_release(release, POLICY)[0])
        else:
            self.held_releases.append(release)

    @rule(serial=st.integers(0, 3))
    def enterprise_exits(self, serial):
        code = credit_code(serial)
        self.departed.add(code)
        for release in releases_verified_by(code, self.held_releases):
            self.held_releases.remove(release)
            self._take_in(accept_release(release, POLICY)[0])

    @rule(units=st.integers(1, 100_000), accept_twice=st.booleans())
    def reclamation(self, units, accept_twice):
        project = register_reclamation(self._next("GX"), COUNTY, f"{COUNTY}105", format_amount(units, 4),
                                       date(2023, 1, 1))
        first = accept_reclamation(project, date(2024, 1, 2), POLICY)
        self._take_in(first.lot)
        if accept_twice:
            assert accept_reclamation(first.project, date(2024, 1, 3), POLICY).lot is None

    @rule(project=st.sampled_from(sorted(PROJECTS)),
          lines=st.dictionaries(st.sampled_from(USED), st.integers(1, 12_000), min_size=1, max_size=2))
    def request(self, project, lines):
        raw = [{"asset": a, "amount": format_amount(n, ASSETS[a].scale)} for a, n in sorted(lines.items())]
        r = open_request(self._next("R"), project, COUNTY, raw, self.now, PROJECTS, POLICY)
        self.requests[r.request_id] = r

    @rule()
    def allocation_round(self):
        waiting = [r for r in self.requests.values() if r.state == "requested"]
        if not waiting:
            return
        available = available_by_asset(pool_figures(self.lots.values(), self.requests.values()))
        result = run_allocation_round(available, waiting, POLICY.priority)
        assert result == run_allocation_round(available, list(reversed(waiting)), POLICY.priority)
        for d in result.decisions:
            self._apply(apply_decision(self.requests[d.request_id], d, self.now, POLICY))

    @precondition(lambda self: self.inbox)
    @rule(i=st.integers(0, 1000), consume=st.integers(0, 3))
    def ledger_answers(self, i, consume):
        answer, request_id, transfer_id = self.inbox[i % len(self.inbox)]
        if consume:  # three times in four; otherwise the same answer is delivered again later
            self.inbox.remove((answer, request_id, transfer_id))
        handler = {"reserved": on_ledger_reserved, "expired": on_ledger_expired}[answer]
        t = handler(self.requests[request_id], transfer_id, self.now)
        self._apply(t)
        again = handler(t.request, transfer_id, self.now)
        assert not again.changed and again.request == t.request
        self._ledger(again.moves)

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 1000), j=st.integers(0, 2))
    def approval(self, i, j):
        r = self._pick(i, open_first=True)
        kind = sorted(r.needed_approvals)[j % len(r.needed_approvals)]
        t = on_approval(r, kind, self.now)
        self._apply(t)
        assert not on_approval(t.request, kind, self.now).changed

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 1000), really=st.integers(0, 3))
    def cancel_one(self, i, really):
        if really:  # cancel one time in four, so that sagas also get to run to the end
            return
        t = cancel(self._pick(i), self.now)
        self._apply(t)
        assert not cancel(t.request, self.now).changed

    @precondition(lambda self: self.requests)
    @rule(i=st.integers(0, 1000))
    def a_refusal_after_the_fact_changes_nothing(self, i):
        r = self._pick(i)
        if r.state != "reserving":
            t = on_ledger_refused(r, f"quota/reserve/{r.request_id}/{r.lines[0].asset}", "x", self.now)
            assert not t.changed and not t.moves

    @rule(seconds=st.integers(1, 3 * 3600), tick=st.booleans())
    def clock_moves(self, seconds, tick):
        # The ledger expires on its own; our periodic tick may or may not have run yet.
        self.now += timedelta(seconds=seconds)
        for transfer_id in self.ledger.expire(self.now):
            request_id = transfer_id.split("/")[2]
            self.inbox.append(("expired", request_id, transfer_id))
        if tick:
            for r in list(self.requests.values()):
                self._apply(expire_if_due(r, self.now))

    @invariant()
    def books_balance(self):
        figures = pool_figures(self.lots.values(), self.requests.values())
        for asset, f in figures.items():
            assert f.released == f.retired + f.allocated + f.reserved + f.available
            assert f.available >= 0
            assert f.released == self.released_ref[asset]
            assert f.allocated == self.allocated_ref[asset] == sum(
                c.amount for c in self.consumptions if c.asset == asset)
            # what our open requests hold is what the ledger holds pending on the pool account, except
            # for reservations the ledger has expired and our tick has not seen yet
            overdue = sum(r.held().get(asset, 0) for r in self.requests.values() if self.now >= r.deadline)
            held_by_ledger = self.ledger.pending_debits(pool_account(COUNTY, asset))
            assert f.reserved - overdue <= held_by_ledger <= f.reserved
            if not overdue:
                assert held_by_ledger == f.reserved
        for lot in self.lots.values():
            assert 0 <= lot.remaining <= lot.amount - lot.retired
        assert reconcile(figures, ledger_figures_from_balances(COUNTY, self.ledger.posted, PROJECTS)) == []

    @invariant()
    def ledger_sums_to_zero_per_asset(self):
        per_asset: Counter[str] = Counter()
        for account, balance in self.ledger.posted.items():
            per_asset[account.rsplit("/", 1)[1]] += balance
            if not account.startswith("external:"):
                assert balance - self.ledger.pending_debits(account) >= 0
        assert all(v == 0 for v in per_asset.values())

    @invariant()
    def every_allocation_is_traced_to_lots(self):
        traced: Counter[tuple[str, str]] = Counter()
        for c in self.consumptions:
            traced[(c.request_id, c.asset)] += c.amount
            assert c.lot_id in self.lots
        expected = Counter({(r.request_id, a): n for r in self.requests.values() if r.state == "allocated"
                            for a, n in r.line_amounts})
        assert traced == expected


PoolMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestPoolProperties = PoolMachine.TestCase
