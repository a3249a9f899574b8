"""Bulk work (a county's import or evaluation, a settlement run, a replay) holds a million small acyclic
objects at once; CPython's cyclic collector would walk them all again every time the heap grows by a quarter
(20-40 % of such a run, up to 2-3x a replay's fold). Bulk work runs with the collector paused: reference
counting still frees everything these objects hold.

Pauses nest and overlap across threads: the last one out resumes the collector. On resuming, what was made
meanwhile goes to the oldest generation unscanned (``freeze`` then ``unfreeze``) instead of being walked at
once by the next young collection (~0.5 s after a settlement county-year); full collections still see it."""
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
                gc.freeze()
                gc.enable()
                gc.unfreeze()
