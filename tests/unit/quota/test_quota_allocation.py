import itertools
from datetime import timedelta

import pytest

from services.quota.domain.allocation import Outcome, Shortfall, apply_decision, run_allocation_round
from services.quota.domain.policy import PriorityKey, PriorityPolicy
from services.quota.domain.projects import ProjectFacts
from services.quota.domain.requests import RequestState, begin_reserving, open_request

M = timedelta(minutes=1)


@pytest.fixture
def competing(county, t0, projects, policy):
    registry = dict(projects)
    registry["P-A2"] = ProjectFacts("P-A2", county, True, "A", 25_000_000, "C26")
    registry["P-A3"] = ProjectFacts("P-A3", county, True, "A", 25_000_000, "C26")

    def req(rid, pid, amount, arrival, extra=()):
        lines = [{"asset": "COD", "amount": amount}, *extra]
        return open_request(rid, pid, county, lines, t0 + arrival * M, registry, policy)

    return [
        req("R1", "P-A", "1.5", 3),  # class A, strategic industry C39, 200,000 元/亩
        req("R2", "P-B", "1.0", 0),  # class B, 300,000 元/亩, first to arrive
        req("R3", "P-A2", "2.0", 1),  # class A, 250,000 元/亩
        req("R4", "P-A3", "0.5", 2),  # same facts as R3, arrived later
    ]


def summary(result):
    return [(d.rank, d.request_id, d.outcome.value, d.reason) for d in result.decisions]


def test_competing_requests_follow_the_county_priority(competing):
    policy = PriorityPolicy(strategic_industries=frozenset({"C39"}))
    result = run_allocation_round({"COD": 30000}, competing, policy)
    assert summary(result) == [
        (1, "R1", "granted", "granted"),
        (2, "R3", "insufficient", "insufficient_quota"),
        (3, "R4", "granted", "granted"),
        (4, "R2", "granted", "granted"),
    ]
    assert result.decisions[1].shortfalls == (Shortfall("COD", 20000, 15000),)
    assert result.decisions[0].ordered_by == (
        ("project_class", "A"), ("strategic_industry", "yes"), ("tax_per_mu", "200000.00"),
        ("arrival", "2024-03-01T09:03:00+00:00"),
    )
    assert result.available_after == {"COD": 0}


def test_the_same_input_in_any_order_gives_the_same_decisions(competing):
    policy = PriorityPolicy(strategic_industries=frozenset({"C39"}))
    first = run_allocation_round({"COD": 30000}, competing, policy)
    for perm in itertools.permutations(competing):
        assert run_allocation_round({"COD": 30000}, list(perm), policy) == first


def test_another_county_orders_by_tax_then_arrival(competing):
    policy = PriorityPolicy(keys=(PriorityKey.TAX_PER_MU, PriorityKey.ARRIVAL))
    assert summary(run_allocation_round({"COD": 30000}, competing, policy)) == [
        (1, "R2", "granted", "granted"),
        (2, "R3", "granted", "granted"),
        (3, "R4", "insufficient", "insufficient_quota"),
        (4, "R1", "insufficient", "insufficient_quota"),
    ]


def test_the_request_id_breaks_a_full_tie(county, t0, projects, policy):
    reqs = [open_request(rid, "P-A", county, [{"asset": "COD", "amount": "1"}], t0, projects, policy)
            for rid in ("R-b", "R-a")]
    result = run_allocation_round({"COD": 10000}, reqs, PriorityPolicy())
    assert [(d.request_id, d.outcome) for d in result.decisions] == [("R-a", Outcome.GRANTED),
                                                                     ("R-b", Outcome.INSUFFICIENT)]


def test_all_or_nothing_per_request(county, t0, projects, policy):
    both = open_request("R1", "P-A", county, [{"asset": "COD", "amount": "1"}, {"asset": "ENERGY", "amount": "10"}],
                        t0, projects, policy)
    cod_only = open_request("R2", "P-B", county, [{"asset": "COD", "amount": "1"}], t0 + M, projects, policy)
    result = run_allocation_round({"COD": 10000, "ENERGY": 5000}, [both, cod_only], PriorityPolicy())
    assert [(d.request_id, d.outcome) for d in result.decisions] == [("R1", Outcome.INSUFFICIENT),
                                                                     ("R2", Outcome.GRANTED)]
    assert result.decisions[0].shortfalls == (Shortfall("ENERGY", 10000, 5000),)
    assert result.available_after == {"COD": 0, "ENERGY": 5000}


def test_decisions_drive_the_saga(competing, t0, policy):
    result = run_allocation_round({"COD": 30000}, competing, PriorityPolicy(strategic_industries=frozenset({"C39"})))
    by_id = {r.request_id: r for r in competing}
    states = {d.request_id: apply_decision(by_id[d.request_id], d, t0 + 10 * M, policy).request for d in
              result.decisions}
    assert states["R3"].state is RequestState.REJECTED and states["R3"].reason == "insufficient_quota"
    assert {states[r].state for r in ("R1", "R2", "R4")} == {RequestState.RESERVING}


def test_a_round_takes_only_waiting_requests(competing, t0, policy):
    moved = begin_reserving(competing[0], t0, policy).request
    with pytest.raises(ValueError):
        run_allocation_round({"COD": 1}, [moved], PriorityPolicy())
    with pytest.raises(ValueError):
        run_allocation_round({"COD": 1}, [competing[1], competing[1]], PriorityPolicy())
