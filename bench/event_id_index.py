"""Random (version 4) against time-ordered (version 7) event ids in a long-lived outbox's unique index.

The outbox is each service's event store and is never emptied, so its unique index on event_id (and each
consumer's inbox, keyed the same way) grows for years. This bench gives a PostgreSQL table shaped like the
outbox a history of --history rows, then times writing --events more in transactions of --tx-size, once
with random ids as the platform made them before, once with shared.envelope.new_event_ids. It prints
events/s, WAL bytes per event and the index's size for each, and their ratio; never asserts timing.

Usage:  .venv/bin/python bench/event_id_index.py [--history 2000000] [--events 200000] [--tx-size 1000]
        [--pg-url postgresql+psycopg://...]
Results go to bench/results/event_id_index.json as well.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from shared.envelope import new_event_ids  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "event_id_index.json"
DEFAULT_PG = "postgresql://countypool:countypool@127.0.0.1:55432/countypool_test"
ENVELOPE = "x" * 600  # about an outbox row's envelope


def random_ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def ordered_ids(n: int, tx_size: int) -> list[str]:
    # as services make them: one call per transaction
    return [i for k in range(0, n, tx_size) for i in new_event_ids(min(tx_size, n - k))]


def run(conn: psycopg.Connection, kind: str, history: int, events: int, tx_size: int) -> dict:
    make = random_ids if kind == "v4" else (lambda n: ordered_ids(n, tx_size))
    table = f"bench_outbox_{kind}"
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (position bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, "
                 f"envelope text NOT NULL)")
    conn.commit()
    with conn.cursor().copy(f"COPY {table} (event_id, envelope) FROM STDIN") as copy:
        for eid in make(history):
            copy.write_row((eid, "h"))
    conn.commit()
    conn.autocommit = True
    conn.execute(f"VACUUM ANALYZE {table}")
    conn.execute("CHECKPOINT")  # every page's first change afterwards is logged whole, as in a running system
    conn.autocommit = False
    ids = make(events)
    lsn0 = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    started = time.perf_counter()
    with conn.cursor() as cur:
        for k in range(0, events, tx_size):
            cur.executemany(f"INSERT INTO {table} (event_id, envelope) VALUES (%s, %s)",
                            [(i, ENVELOPE) for i in ids[k:k + tx_size]])
            conn.commit()
    seconds = time.perf_counter() - started
    wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [lsn0]).fetchone()[0]
    index = conn.execute(f"SELECT pg_relation_size('{table}_event_id_key')").fetchone()[0]
    conn.execute(f"DROP TABLE {table}")
    conn.commit()
    return {"ids": kind, "events_per_s": round(events / seconds), "seconds": round(seconds, 3),
            "wal_bytes_per_event": round(int(wal) / events), "index_mib": round(index / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", type=int, default=2_000_000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--tx-size", type=int, default=1000)
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_PG).replace("+psycopg", ""))
    args = ap.parse_args()
    with psycopg.connect(args.pg_url) as conn:
        shared_buffers = conn.execute("SHOW shared_buffers").fetchone()[0]
        runs = [run(conn, kind, args.history, args.events, args.tx_size) for kind in ("v4", "v7")]
    v4, v7 = runs
    print(f"{args.history:,} rows of history, {args.events:,} events written in transactions of {args.tx_size:,}, "
          f"shared_buffers {shared_buffers}")
    print(f"{'ids':4} {'events/s':>10} {'WAL B/event':>12} {'index MiB':>10}")
    for r in runs:
        print(f"{r['ids']:4} {r['events_per_s']:>10,} {r['wal_bytes_per_event']:>12,} {r['index_mib']:>10}")
    print(f"v7/v4: {v7['events_per_s'] / v4['events_per_s']:.2f}x events/s, "
          f"{v4['wal_bytes_per_event'] / v7['wal_bytes_per_event']:.2f}x less WAL per event")
    result = {"bench": "event_id_index", "at": datetime.now(timezone.utc).isoformat(), "history": args.history,
              "events": args.events, "tx_size": args.tx_size, "shared_buffers": shared_buffers, "runs": runs,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_1m": round(os.getloadavg()[0], 2)}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
