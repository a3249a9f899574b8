"""The idempotent consumer while its group's membership changes, on PostgreSQL and real Kafka.

Production runs two replicas of each service in one consumer group on one database, so partitions move between
members whenever a replica starts, stops, dies or stalls. Whatever moves, every event must take effect exactly once
(the inbox), and the database position of every partition - where a (re)assigned partition resumes - must end at
the partition's end and never move backwards.

Every member is its own IdempotentConsumer with its own connection pool, as a replica is. The group's timeouts are
shortened (the constructor fixes them): a dead member is noticed after 6 s (the broker's minimum session timeout)
and one that does not poll for 5 s leaves the group, so the file runs in well under a minute.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import shared.consumer as consumer_module
from shared.consumer import IdempotentConsumer
from shared.db import Database
from shared.envelope import new_envelope
from shared.outbox import Outbox
from tests.support.machinery import WidgetAdded, count_widget, make_db, messaging, widget_counts

WIDGETS = 40  # keys: spread over the topic's 3 partitions
SESSION_TIMEOUT_MS = 6000  # the broker's group.min.session.timeout.ms: no shorter is accepted
MAX_POLL_INTERVAL_MS = 5000  # a member that does not poll for this long leaves the group (its heartbeat thread)


@pytest.fixture(autouse=True)
def quick_group(monkeypatch):
    """kafka-python's group timeouts, shortened: IdempotentConsumer sets a 10 s session and leaves the poll interval
    at 5 minutes, and takes no option for either."""

    def consumer(*args, **kwargs):
        kwargs.update(session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=1000,
                      max_poll_interval_ms=MAX_POLL_INTERVAL_MS)
        return KafkaConsumer(*args, **kwargs)

    monkeypatch.setattr(consumer_module, "KafkaConsumer", consumer)


# -- the stream ------------------------------------------------------------------------------------------------------

def _widget(seq: int) -> str:
    return f"w{seq % WIDGETS}"


def _expected(seqs) -> dict[str, int]:
    return dict(Counter(_widget(i) for i in seqs))


def _produce(bootstrap: str, topic: str, seqs: range, per_second: float | None = None) -> None:
    """WidgetAdded ``seqs`` (event id ``evt-<seq>``, keyed by widget), at about ``per_second`` if given."""
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for n, i in enumerate(seqs, 1):
            env = new_envelope(WidgetAdded(widget_id=_widget(i), seq=i), subject=_widget(i), source="/test",
                               event_id=f"evt-{i}")
            p.send(topic, key=_widget(i).encode(), value=env.to_json())
            if per_second and n % 50 == 0:
                p.flush()
                time.sleep(50 / per_second)
        p.flush()
    finally:
        p.close()


class _Background:
    """A function run in a thread, whose exception is raised again by ``join``."""

    def __init__(self, fn: Callable, *args, **kwargs):
        self.error: BaseException | None = None

        def target():
            try:
                fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to join
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 30) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the background task did not end"
        if self.error is not None:
            raise self.error


def _end_offsets(bootstrap: str, topic: str) -> dict[tuple[str, int], int]:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        assert len(parts) == 3, f"{topic} should have 3 partitions, has {len(parts)}"
        return {(tp.topic, tp.partition): off for tp, off in c.end_offsets(parts).items()}
    finally:
        c.close()


# -- the members and what the database says --------------------------------------------------------------------------

def _member(url: str, bootstrap: str, topic: str, handler=count_widget, max_records: int = 100) -> IdempotentConsumer:
    # small polls: a handover falls between many batches, not after one big one
    return IdempotentConsumer(db=Database(url, "machinery"), tables=messaging,
                              outbox=Outbox(messaging["outbox"], "machinery"), bootstrap=bootstrap,
                              group_id=f"g-{topic}", topics=[topic], handler=handler, max_records=max_records)


def _assigned(member: IdempotentConsumer) -> set[int]:
    kafka = member._consumer  # noqa: SLF001 - read from the test's thread; a copy of the set
    try:
        return {tp.partition for tp in kafka.assignment()} if kafka is not None else set()
    except Exception:  # noqa: BLE001 - closed meanwhile
        return set()


def _inbox_rows(db: Database) -> int:
    with db.sessions() as s:
        return s.execute(sa.select(sa.func.count()).select_from(messaging["inbox"])).scalar_one()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


def _watch_positions(db: Database) -> None:
    """Record every update that lowers a stored position: the final state alone would not show one that a later
    rebalance happened to repair (by reading the partition again)."""
    with db.sessions() as s, s.begin():
        s.execute(sa.text("CREATE TABLE position_regressions (topic text, part int, was bigint, now bigint)"))
        s.execute(sa.text(
            "CREATE FUNCTION note_position_regression() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO position_regressions VALUES (NEW.topic, NEW.partition, OLD.next_offset, NEW.next_offset); "
            "RETURN NEW; END $$"))
        s.execute(sa.text(
            "CREATE TRIGGER position_regression AFTER UPDATE ON consumer_positions FOR EACH ROW "
            "WHEN (NEW.next_offset < OLD.next_offset) EXECUTE FUNCTION note_position_regression()"))


def _regressions(db: Database) -> list[tuple]:
    with db.sessions() as s:
        return [tuple(r) for r in s.execute(sa.text("SELECT topic, part, was, now FROM position_regressions"))]


def _stop_all(*members: IdempotentConsumer) -> None:
    for m in members:
        m.stop()
        m.db.dispose()


def _assert_exactly_once(db: Database, members: list[IdempotentConsumer], seqs: range,
                         ends: dict[tuple[str, int], int]) -> None:
    assert widget_counts(db) == _expected(seqs), "every widget counted once per event"
    assert _inbox_rows(db) == len(seqs)
    assert sum(m.stats.applied for m in members) == len(seqs), [m.stats for m in members]
    assert members[0].stored_positions() == ends, "every partition's database position is at its end"
    assert _regressions(db) == [], "a database position moved backwards"


# -- the scenarios ---------------------------------------------------------------------------------------------------

def test_members_joining_leaving_and_rejoining_mid_stream(pg_url, kafka_bootstrap, unique_topic):
    """A consumes alone; B joins; A stops cleanly (B takes everything); A, started again, rejoins. Every handover
    resumes from the database position, so nothing is even read twice."""
    db, _ = make_db(pg_url)
    _watch_positions(db)
    a = _member(pg_url, kafka_bootstrap, unique_topic)
    b = _member(pg_url, kafka_bootstrap, unique_topic)
    a_again = _member(pg_url, kafka_bootstrap, unique_topic)  # the replica restarted: a new process
    try:
        a.start()
        first = _Background(_produce, kafka_bootstrap, unique_topic, range(0, 1000), per_second=600)
        _wait(lambda: _inbox_rows(db) >= 300, "A has applied 300")
        b.start()
        _wait(lambda: _assigned(b) and _assigned(a), "A and B share the partitions")
        first.join()
        second = _Background(_produce, kafka_bootstrap, unique_topic, range(1000, 2000), per_second=600)
        _wait(lambda: _inbox_rows(db) >= 1300, "the group has applied 1300")
        a.stop()
        _wait(lambda: _assigned(b) == {0, 1, 2}, "B has every partition once A left")
        second.join()
        third = _Background(_produce, kafka_bootstrap, unique_topic, range(2000, 2700), per_second=600)
        _wait(lambda: _inbox_rows(db) >= 2200, "B has applied up to 2200")
        a_again.start()
        _wait(lambda: _assigned(a_again) and _assigned(b), "A, back, shares the partitions again")
        third.join()
        # produced once A is back: some of it is on A's partitions, so A applies again
        _produce(kafka_bootstrap, unique_topic, range(2700, 3000))
        ends = _end_offsets(kafka_bootstrap, unique_topic)
        _wait(lambda: _inbox_rows(db) >= 3000 and a.stored_positions() == ends, "everything is applied", timeout=40)
        time.sleep(1)  # anything applied twice would be by now
    finally:
        _stop_all(a, b, a_again)
    members = [a, b, a_again]
    _assert_exactly_once(db, members, range(3000), ends)
    assert all(m.stats.applied > 0 for m in members), [m.stats for m in members]
    assert sum(m.stats.duplicates for m in members) == 0, "a handover re-read events already applied"


class _Crash(BaseException):
    """The process dies: not an Exception, so the consumer's loop does not catch it."""


def _vanish(member: IdempotentConsumer) -> None:
    """Gone as a killed process is: no more heartbeats, no LeaveGroup, no offset commit. The group notices only when
    the session times out."""
    kafka = member._consumer  # noqa: SLF001
    if kafka is not None:
        kafka._coordinator.maybe_leave_group = lambda *a, **k: None  # noqa: SLF001
        kafka.close(autocommit=False)
        member._consumer = None


def test_a_member_that_dies_mid_batch_is_taken_over_exactly_once(pg_url, kafka_bootstrap, unique_topic):
    """A dies inside a batch (its transaction, with the effects of the batch's first messages, is rolled back, as a
    killed process's connection is); after the session timeout B takes A's partitions from the database position:
    the rolled-back messages are applied once, by B, and nothing A had committed is read again."""
    db, _ = make_db(pg_url)
    _watch_positions(db)
    calls_left: list[int] = []  # armed: the handler calls A still makes before it dies
    crashed = threading.Event()

    def mortal(ctx):
        if calls_left:
            calls_left[0] -= 1
            if calls_left[0] < 0:
                crashed.set()
                raise _Crash()
        count_widget(ctx)

    a = _member(pg_url, kafka_bootstrap, unique_topic, handler=mortal)
    b = _member(pg_url, kafka_bootstrap, unique_topic)

    def a_until_it_dies():
        try:
            a.run()
        except _Crash:
            _vanish(a)

    try:
        a_thread = _Background(a_until_it_dies)
        b.start()
        _wait(lambda: _assigned(a) and _assigned(b), "A and B share the partitions")
        a_partitions = _assigned(a)
        stream = _Background(_produce, kafka_bootstrap, unique_topic, range(0, 2500), per_second=500)
        _wait(lambda: a.stats.applied >= 200, "A has applied 200")
        calls_left.append(3)  # the 4th call raises: after effects of the same batch, most likely
        _wait(crashed.is_set, "A has died")
        died_at = time.monotonic()
        a_thread.join()
        _wait(lambda: _assigned(b) == {0, 1, 2}, "B has taken A's partitions", timeout=SESSION_TIMEOUT_MS / 1000 + 20)
        took_over_after = time.monotonic() - died_at
        stream.join()
        ends = _end_offsets(kafka_bootstrap, unique_topic)
        _wait(lambda: _inbox_rows(db) >= 2500 and b.stored_positions() == ends, "everything is applied", timeout=40)
        time.sleep(1)
    finally:
        calls_left.clear()
        _stop_all(a, b)
    assert a_partitions and a.stats.applied > 0 and b.stats.applied > 0
    assert took_over_after > 2, "A left the group at once: that was no crash"
    _assert_exactly_once(db, [b, a], range(2500), ends)
    assert b.stats.duplicates == 0, "B resumed from the database position, not from older Kafka offsets"


def test_a_stalled_member_finishing_its_batch_late_changes_nothing(pg_url, kafka_bootstrap, unique_topic):
    """FINDING (fixed): a stalled member that finished its batch late moved the partition's database position
    backwards.

    A's handler stalls at the start of a batch, past the poll interval: A leaves the group and B applies A's
    partitions, past that batch. Released, A finishes the batch, which B has already applied, and is then shut down
    (as a stalled pod is restarted) before another rebalance. The effects were exactly once (A's late transaction
    fails on the inbox's primary key, its retry finds every event already taken), but that retry committed A's
    stale position over B's newer one: ``_save_positions`` updated ``next_offset`` unconditionally. Then the next
    assignment of the partition read it again from the old offset, and until the partition got a new event the lag
    gauge showed lag that was not there (B never stores its unchanged position again). Failed in 6 of 6 runs before
    the fix; now a stored position of the same topic only moves forward.
    """
    db, _ = make_db(pg_url)
    _watch_positions(db)
    stall_armed, stalled, release = threading.Event(), threading.Event(), threading.Event()

    def stalling(ctx):
        if stall_armed.is_set() and not stalled.is_set():
            stalled.set()  # the batch's first message: nothing of it written yet, so B is not blocked by A's locks
            release.wait(60)
        count_widget(ctx)

    a = _member(pg_url, kafka_bootstrap, unique_topic, handler=stalling)
    b = _member(pg_url, kafka_bootstrap, unique_topic)
    stale: dict[tuple[str, int], int] = {}  # the next offsets of A's late batch, per partition
    late = [0]  # its records
    apply = a._apply

    def apply_then_shut_down(records, after=None):
        apply(records, after)
        if release.is_set():  # A's late batch has committed: shut A down before it polls (and rejoins) again
            late[0] = len(records)
            for r in records:
                stale[(r.topic, r.partition)] = max(stale.get((r.topic, r.partition), 0), r.offset + 1)
            a._stop.set()

    a._apply = apply_then_shut_down
    try:
        a.start()
        b.start()
        _wait(lambda: _assigned(a) and _assigned(b), "A and B share the partitions")
        _produce(kafka_bootstrap, unique_topic, range(0, 600))
        _wait(lambda: _inbox_rows(db) == 600, "the first 600 are applied")
        applied_by_a = a.stats.applied
        stall_armed.set()  # A is idle: its next handler call is the first of a batch
        _produce(kafka_bootstrap, unique_topic, range(600, 1200))
        _wait(stalled.is_set, "A has stalled")
        _wait(lambda: _assigned(b) == {0, 1, 2}, "B has every partition once A left the group",
              timeout=MAX_POLL_INTERVAL_MS / 1000 + 20)
        ends = _end_offsets(kafka_bootstrap, unique_topic)
        _wait(lambda: _inbox_rows(db) == 1200 and b.stored_positions() == ends, "B has applied everything")
        release.set()
        a._thread.join(30)
        assert not a._thread.is_alive(), "A did not finish its late batch"
        time.sleep(1)  # B polls on, idle
    finally:
        release.set()
        _stop_all(a, b)
    assert applied_by_a > 0 and stale, "A had a batch in flight when it stalled"
    assert all(stale[tp] < ends[tp] for tp in stale), "B went past A's late batch"
    assert a.stats.applied == applied_by_a, "A's late batch took no effect"
    assert a.stats.duplicates == late[0] > 0, "the inbox dropped A's late batch as already applied"
    assert widget_counts(db) == _expected(range(1200)), "every widget counted once per event"
    assert _inbox_rows(db) == 1200
    assert a.stats.applied + b.stats.applied == 1200
    assert _regressions(db) == [], "a database position moved backwards"
    assert b.stored_positions() == ends, "every partition's database position is at its end"
