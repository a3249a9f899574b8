"""Calls released at one moment (a barrier), for tests of writers racing each other."""
from __future__ import annotations

import threading
from typing import Callable, Sequence


def together(calls: Sequence[Callable[[], object]]) -> list:
    """Each call's result (or the exception it raised), in order; the calls start together, one thread each."""
    start, out = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i, call):
        start.wait()
        try:
            out[i] = call()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out
