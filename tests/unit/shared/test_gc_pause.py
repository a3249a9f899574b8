"""Bulk work pauses the cyclic collector and gives it back as it found it, however pauses nest or overlap."""
import gc
import threading

from shared.gc_pause import collector_paused


def test_pauses_nest_and_restore_the_collector():
    was = gc.isenabled()
    gc.enable()
    try:
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the outer pause still runs
        assert gc.isenabled()
        gc.disable()
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable() if was else gc.disable()


def test_overlapping_pauses_across_threads_resume_once_the_last_ends():
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other():
        with collector_paused():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    with collector_paused():
        t.start()
        inside.wait(5)
    assert not gc.isenabled()  # the other thread's pause is still on
    release.set()
    t.join(5)
    assert gc.isenabled()


def test_an_exception_still_resumes_it():
    gc.enable()
    try:
        with collector_paused():
            raise KeyError("x")
    except KeyError:
        pass
    assert gc.isenabled()
