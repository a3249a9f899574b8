"""ServiceRuntime: a stop that comes while the consumer is still being started leaves no thread behind.

The consumer starts on a thread of its own once its topics exist. A service (or a test's fixture) stopped
during that wait used to get the consumer started after its stop: its threads then ran on, and a stop that
came between the lag monitor's Thread() and start() raised "cannot join thread before it is started".
No broker is needed: topic creation is held back by hand, and the consumer never reaches Kafka here.
"""
from __future__ import annotations

import threading
import time

import pytest

from shared import runtime as runtime_module
from shared.consumer_lag import GroupLag
from tests.support.services import TOKENS
from shared.settings import load_settings


def _consumer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("quota-consumer") and t.is_alive()]


@pytest.fixture
def quota_runtime(tmp_path):
    from services.quota import main as quota_main

    st = load_settings("quota", getattr(quota_main, "QuotaSettings", None), database_url=f"sqlite:///{tmp_path}/q.db",
                       kafka_bootstrap_servers="127.0.0.1:1", auth_tokens_file=TOKENS, relay_enabled=False)
    rt, _app = quota_main.build(st)
    rt.migrate()
    yield rt
    rt.db.dispose()


def test_stop_while_topics_are_being_made_leaves_the_consumer_stopped(quota_runtime, monkeypatch):
    rt = quota_runtime
    assert rt.consumer is not None and rt.settings.consumer_enabled
    entered, release = threading.Event(), threading.Event()

    def slow_topics(*_a, **_k):
        entered.set()
        release.wait(10)

    monkeypatch.setattr(runtime_module, "ensure_topics", slow_topics)
    before = set(_consumer_threads())
    rt.start_background()
    assert entered.wait(5)
    rt.stop_background()  # while the topics thread waits on "Kafka"
    release.set()
    time.sleep(0.5)  # the topics thread finishes: it must not start the consumer now
    started = [t for t in _consumer_threads() if t not in before]
    assert started == [], f"threads left running after stop: {[t.name for t in started]}"
    assert rt.consumer._thread is None


def test_lag_monitor_stop_before_its_thread_runs():
    lag = GroupLag.__new__(GroupLag)  # only the fields stop() reads
    lag._stop = threading.Event()
    lag._thread = threading.Thread(target=lambda: None)  # made, not yet started: the window of the race
    lag._client = None
    lag.stop()  # raised "cannot join thread before it is started"
    assert lag._thread is None
