"""Review of the VALUES the services' /metrics report (2026-12-01): counters counted once per thing on every path,
gauges right from the start, alerts that can fire. Real services (tests.support.services.running_service), the
quota pool harness (tests/integration/quota/test_review_pool_rules_db.Book: the use cases the consumer calls, the
ledger's answers given by hand) and the /metrics text read with prometheus_client's parser.

Defects:
- countypool_quota_request_transitions_total counts every *changed* transition under the request's state, not only
  changes of state (services/quota/application/saga.py carry_out: ``if tr.changed``): the ledger confirming one line of
  a two-line request counts "reserving" a second time, an approval remembered by a waiting request counts
  "requested" (which a request's arrival never counts).
- countypool_ledger_pending_transfers / _pending_amount_units{asset} vanish instead of reading 0 once nothing of the
  asset is pending (services/ledger/metrics.py: one sample per row of ``pending_totals``, a GROUP BY of pending rows).

Guard (passing): transfers merged by the ledger's group commit count once each, under their own results."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.quota.test_review_pool_rules_db import C, Book
from tests.support.services import ADMIN, running_service

pytestmark = pytest.mark.kafka


def _value(text: str, name: str, **labels) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


TRANSITIONS = "countypool_quota_request_transitions_total"
STATES = ("requested", "reserving", "reserved", "allocated", "rejected", "cancelled", "expired")


def _transitions(client) -> dict[str, float]:
    text = client.get("/metrics").text
    return {s: _value(text, TRANSITIONS, state=s) for s in STATES}


def _moved(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


@pytest.fixture
def quota(tmp_path, kafka_bootstrap):
    with running_service("quota", f"sqlite:///{tmp_path / 'q.sqlite3'}", kafka_bootstrap, background=False) as (rt, c):
        book = Book(rt.db, retire_share_bp={})
        book.now = datetime.now(timezone.utc)  # rounds over HTTP run at the wall clock's time
        yield rt, c, book


def test_request_transitions_count_state_changes_only_once_each(quota):
    """countypool_quota_request_transitions_total{state}: "request state changes by new state". A request of two
    lines goes requested -> reserving -> reserved -> allocated: one change into each state. The ledger confirming
    the first of its two lines changes no state (it stays reserving), nor does an approval remembered while the
    request still waits for its round (it stays requested)."""
    _rt, client, book = quota
    book.release("REL-1", "COD", "5", "2024-01-04", serial=1)
    book.release("REL-2", "ENERGY", "5", "2024-01-04", serial=2)
    book.book()
    book.evaluate("P1")
    book.request("Q1", "P1", COD="1", ENERGY="1")

    before = _transitions(client)
    book.approve("P1", "COD")  # remembered: the request still waits for a round
    assert book.state("Q1") == ("requested", None)
    approval = _moved(before, _transitions(client))

    before = _transitions(client)
    r = client.post(f"/v1/counties/{C}/rounds", headers=ADMIN)
    assert r.status_code == 201, r.text
    assert [(d["request_id"], d["outcome"]) for d in r.json()["decisions"]] == [("Q1", "granted")]
    assert book.state("Q1")[0] == "reserving"
    book.pending("Q1")  # the ledger's TransferPending of each line, one after the other
    assert book.state("Q1")[0] == "reserved"
    book.approve("P1", "ENERGY")
    assert book.state("Q1")[0] == "allocated"
    lifecycle = _moved(before, _transitions(client))

    assert (approval, lifecycle) == ({}, {"reserving": 1, "reserved": 1, "allocated": 1}), (
        f"an approval remembered moved {approval}; reserving, both lines confirmed and allocation moved {lifecycle}")


# -- the ledger's gauges -------------------------------------------------------------------------------------------
def test_pending_gauges_say_zero_once_the_last_hold_of_an_asset_is_resolved(tmp_path, kafka_bootstrap):
    """countypool_ledger_pending_transfers / _pending_amount_units{asset}: "pending transfers and their amount".
    Once every hold of an asset is posted or voided the ledger holds 0 of it pending: the gauge must say 0, not
    vanish (a series that disappears is stale to Prometheus: the pool dashboard's "max by (asset)" panel stops at
    the last non-zero figure instead of falling to 0, and nothing can compare it with 0)."""
    run = datetime.now(timezone.utc).strftime("%H%M%S%f")
    pool, ent, ext = "county:320612/pool/COD", "enterprise:91320612MA1W7LXX8K/COD", f"external:pg-{run}/COD"
    with running_service("ledger", f"sqlite:///{tmp_path / 'l.sqlite3'}", kafka_bootstrap, background=False) as (_, c):
        accounts = [{"account_id": a, "asset": "COD", "address": a.rsplit("/", 1)[0]} for a in (pool, ent, ext)]
        assert c.post("/v1/accounts", headers=ADMIN, json={"accounts": accounts}).status_code == 200

        def send(*transfers):
            r = c.post("/v1/transfers", headers=ADMIN, json={"transfers": list(transfers)})
            assert r.status_code == 200 and r.json()["ok"], r.text

        send({"transfer_id": f"fund-{run}", "debit_account": ext, "credit_account": pool, "asset": "COD",
              "amount": "10"},
             {"transfer_id": f"hold-{run}", "debit_account": pool, "credit_account": ent, "asset": "COD",
              "amount": "3", "pending": True, "timeout_seconds": 3600})
        held = c.get("/metrics").text
        send({"transfer_id": f"post-{run}", "debit_account": pool, "credit_account": ent, "asset": "COD",
              "amount": "0", "post_pending_id": f"hold-{run}"})
        after = c.get("/metrics").text
    assert _value(held, "countypool_ledger_pending_transfers", asset="COD") == 1
    assert _value(held, "countypool_ledger_pending_amount_units", asset="COD") == 30_000
    found = {s.name: s.value for f in text_string_to_metric_families(after) for s in f.samples
             if s.name in ("countypool_ledger_pending_transfers", "countypool_ledger_pending_amount_units")
             and s.labels.get("asset") == "COD"}
    assert found == {"countypool_ledger_pending_transfers": 0, "countypool_ledger_pending_amount_units": 0}, (
        f"nothing of COD is pending any more; /metrics says {found or 'nothing at all'}")


def test_transfers_merged_by_group_commit_are_counted_once_each(tmp_path, kafka_bootstrap):
    """Guard: HTTP requests that arrive together commit as one group (services/ledger/group_commit.py); each
    request's transfer counts once in countypool_ledger_transfers_total under its own result (some refused, naming an
    account nobody opened), neither per group nor per request and per group. The existing tests send one request."""
    import threading

    run = datetime.now(timezone.utc).strftime("%H%M%S%f")
    code = f"gc.{run}"
    pool, ext = "county:320612/pool/COD", f"external:gc-{run}/COD"
    n = 24
    with running_service("ledger", f"sqlite:///{tmp_path / 'l.sqlite3'}", kafka_bootstrap, background=False) as (
            _, c):
        accounts = [{"account_id": a, "asset": "COD", "address": a.rsplit("/", 1)[0]} for a in (pool, ext)]
        assert c.post("/v1/accounts", headers=ADMIN, json={"accounts": accounts}).status_code == 200
        gc = c.app.state.group_commit
        groups_before, merged_before = gc.groups, gc.merged
        before = c.get("/metrics").text
        start = threading.Barrier(n)
        answers: list = []

        def one(i: int) -> None:
            credit = pool if i % 3 else f"county:320612/nobody-{i}/COD"  # every third refused: account not found
            start.wait()
            r = c.post("/v1/transfers", headers=ADMIN, json={"transfers": [{
                "transfer_id": f"t-{run}-{i}", "debit_account": ext, "credit_account": credit, "asset": "COD",
                "amount": "1", "code": code}]})
            answers.append(r.json()["results"][0]["result"])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        after = c.get("/metrics").text
        groups, merged = gc.groups - groups_before, gc.merged - merged_before
    assert len(answers) == n
    expected = {r: answers.count(r) for r in set(answers)}
    counted = {r: _value(after, "countypool_ledger_transfers_total", result=r, code=code)
               - _value(before, "countypool_ledger_transfers_total", result=r, code=code) for r in expected}
    assert counted == expected, f"{n} requests in {groups} groups ({merged} merged): counted {counted}, answered {expected}"
    assert groups < n, f"no request was merged ({groups} groups for {n} requests): the guard proved nothing"
