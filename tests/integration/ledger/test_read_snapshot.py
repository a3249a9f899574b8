"""Reads that report a journal position (as_of_seq, head_seq) read it and the figures in one snapshot, on
PostgreSQL, where a read committed session would give each statement its own: a transfer committed between
the two statements must not make a balance claim a position it does not reflect."""
from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from fastapi import Response

from services.ledger.api import routes
from services.ledger.api.schemas import BalancesQuery
from services.ledger.domain import NewAccount, TransferRequest as T
from services.ledger.storage.repository import LedgerRepository
from tests.integration.ledger.harness import SqlLedger

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
MINT, POOL = "external:mint/COD", "county:320612/pool/COD"


@pytest.fixture
def led(pg_url):
    led = SqlLedger(pg_url, T0)
    led.open([NewAccount(MINT, "COD", "external:mint"), NewAccount(POOL, "COD", "county:320612/pool")])
    led.submit([T("t0", MINT, POOL, 100)])
    yield led
    led.close()


def _request(led: SqlLedger):
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(
        runtime=SimpleNamespace(db=led.db), ledger=led.app)))


def _commit_around_head(monkeypatch, led: SqlLedger, *, before: bool):
    """Another writer commits a transfer just before (or just after) the endpoint reads the journal head."""
    real_head = LedgerRepository.head
    n = []

    def head(self):
        if before:
            n.append(1)
            led.submit([T(f"w{len(n)}", MINT, POOL, 50)])
        h = real_head(self)
        if not before:
            n.append(1)
            led.submit([T(f"w{len(n)}", MINT, POOL, 50)])
        return h

    monkeypatch.setattr(LedgerRepository, "head", head)
    return real_head


READS = {
    "balance": lambda req: [routes.balance(POOL, req, as_of=None, at_seq=None, _=None)],
    "account": lambda req: [routes.get_account(POOL, req, _=None)],
    "balances_query": lambda req: routes.balances(BalancesQuery(account_ids=[POOL, MINT]), req, _=None),
    "balances_by_address": lambda req: routes.balances_by_address(req, Response(), address_prefix="county:320612/",
                                                                  asset=None, after=None, limit=1000, _=None),
}


@pytest.mark.parametrize("before", [True, False], ids=["commit_before_head", "commit_after_head"])
@pytest.mark.parametrize("read", list(READS))
def test_a_balance_now_reflects_the_position_it_reports(led, monkeypatch, read, before):
    """Whichever the endpoint reads first, accounts or head, a commit between the two changes neither."""
    request = _request(led)
    real_head = _commit_around_head(monkeypatch, led, before=before)
    now = READS[read](request)
    monkeypatch.setattr(LedgerRepository, "head", real_head)
    assert led.balances()[POOL][3] == 150, "the other writer did commit meanwhile"
    for b in now:
        then = routes.balance(b.account_id, request, as_of=None, at_seq=b.as_of_seq, _=None)
        assert (b.credits_posted, b.debits_posted) == (then.credits_posted, then.debits_posted), (b, then)


def test_verification_is_not_fooled_by_an_append_during_it(led, monkeypatch):
    request = _request(led)
    _commit_around_head(monkeypatch, led, before=False)
    out = routes.verify_journal(request, from_seq=1, _=None)
    assert out.ok, out
    assert out.checked == out.head_seq
