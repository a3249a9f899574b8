"""A producer dropped while Kafka is unreachable must not leave its sender thread running (the relay drops
and recreates its producer on every outage, so a leak grows with each one)."""
import threading

from shared.outbox import close_producer


class _Sender(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self._stop_flag = threading.Event()

    def run(self):
        self._stop_flag.wait(30)

    def force_close(self):
        self._stop_flag.set()


class _StuckProducer:
    """What kafka-python does when the broker is gone: close() flushes first and the flush times out."""

    def __init__(self):
        self._sender = _Sender()
        self._sender.start()

    def close(self, timeout=None):
        raise TimeoutError("Timeout waiting for future")


def test_a_producer_whose_close_times_out_has_its_sender_stopped():
    p = _StuckProducer()
    close_producer(p, timeout=2)
    assert not p._sender.is_alive()


def test_a_clean_close_is_left_alone():
    closed = []

    class _Fine:
        _sender = None

        def close(self, timeout=None):
            closed.append(timeout)

    close_producer(_Fine(), timeout=3)
    assert closed == [3]
