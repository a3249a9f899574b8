"""Group commit: small requests that arrive while a transaction is running are applied together in the next
one (one journal-head lock, one engine run, one commit and its WAL flush for all of them).

Every writer queues on the journal head anyway, so a lone request waits for nobody: the first caller leads
at once; callers that arrive meanwhile queue, and when the running group has committed the first of them
leads the next group with everything queued by then. The outcome is what applying the requests one after
the other gives: the engine applies a batch in order, carrying each transfer's effect to the next, exactly
as a commit and a fresh view would. Two things would differ, so they are never merged: a request whose last
transfer is linked (its chain must end open, as ``linked_event_chain_open``, not run into the next request),
and the results of a group that fails as a whole (a database error, say): then each of its requests runs
again alone, so only the one at fault gets the error. Each request's events keep its own correlation id.
"""
from __future__ import annotations

import threading
from typing import Callable

from services.ledger.domain import BatchOutcome, TransferOutcome, TransferRequest
from shared.logs import correlation_id

GROUP_MAX = 100  # requests of up to this many transfers are grouped (larger ones are a batch of their own)

# run(requests, correlations) applies requests in one transaction and returns its outcome; correlations are
# (index of a request's first transfer, its correlation id)
Runner = Callable[[list[TransferRequest], list[tuple[int, str | None]]], BatchOutcome]


class _Waiting:
    __slots__ = ("requests", "correlation", "done", "leads", "results", "error")

    def __init__(self, requests: list[TransferRequest]):
        self.requests = requests
        self.correlation = correlation_id.get()
        self.done = threading.Event()
        self.leads = False
        self.results: list[TransferOutcome] | None = None
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(self, run: Runner, max_transfers: int = 1000):
        self.run = run
        self.max_transfers = max_transfers
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._running = False
        self.groups = 0  # transactions run, and requests merged into them (for tests and the bench)
        self.merged = 0

    def submit(self, requests: list[TransferRequest]) -> list[TransferOutcome]:
        """The request's results, indexed from 0 as if it had run alone; raises what running it raised."""
        me = _Waiting(requests)
        with self._lock:
            self._queue.append(me)
            if not self._running:
                self._running = me.leads = True
        if not me.leads:
            me.done.wait()  # set with our results, or when we are to lead the next group
        if me.leads:
            self._lead()
        if me.error is not None:
            raise me.error
        return me.results

    def _lead(self) -> None:
        with self._lock:
            group = self._take()
        try:
            self._apply(group)
        finally:
            for w in group:
                if w.results is None and w.error is None:
                    w.error = RuntimeError("the group this request was in was interrupted")
            with self._lock:
                if self._queue:  # the first one waiting leads the next group
                    self._queue[0].leads = True
                    self._queue[0].done.set()
                else:
                    self._running = False
            for w in group:
                if not w.leads:
                    w.done.set()

    def _take(self) -> list[_Waiting]:
        """From the head of the queue: requests up to max_transfers in all; one that ends a linked chain open
        only alone."""
        group: list[_Waiting] = []
        total = 0
        for w in self._queue:
            n = len(w.requests)
            open_chain = bool(w.requests) and w.requests[-1].linked
            if group and (open_chain or total + n > self.max_transfers):
                break
            group.append(w)
            total += n
            if open_chain:
                break
        del self._queue[:len(group)]
        return group

    def _apply(self, group: list[_Waiting]) -> None:
        self.groups += 1
        self.merged += len(group)
        if len(group) > 1:
            requests: list[TransferRequest] = []
            bounds: list[tuple[int, str | None]] = []
            for w in group:
                bounds.append((len(requests), w.correlation))
                requests.extend(w.requests)
            try:
                outcome = self.run(requests, bounds)
            except Exception:  # noqa: BLE001 - the group failed as a whole: each request again, alone
                pass
            else:
                for (start, _), w in zip(bounds, group):
                    w.results = [TransferOutcome(r.index - start, r.id, r.result)
                                 for r in outcome.results[start:start + len(w.requests)]]
                return
        for w in group:
            try:
                w.results = list(self.run(w.requests, [(0, w.correlation)]).results)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                w.error = exc
