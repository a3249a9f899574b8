"""What the log did while a consumer was away: messages deleted by retention, a topic created again.

Messages a topic's retention deleted before the group read them are reported, not skipped in silence:
kafka-python, finding its position gone, starts again at the partition's first offset (auto_offset_reset), and
without these checks a service down longer than the retention, or one whose database was restored from an old
backup, would carry on as if nothing were missing. A topic deleted and created again under its name (a rebuilt
cluster) is read from its start: its offsets start over, and the stored position would skip as many messages."""
from __future__ import annotations

import time
import uuid

from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient

from shared.consumer import IdempotentConsumer
from shared.kafka_admin import ensure_topics
from shared.metrics import CONSUMER_OFFSETS_SKIPPED
from tests.integration.test_consumer import _env, _produce
from tests.support.machinery import count_widget, drain, make_db, messaging, widget_counts


def _one_partition_topic(bootstrap: str) -> str:
    name = f"test.retention.{uuid.uuid4().hex[:12]}"
    ensure_topics(bootstrap, [name, f"{name}.dlq"], partitions=1)
    return name


def _recreate(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics([topic, f"{topic}.dlq"], operation_timeout=30).values():
        fut.result(timeout=30)
    deadline = time.monotonic() + 30
    while topic in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "the topic was not deleted"
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while True:  # the broker may still be finishing the deletion
        try:
            ensure_topics(bootstrap, [topic, f"{topic}.dlq"], partitions=1)
            break
        except Exception:  # noqa: BLE001
            assert time.monotonic() < deadline, "the topic could not be created again"
            time.sleep(0.5)


def _consumer(db, outbox, bootstrap, topic):
    return IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=bootstrap, group_id=f"g-{topic}",
                              topics=[topic], handler=count_widget)


def _delete_before(bootstrap: str, topic: str, offset: int) -> None:
    """What retention does when it drops a partition's oldest segments: the first offset moves up."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_records([ConfluentPartition(topic, 0, offset)]).values():
        assert fut.result(timeout=30).low_watermark == offset


def _widgets(start: int, n: int) -> list[tuple[str, bytes]]:
    return [(f"w{i}", _env(f"w{i}", 1)) for i in range(start, start + n)]


def test_a_position_older_than_the_log_is_reported_before_anything_is_read(db_url, kafka_bootstrap):
    """The service was away (or its database restored) while retention deleted what it had not read: once the
    position has stood still below the log (30 s as served, 1 s here), a measure says how many offsets are gone,
    once; the lag counts only what can still be read."""
    topic = _one_partition_topic(kafka_bootstrap)
    db, outbox = make_db(db_url)
    skipped = CONSUMER_OFFSETS_SKIPPED.labels(db.service, topic)
    _produce(kafka_bootstrap, topic, _widgets(0, 10))
    first = _consumer(db, outbox, kafka_bootstrap, topic)
    try:
        drain(first, lambda: first.stats.applied >= 10)
        assert first.lag.report() == {topic: 0}
        assert first.lag.skipped == {} and skipped._value.get() == 0, "nothing was deleted unread"
    finally:
        first.stop()

    _produce(kafka_bootstrap, topic, _widgets(10, 10))  # offsets 10..19, never read
    _delete_before(kafka_bootstrap, topic, 15)

    second = _consumer(db, outbox, kafka_bootstrap, topic)
    second.lag.confirm_seconds = 1.0  # 30 s as served: a position below the log that does not move
    try:
        assert second.lag.report() == {topic: 5}, "offsets 15..19 can be read; 10..14 are no lag, they are gone"
        assert second.lag.skipped == {}, "not yet: the consumer might hold those records and be applying them"
        time.sleep(1.1)
        assert second.lag.report() == {topic: 5}
        assert second.lag.skipped == {topic: 5}
        assert skipped._value.get() == 5
        drain(second, lambda: second.stats.applied >= 5)
        assert set(widget_counts(db)) == {f"w{i}" for i in list(range(10)) + list(range(15, 20))}
        assert second.lag.report() == {topic: 0}
        assert skipped._value.get() == 5, "the same gap is told once"
    finally:
        second.stop()


def test_a_running_consumer_that_reads_past_its_position_reports_the_gap(db_url, kafka_bootstrap):
    """The gap is found by the poll that jumped, even when the group has caught up before the next measure (the
    position then no longer shows it)."""
    topic = _one_partition_topic(kafka_bootstrap)
    db, outbox = make_db(db_url)
    skipped = CONSUMER_OFFSETS_SKIPPED.labels(db.service, topic)
    _produce(kafka_bootstrap, topic, _widgets(0, 10))
    c = _consumer(db, outbox, kafka_bootstrap, topic)
    try:
        drain(c, lambda: c.stats.applied >= 10)
        time.sleep(1.5)  # the fetch the last poll sent has come back empty: nothing of what follows is buffered
        _produce(kafka_bootstrap, topic, _widgets(10, 10))
        _delete_before(kafka_bootstrap, topic, 15)
        drain(c, lambda: c.stats.applied >= 15)
        assert c.stored_positions() == {(topic, 0): 20}, "caught up: the position alone no longer shows the gap"
        assert skipped._value.get() == 0, "not measured yet"
        assert c.lag.report() == {topic: 0}
        assert c.lag.skipped == {topic: 5} and skipped._value.get() == 5
        assert c.lag.report() == {topic: 0} and skipped._value.get() == 5, "told once"
    finally:
        c.stop()


def test_offsets_a_consumer_passes_over_that_are_still_in_the_log_are_no_loss(db_url, kafka_bootstrap):
    """A jump whose offsets the log still holds (transaction markers take offsets; here the database position is
    set back by hand) is not reported as deleted."""
    topic = _one_partition_topic(kafka_bootstrap)
    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, topic, _widgets(0, 5))
    c = _consumer(db, outbox, kafka_bootstrap, topic)
    try:
        drain(c, lambda: c.stats.applied >= 5)
        c.lag.note_jump(topic, 0, 2, 4)  # as if offsets 2..3 had been passed over
        assert c.lag.report() == {topic: 0}
        assert c.lag.skipped == {}
    finally:
        c.stop()


def test_a_topic_created_again_is_read_from_its_start(db_url, kafka_bootstrap):
    """The position (5) was an offset of the topic before; the new one under the same name starts at 0, and all 8
    of its messages are read (the stored offset would have skipped the first 5). Its position is then the new
    topic's."""
    topic = _one_partition_topic(kafka_bootstrap)
    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, topic, _widgets(0, 5))
    first = _consumer(db, outbox, kafka_bootstrap, topic)
    try:
        drain(first, lambda: first.stats.applied >= 5)
        # the id comes from the consumer's cached metadata: a batch saved while it had none (a loaded broker's
        # partial answer) leaves it to the next batch
        for n in range(5, 10):
            (offset, old_id), = first.stored_positions_and_topics().values()
            if old_id:
                break
            _produce(kafka_bootstrap, topic, _widgets(n, 1))
            drain(first, lambda: first.stats.applied > n)
        assert old_id, "the position records the topic's id"
    finally:
        first.stop()

    _recreate(kafka_bootstrap, topic)
    _produce(kafka_bootstrap, topic, _widgets(100, 8))
    second = _consumer(db, outbox, kafka_bootstrap, topic)
    try:
        drain(second, lambda: second.stats.applied >= 8)
        assert set(widget_counts(db)) == {f"w{i}" for i in list(range(offset)) + list(range(100, 108))}
        assert offset >= 5
        (offset, new_id), = second.stored_positions_and_topics().values()
        assert offset == 8 and new_id and new_id != old_id
    finally:
        second.stop()


def test_a_position_of_the_same_topic_is_resumed(db_url, kafka_bootstrap):
    """The control: same topic id, so the stored position holds and nothing is read twice."""
    topic = _one_partition_topic(kafka_bootstrap)
    db, outbox = make_db(db_url)
    _produce(kafka_bootstrap, topic, _widgets(0, 5))
    first = _consumer(db, outbox, kafka_bootstrap, topic)
    try:
        drain(first, lambda: first.stats.applied >= 5)
    finally:
        first.stop()
    _produce(kafka_bootstrap, topic, _widgets(5, 3))
    second = _consumer(db, outbox, kafka_bootstrap, topic)
    try:
        drain(second, lambda: second.stats.applied >= 3)
        time.sleep(0.5)
        second.poll_once(timeout_ms=300)
        assert second.stats.applied == 3 and second.stats.duplicates == 0
    finally:
        second.stop()
