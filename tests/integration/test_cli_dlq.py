"""`countypool dlq list|redrive` against real Kafka (and, end to end, the real consumer on PostgreSQL).

Dead letters are written as shared/consumer.py writes them (its headers, the original key and value; the value
left out above the size limit). A re-drive must send each letter once however often it runs, keep its key
bytes and partition, refuse a letter with no body instead of producing an empty message, read the whole
dead-letter topic (not the first thousand), and say so when a topic is missing."""
from __future__ import annotations

import re
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.partitioner.default import murmur2

from tests.support.cli import run_cli
from shared.consumer import IdempotentConsumer, Rejected
from shared.envelope import new_envelope
from shared.kafka_admin import ensure_topics
from tests.support.machinery import WidgetAdded, count_widget, make_db, messaging, read_all, widget_counts


def listed(capsys, topic: str, *extra: str) -> int:
    """How many dead letters `countypool dlq list` counts."""
    code, out, err = run_cli(capsys, "dlq", "list", topic, *extra)
    assert code == 0, err
    return int(re.search(r"^(\d+) dead letters", out, re.M).group(1))


def envelope(widget: str, seq: int = 1) -> bytes:
    return new_envelope(WidgetAdded(widget_id=widget, seq=seq), subject=widget, source="/test").to_json()


def dead_letter(topic: str, key: bytes | None, value: bytes, reason: str, *, partition: int = 0,
                original_partition: int = 0, original_offset: int = 0, omitted: int | None = None) -> dict:
    headers = [("dlq-reason", reason.encode()), ("dlq-error", f"refused: {reason}".encode()),
               ("dlq-original-topic", topic.encode()), ("dlq-original-partition", str(original_partition).encode()),
               ("dlq-original-offset", str(original_offset).encode()), ("dlq-consumer-group", b"g-test")]
    if omitted is not None:
        headers.append(("dlq-value-omitted", str(omitted).encode()))
    return dict(topic=f"{topic}.dlq", key=key, value=value, headers=headers, partition=partition)


def produce(bootstrap: str, records: list[dict]) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    futures = [p.send(**r) for r in records]
    p.flush()
    for f in futures:
        f.get(timeout=30)
    p.close()


def on_topic(bootstrap: str, topic: str, expect: int) -> list:
    """What a topic holds, once ``expect`` records are there (read_all then waits a second more for extras)."""
    return read_all(bootstrap, topic, expect=expect, timeout=10)


@pytest.fixture
def cli_kafka(kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    return kafka_bootstrap


def test_a_second_redrive_sends_nothing_again(cli_kafka, unique_topic, capsys):
    produce(cli_kafka, [dead_letter(unique_topic, b"a", envelope("a"), "handler_error", partition=0),
                        dead_letter(unique_topic, b"b", envelope("b"), "handler_error", partition=1, original_partition=1)])
    assert listed(capsys, unique_topic) == 2

    code, out, err = run_cli(capsys, "dlq", "redrive", unique_topic)
    assert code == 0, err
    assert "re-drove 2 messages" in out
    code, out, err = run_cli(capsys, "dlq", "redrive", unique_topic)
    assert code == 0, err
    assert "re-drove 0 messages" in out

    copies = on_topic(cli_kafka, unique_topic, expect=2)
    assert sorted(r.key for r in copies) == [b"a", b"b"], "a second redrive sent the same dead letters again"
    assert listed(capsys, unique_topic) == 0  # nothing outstanding; the re-driven ones are not listed again


def test_a_letter_whose_value_was_omitted_is_refused_not_produced_empty(cli_kafka, unique_topic, capsys):
    good = envelope("good")
    produce(cli_kafka, [dead_letter(unique_topic, b"big", b"", "message_too_large", original_offset=41, omitted=3_000_000),
                        dead_letter(unique_topic, b"good", good, "handler_error", original_offset=42)])

    code, out, err = run_cli(capsys, "dlq", "redrive", unique_topic)

    assert code != 0, "a dead letter that could not be re-driven was passed over in silence"
    assert "no body" in err and "3000000 bytes" in err and f"{unique_topic}[0]@41" in err
    copies = on_topic(cli_kafka, unique_topic, expect=1)
    assert [(r.key, r.value) for r in copies] == [(b"good", good)], "an empty message was produced for the omitted body"
    # still outstanding (it needs the source to publish it again), the good one is not
    code, out, _ = run_cli(capsys, "dlq", "list", unique_topic)
    assert "1 dead letters" in out and "message_too_large" in out and "no body" in out


def test_redrive_keeps_the_original_partition(cli_kafka, unique_topic, capsys):
    key = b"k-1"
    hashed = (murmur2(key) & 0x7FFFFFFF) % 3
    original = (hashed + 1) % 3  # a publisher whose partitioner is not the Java client's put it here
    produce(cli_kafka, [dead_letter(unique_topic, key, envelope("k"), "handler_error", partition=2,
                                    original_partition=original, original_offset=7)])

    code, _, err = run_cli(capsys, "dlq", "redrive", unique_topic)
    assert code == 0, err

    [copy] = on_topic(cli_kafka, unique_topic, expect=1)
    assert copy.partition == original, "re-driven to another partition than the key's other messages"
    assert dict(copy.headers)["redriven-from"] == f"{unique_topic}.dlq[2]@0".encode()


def test_redrive_keeps_the_key_bytes(cli_kafka, unique_topic, capsys):
    key = b"\xff\xfe-not-utf8"  # a key is bytes: decoding it for display must not change what is sent
    value = envelope("k")
    produce(cli_kafka, [dead_letter(unique_topic, key, value, "handler_error",
                                    original_partition=(murmur2(key) & 0x7FFFFFFF) % 3)])

    code, _, err = run_cli(capsys, "dlq", "redrive", unique_topic)
    assert code == 0, err

    [copy] = on_topic(cli_kafka, unique_topic, expect=1)
    assert (copy.key, copy.value) == (key, value)


def test_the_whole_dead_letter_topic_is_read_and_filtered_by_reason(cli_kafka, unique_topic, capsys):
    produce(cli_kafka, [dead_letter(unique_topic, f"a{i}".encode(), envelope(f"a{i}"), "source_not_allowed")
                        for i in range(1000)]
            + [dead_letter(unique_topic, b"late", envelope("late"), "handler_error")])
    assert listed(capsys, unique_topic) == 1001
    assert listed(capsys, unique_topic, "--reason", "handler_error") == 1

    code, out, err = run_cli(capsys, "dlq", "redrive", unique_topic, "--reason", "handler_error")
    assert code == 0, err
    assert "re-drove 1 messages" in out
    copies = on_topic(cli_kafka, unique_topic, expect=1)
    assert [r.key for r in copies] == [b"late"], "another reason than asked was re-driven, or the asked one missed"
    assert listed(capsys, unique_topic, "--reason", "source_not_allowed") == 1000
    code, out, _ = run_cli(capsys, "dlq", "list", unique_topic, "--limit", "5")
    assert code == 0 and len(out.splitlines()) == 6 and "1000 dead letters (5 shown)" in out


def test_a_missing_topic_is_an_error(cli_kafka, capsys):
    code, out, err = run_cli(capsys, "dlq", "list", f"test.missing.{uuid.uuid4().hex[:8]}")
    assert code == 2 and "no dead-letter topic" in err, (code, out, err)


def test_redrive_to_a_topic_that_no_longer_exists_is_refused_and_creates_nothing(cli_kafka, capsys):
    gone = f"test.gone.{uuid.uuid4().hex[:10]}"
    ensure_topics(cli_kafka, [f"{gone}.dlq"], partitions=1)
    produce(cli_kafka, [dead_letter(gone, b"k", envelope("k"), "handler_error")])

    code, out, err = run_cli(capsys, "dlq", "redrive", gone)

    assert code == 2 and "does not exist" in err, (code, out, err)
    admin = KafkaAdminClient(bootstrap_servers=cli_kafka)
    try:
        assert gone not in admin.list_topics(), "the re-drive created the topic by producing to it"
    finally:
        admin.close()
    assert listed(capsys, gone) == 1


def test_end_to_end_a_relapse_stays_one_letter_and_the_fix_applies_once(cli_kafka, pg_url, unique_topic, capsys):
    """The real consumer dead-letters a message its handler refuses. Re-driven before the cause is fixed, it is
    dead-lettered again: one letter outstanding, not two (and four, and eight). Re-driven after the fix, it is
    applied once, and re-driving again changes nothing."""
    db, outbox = make_db(pg_url)
    broken = {"w"}

    def handler(ctx):
        if ctx.event.widget_id in broken:
            raise Rejected("widget_broken", "the widget service is broken")
        count_widget(ctx)

    def wait(what, until, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until():
                return
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}")

    produce(cli_kafka, [dict(topic=unique_topic, key=b"w", value=envelope("w"))])
    c = IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=cli_kafka, group_id=f"g-{unique_topic}",
                           topics=[unique_topic], handler=handler, max_attempts=1)
    c.start()
    try:
        wait("the first dead letter", lambda: c.stats.dead_lettered >= 1)  # counted once Kafka has it
        for relapse in (1, 2):
            code, _, err = run_cli(capsys, "dlq", "redrive", unique_topic)
            assert code == 0, err
            wait("the re-driven message dead-lettered again", lambda: c.stats.dead_lettered >= relapse + 1)
            assert listed(capsys, unique_topic) == 1, f"relapse {relapse}: the old letter is outstanding as well"

        broken.clear()  # the cause is fixed
        code, out, err = run_cli(capsys, "dlq", "redrive", unique_topic)
        assert code == 0 and "re-drove 1 messages" in out, (out, err)
        wait("the re-driven message applied", lambda: widget_counts(db) == {"w": 1})
        code, out, err = run_cli(capsys, "dlq", "redrive", unique_topic)
        assert code == 0 and "re-drove 0 messages" in out, (out, err)
        time.sleep(2)
        assert widget_counts(db) == {"w": 1}
        assert listed(capsys, unique_topic) == 0
        assert c.stats.dead_lettered == 3
    finally:
        c.stop(timeout=20)
        db.dispose()



def test_a_letter_is_marked_only_after_its_copy_is_acknowledged(cli_kafka, unique_topic, capsys, monkeypatch):
    """A crash, or a failure, between the copy and its marker loses nothing: the letter stays outstanding and
    the next re-drive sends it again (its consumer drops the repeat by its event id)."""
    import ops.kafka_ops as kafka_ops

    value = envelope("m")
    produce(cli_kafka, [dead_letter(unique_topic, b"m", value, "handler_error")])
    send = kafka_ops._send

    def marker_fails(p, topic, *args):
        if topic.endswith(".dlq"):
            return kafka_ops._Failed(RuntimeError("broker went away"))
        return send(p, topic, *args)

    monkeypatch.setattr(kafka_ops, "_send", marker_fails)
    code, out, err = run_cli(capsys, "dlq", "redrive", unique_topic)
    assert code == 1 and "re-drove 1 messages" in out and "not marked" in err, (out, err)
    assert listed(capsys, unique_topic) == 1

    monkeypatch.setattr(kafka_ops, "_send", send)
    code, out, err = run_cli(capsys, "dlq", "redrive", unique_topic)
    assert code == 0 and "re-drove 1 messages" in out, (out, err)
    assert listed(capsys, unique_topic) == 0
    assert [r.value for r in on_topic(cli_kafka, unique_topic, expect=2)] == [value, value]
