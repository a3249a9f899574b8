from datetime import date

import pytest

from services.quota.domain.assets import ApprovalKind
from services.quota.domain.lots import accept_release
from services.quota.domain.policy import ConsumptionOrder, PoolPolicy
from services.quota.domain.provenance import InsufficientLots, allocate_request, amount_due_fen
from services.quota.domain.releases import parse_release
from services.quota.domain.requests import begin_reserving, on_approval, on_ledger_reserved, open_request


@pytest.fixture
def lots(release_payload, credit_code, policy):
    def lot(rid, serial, township, day, amount):
        payload = release_payload(release_id=rid, enterprise_credit_code=credit_code(serial), township_code=township,
                                  released_on=day, amount=amount)
        return accept_release(parse_release(payload, policy), policy)[0]

    return [
        lot("L2", 2, "320612102", "2024-02-01", "1"),  # 8000 units reusable
        lot("L1", 1, "320612101", "2024-01-01", "1"),  # 8000 units reusable, the oldest
        lot("L3", 3, "320612103", "2024-02-01", "1"),  # same day as L2: id breaks the tie
    ]


def allocated(county, t0, projects, policy, amount):
    r = open_request("R1", "P-A", county, [{"asset": "COD", "amount": amount}], t0, projects, policy)
    r = begin_reserving(r, t0, policy).request
    r = on_ledger_reserved(r, "quota/reserve/R1/COD", t0).request
    return on_approval(r, ApprovalKind.ENVIRONMENTAL_IMPACT, t0).request


def test_fifo_consumption_traces_every_unit_and_prices_it_once(lots, county, t0, projects, policy):
    prov = allocate_request(allocated(county, t0, projects, policy, "1.5"), lots, policy)
    got = [(c.lot_id, c.source_ref[-8:], c.township_code, c.amount, c.amount_due_fen) for c in prov.consumptions]
    # due = round_half_up(15000 * 1_234_567 / 10^4) = round_half_up(1_851_850.5) = 1_851_851 fen, split 8000:7000:
    # floor 987_653.87 -> 987_653 and 864_197.13 -> 864_197, remainder 1 fen to the first lot consumed.
    assert got == [
        ("release:L1", lots[1].source_ref[-8:], "320612101", 8000, 987_654),
        ("release:L2", lots[0].source_ref[-8:], "320612102", 7000, 864_197),
    ]
    assert prov.due_fen_by_asset == {"COD": 1_851_851} and prov.total_due_fen == 1_851_851
    assert [(lot.lot_id, lot.remaining) for lot in prov.lots] == [("release:L1", 0), ("release:L2", 1000)]


def test_amount_due_rounds_half_up_once():
    assert amount_due_fen("COD", 15000, 1_234_567) == 1_851_851
    assert amount_due_fen("ENERGY", 1, 500) == 1  # 0.5 fen -> 1
    assert amount_due_fen("ENERGY", 1, 499) == 0
    assert amount_due_fen("LAND", 10000, 0) == 0  # unpriced asset: free


def test_township_order_takes_listed_townships_first(lots, county, t0, projects):
    policy = PoolPolicy(county_code=county, consumption_order=ConsumptionOrder.TOWNSHIP_ORDER,
                        township_order=("320612103",))
    prov = allocate_request(allocated(county, t0, projects, policy, "1.5"), lots, policy)
    assert [(c.lot_id, c.amount) for c in prov.consumptions] == [("release:L3", 8000), ("release:L1", 7000)]
    assert prov.total_due_fen == 0  # this policy names no price


def test_lots_never_go_negative(lots, county, t0, projects, policy):
    with pytest.raises(InsufficientLots):
        allocate_request(allocated(county, t0, projects, policy, "2.4001"), lots, policy)


def test_only_allocated_requests_consume(lots, county, t0, projects, policy):
    r = open_request("R1", "P-A", county, [{"asset": "COD", "amount": "1"}], t0, projects, policy)
    with pytest.raises(ValueError):
        allocate_request(r, lots, policy)


def test_lot_dates_are_what_fifo_orders(lots):
    assert sorted(lot.dated for lot in lots) == [date(2024, 1, 1), date(2024, 2, 1), date(2024, 2, 1)]
