"""A county's import or evaluation holds a million small objects at once; CPython's cyclic collector would
walk them all again every time the heap grows by a quarter (a third of the CPU time of a run). Bulk work
runs with the collector paused: reference counting still frees everything these objects hold, and the
collector resumes afterwards. Pauses nest and overlap across threads: the last one out resumes it."""
from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_active = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    global _active, _was_enabled
    with _lock:
        if _active == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _was_enabled:
                gc.enable()
