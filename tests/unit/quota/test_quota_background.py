"""The quota's periodic work goes on past one failing item: a request that cannot be expired (or a county whose
round fails) used to end the tick, and the same request, first in deadline order, ended every later tick too,
so no request behind it ever expired."""
from __future__ import annotations

from contextlib import contextmanager

from services.quota import background


class _Runtime:
    class db:  # noqa: N801 - stands for runtime.db
        @staticmethod
        @contextmanager
        def sessions():
            yield None

    @staticmethod
    def transaction(fn):
        return fn(None)


def test_request_expiry_goes_on_past_a_request_that_fails(monkeypatch):
    monkeypatch.setattr(background.request_store, "due_requests",
                        lambda _s, _now, _limit: [("R-bad", "320612"), ("R-1", "320612"), ("R-2", "320613")])
    monkeypatch.setattr(background.Tx, "of_uow", staticmethod(lambda uow: uow))
    tried = []

    def expire(_tx, request_id, _county):
        tried.append(request_id)
        if request_id == "R-bad":
            raise RuntimeError("a request the service cannot expire")
        return 1

    monkeypatch.setattr(background, "expire_request", expire)
    assert background.RequestExpiry(_Runtime, interval=1, batch=3).step() == 2  # batch full: asks again at once
    assert tried == ["R-bad", "R-1", "R-2"]


def test_automatic_rounds_go_on_past_a_county_that_fails(monkeypatch):
    monkeypatch.setattr(background.request_store, "counties_with_waiting_requests", lambda _s: {"320613", "320612"})
    monkeypatch.setattr(background.Tx, "of_uow", staticmethod(lambda uow: uow))
    ran = []

    def round_(_tx, county, _by):
        ran.append(county)
        if county == "320612":
            raise RuntimeError("a round that fails")

    monkeypatch.setattr(background, "run_round", round_)
    background.AutoRounds(_Runtime, interval=1).step()
    assert ran == ["320612", "320613"]
