"""in_background: the worker's work is done and its error raised before the block ends, whatever the body does."""
import threading
import time

import pytest

from services.ledger.handlers import in_background


def test_the_work_is_done_when_the_block_ends():
    done = []
    with in_background(lambda: (time.sleep(0.05), done.append(threading.current_thread().name))):
        assert done == []  # still running beside the body
    assert done == ["ledger-persist"]


def test_the_workers_error_is_raised_in_the_callers_thread():
    def fail():
        raise ValueError("deadlock detected")

    with pytest.raises(ValueError, match="deadlock detected"):
        with in_background(fail):
            pass


def test_a_failing_body_still_waits_for_the_worker():
    finished = threading.Event()
    with pytest.raises(KeyError):
        with in_background(lambda: (time.sleep(0.05), finished.set())):
            raise KeyError("body")
    assert finished.is_set()  # the connection is not left in the worker's hands
