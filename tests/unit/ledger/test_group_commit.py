"""Group commit's bookkeeping with a stand-in for the transaction: who runs with whom, results re-indexed per
request, chains left open alone, a failing group retried request by request, correlation ids kept."""
from __future__ import annotations

import threading

from services.ledger.domain import BatchOutcome, TransferOutcome, TransferRequest as T, TransferResult as R
from services.ledger.group_commit import GroupCommit
from shared.logs import correlation_id


class Runner:
    """Records each call; the first call waits until released, so that others queue behind it meanwhile."""

    def __init__(self, fail_if=lambda reqs: False):
        self.calls: list[tuple[list[str], list]] = []
        self.release = threading.Event()
        self.first_started = threading.Event()
        self.fail_if = fail_if

    def __call__(self, reqs, bounds):
        self.calls.append(([r.id for r in reqs], list(bounds)))
        if len(self.calls) == 1:
            self.first_started.set()
            self.release.wait(10)
        if self.fail_if(reqs):
            raise ValueError("bad request in here")
        results = [TransferOutcome(i, r.id, R.exceeds_credits if r.id.startswith("x") else R.ok) for i, r in enumerate(reqs)]
        return BatchOutcome(results, [], [], [], [], [])


def _submit_all(gc: GroupCommit, runner: Runner, batches: dict[str, list[T]]) -> dict[str, object]:
    """The first batch alone (it holds the 'transaction'); the others arrive while it runs."""
    out: dict[str, object] = {}

    def call(name: str, reqs: list[T]) -> None:
        token = correlation_id.set(f"corr-{name}")
        try:
            out[name] = gc.submit(reqs)
        except Exception as exc:  # noqa: BLE001 - compared below
            out[name] = exc
        finally:
            correlation_id.reset(token)

    names = list(batches)
    first = threading.Thread(target=call, args=(names[0], batches[names[0]]))
    first.start()
    assert runner.first_started.wait(5)
    rest = [threading.Thread(target=call, args=(n, batches[n])) for n in names[1:]]
    for t in rest:
        t.start()
    while len(gc._queue) < len(rest):  # every later caller queued behind the running one
        threading.Event().wait(0.01)
    runner.release.set()
    for t in [first, *rest]:
        t.join(10)
    return out


def test_requests_arriving_meanwhile_share_the_next_transaction_and_get_their_own_results():
    runner = Runner()
    gc = GroupCommit(runner, max_transfers=1000)
    out = _submit_all(gc, runner, {"a": [T("a1")], "b": [T("b1"), T("x-b2")], "c": [T("c1")], "d": [T("x-d1")]})
    assert runner.calls[0] == (["a1"], [(0, "corr-a")])
    ids, bounds = runner.calls[1]
    assert sorted(ids) == ["b1", "c1", "x-b2", "x-d1"] and len(runner.calls) == 2, "one transaction for b, c, d"
    assert sorted(c for _, c in bounds) == ["corr-b", "corr-c", "corr-d"], "each request keeps its correlation id"
    assert out["b"] == [TransferOutcome(0, "b1", R.ok), TransferOutcome(1, "x-b2", R.exceeds_credits)]
    assert out["c"] == [TransferOutcome(0, "c1", R.ok)]
    assert out["d"] == [TransferOutcome(0, "x-d1", R.exceeds_credits)]
    assert (gc.groups, gc.merged) == (2, 4)


def test_a_request_ending_in_an_open_chain_runs_alone():
    runner = Runner()
    gc = GroupCommit(runner)
    _submit_all(gc, runner, {"a": [T("a1")], "open": [T("o1", linked=True)], "c": [T("c1")]})
    assert [ids for ids, _ in runner.calls[1:]] in ([["o1"], ["c1"]], [["c1"], ["o1"]])


def test_a_group_is_bounded_by_max_transfers():
    runner = Runner()
    gc = GroupCommit(runner, max_transfers=3)
    _submit_all(gc, runner, {"a": [T("a1")], "b": [T("b1"), T("b2")], "c": [T("c1"), T("c2")]})
    assert sorted(len(ids) for ids, _ in runner.calls[1:]) == [2, 2], "b and c do not fit in one group of 3"


def test_a_failing_group_runs_again_request_by_request_and_only_the_bad_one_fails():
    runner = Runner(fail_if=lambda reqs: any(r.id == "bad" for r in reqs))
    gc = GroupCommit(runner)
    out = _submit_all(gc, runner, {"a": [T("a1")], "b": [T("b1")], "bad": [T("bad")], "c": [T("c1")]})
    assert isinstance(out["bad"], ValueError)
    assert out["b"] == [TransferOutcome(0, "b1", R.ok)] and out["c"] == [TransferOutcome(0, "c1", R.ok)]
    assert sorted(ids[0] for ids, _ in runner.calls[2:]) == ["b1", "bad", "c1"], "then one at a time"


def test_a_lone_request_runs_at_once():
    runner = Runner()
    runner.release.set()
    gc = GroupCommit(runner)
    assert gc.submit([T("solo")]) == [TransferOutcome(0, "solo", R.ok)]
    assert gc.submit([T("next")]) == [TransferOutcome(0, "next", R.ok)]
    assert (gc.groups, gc._running, gc._queue) == (2, False, [])
