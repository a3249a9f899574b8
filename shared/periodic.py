"""Periodic work a service runs beside its relay and consumer (appended to ``runtime.background``)."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``step()`` every ``interval`` seconds, again at once while it reports work done (> 0).
    ``run_first``: take the first step at start-up instead of after one interval."""

    name = "periodic"
    run_first = False

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        def loop():
            wait_first = not self.run_first
            while not (wait_first and self._stop.wait(self.interval)):
                wait_first = True
                try:
                    while self.step() > 0 and not self._stop.is_set():
                        pass
                except Exception as exc:  # noqa: BLE001 - try again next tick
                    log.warning("%s failed: %s", self.name, exc)

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
