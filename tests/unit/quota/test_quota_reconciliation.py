from services.quota.domain.pool_view import PoolFigures
from services.quota.domain.reconciliation import (
    Difference, LedgerFigures, ledger_figures_from_balances, reconcile,
)


def ours(**cod):
    base = dict(released=1000, retired=200, allocated=300, reserved=100, available=400)
    base.update(cod)
    return {"COD": PoolFigures("COD", **base)}


def test_consistent_books_reconcile_to_nothing():
    balances = {
        "external:rights-register/COD": -1000,
        "county:320612/pool/COD": 500,  # available + reserved: the pending 100 is not posted
        "county:320612/retired/COD": 200,
        "project:P1/COD": 250,
        "project:P2/COD": 50,
    }
    ledger = ledger_figures_from_balances("320612", balances, ["P1", "P2"])
    assert ledger["COD"] == LedgerFigures(pool=500, allocated=300, retired=200)
    assert reconcile(ours(), {"COD": ledger["COD"]}) == []


def test_differences_are_found_and_named():
    diffs = reconcile(ours(), {"COD": LedgerFigures(pool=490, allocated=310, retired=200),
                               "SO2": LedgerFigures(pool=5, allocated=0, retired=0)})
    assert diffs == [
        Difference("COD", "allocated", 300, 310),
        Difference("COD", "in_pool", 500, 490),
        Difference("SO2", "in_pool", 0, 5),
    ]
    assert [d.diff for d in diffs] == [-10, 10, -5]
