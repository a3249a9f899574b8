"""Errors from the raw psycopg paths (COPY, pipelines: shared.bulk, the ledger's batch writes) are database errors
like SQLAlchemy's: a connection lost under a handler retries the whole batch (never a dead letter of a message the
database could not see), and a deadlock is retried by the unit of work."""
from __future__ import annotations

import sqlite3
import time

import psycopg
import pytest
from kafka import KafkaProducer
from sqlalchemy import text

from shared.consumer import IdempotentConsumer
from shared.db import database_unavailable, over_a_limit, retry_reason, run_with_retry
from shared.envelope import new_envelope
from tests.support.machinery import WidgetAdded, count_widget, drain, make_db, messaging, widget_counts


def test_a_connection_lost_under_a_raw_statement_retries_the_batch(pg_url, kafka_bootstrap, unique_topic):
    db, outbox = make_db(pg_url)
    calls = {"n": 0}

    def handler(ctx):
        calls["n"] += 1
        raw = ctx.session.connection().connection.driver_connection
        if calls["n"] == 1:  # the database drops this connection (a restart, a failover) under the raw path
            with db.engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": raw.info.backend_pid})
                other.commit()
        raw.execute("SELECT 1")
        count_widget(ctx)

    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    p.send(unique_topic, key=b"w1", value=new_envelope(WidgetAdded(widget_id="w1", seq=1), subject="w1",
                                                       source="/test").to_json())
    p.flush()
    p.close()
    c = IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=kafka_bootstrap, group_id=f"g-{unique_topic}",
                           topics=[unique_topic], handler=handler, max_attempts=2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and c.stats.applied + c.stats.dead_lettered < 1:
        try:
            c.poll_once(timeout_ms=300)
        except Exception:  # noqa: BLE001 - a poll that fails is polled again, as the consumer's loop does
            pass
    c.stop()
    assert (c.stats.applied, c.stats.dead_lettered) == (1, 0)
    assert widget_counts(db) == {"w1": 1}


@pytest.mark.parametrize("error, reason", [(psycopg.errors.DeadlockDetected, "deadlock_detected"),
                                           (psycopg.errors.SerializationFailure, "serialization_failure")])
def test_raw_transient_errors_are_retried(error, reason):
    assert retry_reason(error("raw")) == reason
    attempts = []

    def once():
        attempts.append(1)
        if len(attempts) < 3:
            raise error("raw")
        return "done"

    assert run_with_retry("test", once) == "done" and len(attempts) == 3


@pytest.mark.parametrize("error", [psycopg.errors.UniqueViolation("raw"), sqlite3.IntegrityError("UNIQUE constraint failed: t.id")])
def test_a_key_another_writer_took_runs_the_transaction_again_twice_at_most(error):
    """The re-run reads the row the other writer inserted (a re-send answered as one); a key that breaks on every
    run is the caller's 409 after the third, not an endless loop."""
    attempts = []

    def once(succeed_on: int):
        attempts.append(1)
        if len(attempts) < succeed_on:
            raise error
        return "done"

    assert run_with_retry("test", lambda: once(3)) == "done" and len(attempts) == 3
    attempts.clear()
    with pytest.raises(type(error)):
        run_with_retry("test", lambda: once(10))
    assert len(attempts) == 3

    def not_null():
        attempts.append(1)
        raise sqlite3.IntegrityError("NOT NULL constraint failed: t.x")

    attempts.clear()
    with pytest.raises(sqlite3.IntegrityError):  # another constraint is this request's data: no re-run
        run_with_retry("test", not_null)
    assert len(attempts) == 1


def test_a_raw_data_error_dead_letters_the_message_as_a_database_refusal(db_url, kafka_bootstrap, unique_topic):
    """What the database refuses about this message's data (a value too long for COPY) is the message's fault:
    dead-lettered at once as invalid_value (HTTP's 422 for the same refusal) with the driver's error, the rest of the
    batch applied."""
    from tests.support.machinery import read_all

    db, outbox = make_db(db_url)

    def handler(ctx):
        if ctx.event.widget_id == "bad":
            raise psycopg.errors.StringDataRightTruncation("value too long for type character varying(200)")
        count_widget(ctx)

    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for w in ("ok", "bad"):
        p.send(unique_topic, key=w.encode(), value=new_envelope(WidgetAdded(widget_id=w, seq=1), subject=w,
                                                                 source="/test").to_json())
    p.flush()
    p.close()
    c = IdempotentConsumer(db=db, tables=messaging, outbox=outbox, bootstrap=kafka_bootstrap, group_id=f"g-{unique_topic}",
                           topics=[unique_topic], handler=handler, max_attempts=2)
    try:
        drain(c, lambda: c.stats.applied + c.stats.dead_lettered >= 2)
    finally:
        c.stop()
    assert widget_counts(db) == {"ok": 1}
    letters = read_all(kafka_bootstrap, f"{unique_topic}.dlq", expect=1)
    headers = dict(letters[0].headers)
    assert headers["dlq-reason"] == b"invalid_value"
    assert b"StringDataRightTruncation: value too long" in headers["dlq-error"]


def test_a_sqlite_sum_past_64_bits_is_the_statements_data_not_a_lost_database():
    """SQLite raises its "integer overflow" as an OperationalError, the class of a lost connection: a draft summing
    recorded figures past a BIGINT was answered 503 "retry", which can never help. It is a data error (422)."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(6 * 10**18,), (6 * 10**18,)])
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("SELECT sum(v) FROM t").fetchone()
    assert over_a_limit(caught.value) and not database_unavailable(caught.value)
    locked = sqlite3.OperationalError("database is locked")
    assert database_unavailable(locked) and not over_a_limit(locked)
