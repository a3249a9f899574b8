"""Outbox relay throughput against raw kafka-python produce throughput, on PostgreSQL and SQLite.

Prints figures, never asserts timing. One run measures:

* raw:    ``make_producer(bootstrap)`` sending N pre-serialized envelopes to a fresh topic, then flush;
* write:  N events inserted into a fresh outbox with ``Outbox.add_many`` in transactions of --tx-size;
* relay:  ``OutboxRelay.drain()`` of those N rows with batch sizes 500 and 2000 (a fresh database and a
          fresh topic for each batch size, so every drain starts from the same state).

Usage:  .venv/bin/python bench/relay_throughput.py [--events 50000] [--bootstrap 127.0.0.1:9092]
        [--pg-url postgresql+psycopg://...] [--skip-postgres] [--skip-sqlite] [--profile]
Results go to bench/results/relay_throughput.json as well.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

from sqlalchemy import text  # noqa: E402

from bench.support import DEFAULT_PG, DbClock, ScratchDatabases, records_in, wait_for_kafka  # noqa: E402
from shared.envelope import new_envelope  # noqa: E402
from shared.kafka_admin import ensure_topics  # noqa: E402
from shared.outbox import OutboxRelay, make_producer  # noqa: E402
from tests.support.machinery import WidgetAdded, make_db, messaging  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "relay_throughput.json"
BATCH_SIZES = (500, 2000)
PARTITIONS = 3
AGGREGATES = 1000  # distinct keys, spread over the partitions


def make_envelopes(n: int) -> list:
    """N envelopes of the shape the outbox stores (the bench 'service' is the test machinery)."""
    out = []
    for i in range(n):
        key = f"widget-{i % AGGREGATES:05d}"
        out.append(new_envelope(WidgetAdded(widget_id=key, seq=i), subject=key, source="/countypool/bench",
                                producer="bench", aggregate_version=i // AGGREGATES))
    return out


def fresh_topic(bootstrap: str, label: str) -> str:
    name = f"bench.{label}.{uuid.uuid4().hex[:10]}"
    ensure_topics(bootstrap, [name], partitions=PARTITIONS)
    return name


def bench_raw(bootstrap: str, envelopes: list) -> dict:
    topic = fresh_topic(bootstrap, "raw")
    payload = [(e.subject.encode(), e.to_json()) for e in envelopes]
    producer = make_producer(bootstrap)
    try:
        producer.send(topic, key=b"warm-up", value=b"{}").get(timeout=30)  # metadata + connection, not timed
        t0 = time.perf_counter()
        futures = [producer.send(topic, key=k, value=v) for k, v in payload]
        producer.flush(timeout=120)
        elapsed = time.perf_counter() - t0
        failed = sum(1 for f in futures if f.failed())
    finally:
        producer.close(timeout=5)
    n = len(payload)
    return {"events": n, "seconds": elapsed, "events_per_s": n / elapsed, "failed": failed,
            "in_topic": records_in(bootstrap, topic) - 1,
            "avg_value_bytes": sum(len(v) for _, v in payload) / n}


def write_outbox(db, outbox, envelopes: list, topic: str, tx_size: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(envelopes), tx_size):
        with db.sessions() as s, s.begin():
            outbox.add_many(s, [(e, topic) for e in envelopes[i:i + tx_size]])
    return time.perf_counter() - t0


def pg_update_stats(db) -> dict:
    with db.engine.connect() as c:
        c.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        row = c.execute(text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'outbox'")).one()
        size = c.execute(text("SELECT pg_total_relation_size('outbox')")).scalar()
    return {"rows_updated": row.n_tup_upd, "hot_updates": row.n_tup_hot_upd, "outbox_total_bytes": size}


def bench_relay(backend: str, url: str, bootstrap: str, envelopes: list, batch_size: int, tx_size: int,
                profile: bool) -> dict:
    topic = fresh_topic(bootstrap, f"{backend}{batch_size}")
    db, outbox = make_db(url, service="bench")
    try:
        write_s = write_outbox(db, outbox, envelopes, topic, tx_size)
        if db.is_postgres:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("VACUUM ANALYZE outbox")  # as autovacuum would after a bulk load
            size_before = pg_update_stats(db)["outbox_total_bytes"]
        relay = OutboxRelay(db, messaging["outbox"], bootstrap, batch_size=batch_size)
        clock = DbClock(db.engine)
        try:
            relay._ensure_producer().partitions_for(topic)  # connection + metadata, not timed
            prof = cProfile.Profile() if profile else None
            clock.on = True
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            relay.drain(timeout=600)
            if prof:
                prof.disable()
            drain_s = time.perf_counter() - t0
            clock.on = False
        finally:
            relay.stop()
        n = len(envelopes)
        result = {"backend": backend, "batch_size": batch_size, "events": n,
                  "write_seconds": write_s, "write_events_per_s": n / write_s,
                  "drain_seconds": drain_s, "relay_events_per_s": n / drain_s,
                  "drain_db_seconds": clock.total, "drain_db_share": clock.total / drain_s,
                  "drain_db_breakdown": {k: {"seconds": round(v, 4), "calls": clock.calls[k]}
                                         for k, v in sorted(clock.seconds.items(), key=lambda kv: -kv[1])},
                  "in_topic": records_in(bootstrap, topic)}
        if db.is_postgres:
            db.engine.dispose()  # the relay's backends exit, so their table statistics are flushed
            time.sleep(0.2)
            stats = pg_update_stats(db)
            stats["outbox_bytes_before_drain"] = size_before
            result["postgresql_outbox"] = stats
        if prof:
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
            result["profile_top_tottime"] = buf.getvalue()
        return result
    finally:
        db.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_PG),
                    help="a PostgreSQL server URL; a throw-away database is created beside its database")
    ap.add_argument("--tx-size", type=int, default=1000, help="outbox rows per write transaction")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile each drain; print the top functions")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)  # chatty client warnings are not results

    wait_for_kafka(args.bootstrap)
    started = time.perf_counter()
    print(f"preparing {args.events:,} envelopes ...", flush=True)
    envelopes = make_envelopes(args.events)

    print("raw kafka-python produce ...", flush=True)
    raw = bench_raw(args.bootstrap, envelopes)

    relays: list[dict] = []
    pg_version = None
    with tempfile.TemporaryDirectory(prefix="cp-bench-") as tmp:
        if not args.skip_postgres:
            pg = ScratchDatabases(args.pg_url, "relay")
            try:
                pg_version = pg.settings()["server_version"]
                for bs in BATCH_SIZES:
                    print(f"postgresql: write + drain, batch {bs} ...", flush=True)
                    relays.append(bench_relay("postgresql", pg.create(), args.bootstrap, envelopes, bs,
                                              args.tx_size, args.profile))
            finally:
                pg.close()
        if not args.skip_sqlite:
            for bs in BATCH_SIZES:
                print(f"sqlite: write + drain, batch {bs} ...", flush=True)
                url = f"sqlite:///{Path(tmp) / f'bench-{bs}.sqlite3'}"
                relays.append(bench_relay("sqlite", url, args.bootstrap, envelopes, bs, args.tx_size, args.profile))

    for r in relays:
        r["relay_over_raw"] = r["relay_events_per_s"] / raw["events_per_s"]

    # -- report ------------------------------------------------------------------------------------
    print()
    print(f"events per run: {args.events:,}   avg envelope: {raw['avg_value_bytes']:.0f} B   "
          f"partitions: {PARTITIONS}   cores: {os.cpu_count()}")
    print(f"raw produce (make_producer, send+flush): {raw['events_per_s']:>10,.0f} events/s "
          f"({raw['seconds']:.2f} s, {raw['failed']} failed, {raw['in_topic']:,} in topic)")
    print()
    head = f"{'backend':<11} {'batch':>5} {'outbox write ev/s':>18} {'relay drain ev/s':>17} {'drain s':>8} " \
           f"{'db share':>8} {'relay/raw':>9} {'in topic':>9}"
    print(head)
    print("-" * len(head))
    for r in relays:
        print(f"{r['backend']:<11} {r['batch_size']:>5} {r['write_events_per_s']:>18,.0f} "
              f"{r['relay_events_per_s']:>17,.0f} {r['drain_seconds']:>8.2f} {r['drain_db_share']:>8.0%} "
              f"{r['relay_over_raw']:>9.2f} "
              f"{r['in_topic']:>9,}")
        if r["in_topic"] != r["events"]:
            print(f"  ! topic holds {r['in_topic']:,} records, expected {r['events']:,}")
    print("\ndb share = time inside the database driver (statements + commits) / drain time; the rest is")
    print("mostly the Kafka client (send + flush). Database time by statement:")
    for r in relays:
        parts = ", ".join(f"{k} {v['seconds']:.2f}s/{v['calls']}" for k, v in r["drain_db_breakdown"].items())
        print(f"  {r['backend']:<11} {r['batch_size']:>5}: {parts}")
        if "postgresql_outbox" in r:
            p = r["postgresql_outbox"]
            print(f"  {'':<11} {'':>5}  outbox rows updated {p['rows_updated']:,} (HOT {p['hot_updates']:,}), "
                  f"size {p['outbox_bytes_before_drain'] / 2**20:.1f} -> {p['outbox_total_bytes'] / 2**20:.1f} MiB")
    if args.profile:
        for r in relays:
            print(f"\n--- profile: {r['backend']} batch {r['batch_size']} (top by own time) ---")
            print(r.pop("profile_top_tottime"))
    total = time.perf_counter() - started
    print(f"\ntotal bench time {total:.1f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": "relay_throughput",
        "at": datetime.now(timezone.utc).isoformat(),
        "events": args.events,
        "tx_size": args.tx_size,
        "bootstrap": args.bootstrap,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "postgresql_version": pg_version,
        "raw": raw,
        "relay": [{k: v for k, v in r.items() if k != "profile_top_tottime"} for r in relays],
        "total_seconds": total,
    }
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(doc, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"results written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
