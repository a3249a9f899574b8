"""Review of the pool's domain rules: the retired share to the last unit, which lots an allocation draws from, and
how competing requests are ordered (strategic industries as the assessment service writes industry codes)."""
from __future__ import annotations

import random
from datetime import date, timedelta

from hypothesis import assume, given, settings, strategies as st

from shared.amounts import format_amount
from services.quota.domain.allocation import Outcome, run_allocation_round
from services.quota.domain.assets import ASSETS, ApprovalKind
from services.quota.domain.ledger_moves import intake_moves
from services.quota.domain.lots import accept_release
from services.quota.domain.policy import ConsumptionOrder, PoolPolicy, PriorityKey, PriorityPolicy
from services.quota.domain.projects import ProjectFacts
from services.quota.domain.provenance import allocate_request, consumption_order
from services.quota.domain.reclamation import accept_reclamation, register_reclamation
from services.quota.domain.releases import parse_release
from services.quota.domain.requests import (
    RequestState, begin_reserving, on_approval, on_ledger_reserved, open_request,
)

from tests.unit.quota.conftest import COUNTY, T0, make_credit_code

DEPT = {"COD": "ecology", "SO2": "ecology", "ENERGY": "development_reform"}


def _release(rid: str, asset: str, units: int, policy: PoolPolicy, serial: int = 1, on: str = "2024-02-15",
             township: str = f"{COUNTY}100"):
    payload = {"release_id": rid, "department": DEPT[asset], "enterprise_credit_code": make_credit_code(serial),
               "township_code": township, "county_code": COUNTY, "asset": asset,
               "amount": format_amount(units, ASSETS[asset].scale), "reason": "upgrade_savings", "basis": "free",
               "document_ref": "doc", "released_on": on}
    return accept_release(parse_release(payload, policy), policy)[0]


@settings(max_examples=300, deadline=None)
@given(asset=st.sampled_from(sorted(DEPT)), units=st.integers(1, 10**15), bp=st.integers(0, 10_000))
def test_released_is_retired_plus_pooled_to_the_last_unit_and_the_ledger_is_asked_exactly_that(asset, units, bp):
    policy = PoolPolicy(COUNTY, retire_share_bp={asset: bp})
    lot = _release("R1", asset, units, policy)
    assert lot.amount == units and lot.retired + lot.remaining == units and lot.allocated == 0
    # never less than the policy's share, and at most one smallest unit more
    assert lot.retired * 10_000 >= units * bp > (lot.retired - 1) * 10_000
    moves = intake_moves(lot)
    assert moves[0].amount == units and sum(m.amount for m in moves[1:]) == lot.retired
    assert len(moves) == (2 if lot.retired else 1)
    pool = f"county:{COUNTY}/pool/{asset}"
    assert sum(m.amount for m in moves if m.credit_account == pool) - \
        sum(m.amount for m in moves if m.debit_account == pool) == lot.remaining


def test_reclaimed_land_is_retired_by_the_lands_share_too():
    policy = PoolPolicy(COUNTY, retire_share_bp={"LAND": 777})
    project = register_reclamation("GX-1", COUNTY, f"{COUNTY}150", "1.2345", date(2023, 1, 1))
    lot = accept_reclamation(project, date(2024, 1, 20), policy).lot
    assert (lot.amount, lot.retired, lot.remaining) == (12345, 960, 11385)  # ceil(959.2065)


def _allocated(rid: str, lines: dict[str, str], policy: PoolPolicy, project: str = "P-A"):
    projects = {project: ProjectFacts(project, COUNTY, True, "A")}
    r = open_request(rid, project, COUNTY, [{"asset": a, "amount": n} for a, n in lines.items()], T0, projects, policy)
    r = begin_reserving(r, T0, policy).request
    for line in r.lines:
        r = on_ledger_reserved(r, f"quota/reserve/{rid}/{line.asset}", T0).request
    for kind in r.needed_approvals:
        r = on_approval(r, ApprovalKind(kind), T0).request
    assert r.state is RequestState.ALLOCATED
    return r


@settings(max_examples=100, deadline=None)
@given(spec=st.lists(st.tuples(st.sampled_from(("COD", "ENERGY")), st.integers(1, 50_000), st.integers(1, 28),
                               st.integers(0, 2)), min_size=1, max_size=12),
       share=st.floats(0.01, 1.0), seed=st.integers(0, 2**32), township_first=st.booleans())
def test_an_allocation_draws_oldest_lots_first_whatever_their_order_and_traces_every_unit(spec, share, seed,
                                                                                         township_first):
    policy = PoolPolicy(COUNTY, price_fen_per_unit={"COD": 1_234_567, "ENERGY": 333},
                        consumption_order=ConsumptionOrder.TOWNSHIP_ORDER if township_first else ConsumptionOrder.FIFO,
                        township_order=(f"{COUNTY}102",))
    lots = [_release(f"R{i}", asset, units, policy, serial=i + 1, on=f"2024-01-{day:02d}",
                     township=f"{COUNTY}10{t}") for i, (asset, units, day, t) in enumerate(spec)]
    pooled = {a: sum(lot.remaining for lot in lots if lot.asset == a) for a in ("COD", "ENERGY")}
    lines = {a: format_amount(max(1, int(n * share)), ASSETS[a].scale) for a, n in pooled.items() if n}
    assume(lines)  # tiny lots may be retired whole
    req = _allocated("Q1", lines, policy)
    prov = allocate_request(req, lots, policy)
    shuffled = list(lots)
    random.Random(seed).shuffle(shuffled)
    assert allocate_request(req, shuffled, policy) == prov  # deterministic: input order does not matter

    before = {lot.lot_id: lot for lot in lots}
    after = {lot.lot_id: lot for lot in prov.lots}
    for asset, amount in req.line_amounts:
        used = [c for c in prov.consumptions if c.asset == asset]
        assert sum(c.amount for c in used) == amount and all(c.amount > 0 for c in used)
        assert sum(c.amount_due_fen for c in used) == prov.due_fen_by_asset[asset]
        # the lots drawn are a prefix of the policy's order: every earlier lot was emptied first
        order = [lot.lot_id for lot in consumption_order((lot for lot in lots if lot.asset == asset and lot.remaining),
                                                         policy)]
        assert [c.lot_id for c in used] == order[:len(used)]
        assert all(after[c.lot_id].remaining == 0 for c in used[:-1])
        for c in used:  # every allocated unit traces back to the lot it left, and who freed it where
            lot = before[c.lot_id]
            assert lot.remaining - after[c.lot_id].remaining == c.amount
            assert (c.source_ref, c.township_code) == (lot.source_ref, lot.township_code)


def test_a_township_listed_twice_keeps_its_first_place_in_the_consumption_order():
    """The policy's township list names who is drawn first; a township repeated further down the list (an
    operator's slip) must not lose its place to the one listed after it."""
    first, second, unlisted = f"{COUNTY}101", f"{COUNTY}102", f"{COUNTY}109"
    for listed in ((first, second, first), (first, first, second)):
        policy = PoolPolicy(COUNTY, consumption_order=ConsumptionOrder.TOWNSHIP_ORDER, township_order=listed)
        lots = [_release("R0", "COD", 10_000, policy, serial=3, township=unlisted, on="2020-01-01"),
                _release("R1", "COD", 10_000, policy, serial=1, township=first),
                _release("R2", "COD", 10_000, policy, serial=2, township=second)]
        assert [lot.township_code for lot in consumption_order(lots, policy)] == [first, second, unlisted], listed


# -- competing requests --------------------------------------------------------------------------------------------
def _waiting(rid: str, facts: ProjectFacts, amount: str, minutes: int = 0):
    policy = PoolPolicy(COUNTY)
    return open_request(rid, facts.project_id, COUNTY, [{"asset": "COD", "amount": amount}],
                        T0 + timedelta(minutes=minutes), {facts.project_id: facts}, policy)


def test_a_strategic_industry_covers_the_classes_under_it_as_the_assessment_service_writes_them():
    """Industry codes (GB/T 4754) are prefixes: the assessment service's own policies say 'C26' covers 'C2614', and
    projects carry codes such as 'C3311'. A county naming C39 (electronics) strategic must see its C3911 project
    served first, not ranked among the others."""
    strategic = ProjectFacts("P-S", COUNTY, True, "B", 10_000_000, "C3911")
    other = ProjectFacts("P-O", COUNTY, True, "B", 10_000_000, "C2614")
    requests = [_waiting("Q-other", other, "1", 0), _waiting("Q-strategic", strategic, "1", 5)]
    for listed in ("C39", "c39", "39", "C3911"):
        policy = PriorityPolicy(strategic_industries=frozenset({listed}))
        result = run_allocation_round({"COD": 10_000}, requests, policy)
        assert [(d.request_id, d.outcome) for d in result.decisions] == [
            ("Q-strategic", Outcome.GRANTED), ("Q-other", Outcome.INSUFFICIENT)], listed
        assert dict(result.decisions[0].ordered_by)["strategic_industry"] == "yes"
    policy = PriorityPolicy(strategic_industries=frozenset({"C391"}))  # a narrower class does not cover C2614
    assert run_allocation_round({"COD": 10_000}, requests[:1], policy).decisions[0].ordered_by[1] == (
        "strategic_industry", "no")


def test_a_request_bigger_than_the_pool_takes_nothing_and_blocks_no_one_and_ties_fall_to_the_request_id():
    a = ProjectFacts("P-A", COUNTY, True, "A", None, None)
    unknown_class = ProjectFacts("P-X", COUNTY, True, None, 99_000_000, "C39")
    requests = [_waiting("Q-huge", a, "100", 0), _waiting("Q-b", a, "0.5", 1), _waiting("Q-a", a, "0.5", 1),
                _waiting("Q-x", unknown_class, "0.0001", 0)]
    policy = PriorityPolicy(keys=(PriorityKey.PROJECT_CLASS, PriorityKey.TAX_PER_MU, PriorityKey.ARRIVAL))
    result = run_allocation_round({"COD": 10_000}, requests, policy)
    assert [(d.request_id, d.outcome.value, [(s.requested, s.available) for s in d.shortfalls])
            for d in result.decisions] == [
        ("Q-huge", "insufficient", [(1_000_000, 10_000)]),  # nothing is kept back for it: no partial fill
        ("Q-a", "granted", []), ("Q-b", "granted", []),  # equal facts, equal arrival: the request id decides
        ("Q-x", "insufficient", [(1, 0)])]  # an unknown class comes last, whatever its tax
    assert result.available_after == {"COD": 0}
