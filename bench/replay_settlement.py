"""Settlement's event store for the replay benchmark: ``write_events`` fills an empty, migrated settlement
database's outbox with N synthetic statement events, and (``live=True``, the default) the live rows those events
describe, so that a replay's comparison does real work and finds them equal.

Each county closes month after month. A month statement is 5 events: a draft, a re-draft (one more line), the
finalization's TransfersRequested (8 money lines: three revenue shares, an adjustment of the previous month, two
compensations, a proceeds share, a buy-back; plus a statistics line), its AdjustmentRecorded and its
SettlementFinalized. Fewer than 5 events left over become re-drafts of the next month. So 1.6 money lines per
event and ~1.9 KB per envelope. Envelopes are built as dicts in the shape the real contracts dump
(tests/integration/settlement/test_settlement_replay.py validates them) and written with COPY.

Usage:  .venv/bin/python bench/replay_settlement.py [--events 1000000] [--pg-url postgresql+psycopg://...]
        [--no-live] [--keep] [--database NAME]
Prints the fold's events/s (reading the outbox included), the compare time and peak memory. Figures only.
"""
from __future__ import annotations

import argparse
import hashlib
import random
import resource
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from services.settlement.storage import tables as t  # noqa: E402
from shared.amounts import format_amount  # noqa: E402
from shared.bulk import bulk_insert  # noqa: E402
from shared.db import Database  # noqa: E402

UTC = timezone.utc
CST = timezone(timedelta(hours=8))
MONTHS_PER_COUNTY = 60  # 2019-01 .. 2023-12
FIRST_YEAR = 2019
EVENTS_PER_STATEMENT = 5
CHUNK = 4_000  # statements per transaction
SOURCE = "/countypool/settlement"
POLICY = ("POL-bench", 1)


def _month(i: int) -> tuple[str, date, date]:
    y, m = FIRST_YEAR + i // 12, i % 12 + 1
    start = date(y, m, 1)
    end = (date(y + (m == 12), m % 12 + 1, 1)) - timedelta(days=1)
    return f"{y:04d}-{m:02d}", start, end


def _iso(d: datetime) -> str:
    """Envelope times, as pydantic writes UTC ones."""
    return d.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _cst(d: datetime) -> str:
    """Statement times: the service's clock is China Standard Time (services/settlement/clock.py)."""
    return d.astimezone(CST).isoformat()


class _Writer:
    def __init__(self, live: bool):
        self.live = live
        self.rng = random.Random(11)
        self.rows: dict[str, list[dict]] = {}
        self.seq = 0

    def add(self, table: str, row: dict) -> None:
        self.rows.setdefault(table, []).append(row)

    def event(self, name: str, topic: str, subject: str, data: dict, at: datetime, event_id: str | None = None) -> None:
        self.seq += 1
        eid = event_id or f"bench-{self.seq:09d}"
        ts = _iso(at)
        env = {"specversion": "1.0", "id": eid, "source": SOURCE, "type": f"countypool.{name}.v1", "subject": subject,
               "time": ts, "datacontenttype": "application/json",
               "aggregatetype": "transfer-batch" if name == "TransfersRequested" else "statement",
               "aggregateversion": 0, "correlationid": eid, "recordedat": ts, "producer": "settlement", "data": data}
        self.add("outbox", {"event_id": eid, "event_type": env["type"], "topic": topic, "key": subject,
                            "envelope": orjson.dumps(env).decode(), "created_at": at})

    def flush(self, db: Database) -> None:
        with db.sessions() as s, s.begin():
            for name, rows in self.rows.items():
                bulk_insert(s, t.metadata.tables[name], rows)
        self.rows = {}

    # -- one month statement ------------------------------------------------------------------------------
    def lines(self, county: str, label: str, prev: str) -> list[tuple]:
        """(kind, payer, payee, amount fen, month, allocation id, agreement id, tax kind, adjusts, sources)."""
        r = self.rng.randrange
        T1, T2, P, FUND = f"township:{county}101", f"township:{county}102", f"park:P{county}", f"county:{county}/fund"
        E1, E2 = f"enterprise:91{county}{r(10**9):010d}", f"enterprise:91{county}{r(10**9):010d}"
        PRJ, AG, alloc = f"project:PRJ-{county}-{label}", f"FD-{county}-1", f"REQ-{county}-{label}:LAND"
        return [
            ("revenue_share", P, T1, r(1, 10**9), label, None, AG, "VAT", None, (f"r-{county}-{label}-v",)),
            ("revenue_share", P, T1, r(1, 10**8), label, None, AG, "CIT", None, (f"r-{county}-{label}-c",)),
            ("revenue_share", P, T2, r(1, 10**8), label, None, f"FD-{county}-2", "VAT", None,
             (f"r2-{county}-{label}",)),
            ("adjustment", P, T1, r(1, 10**6), prev, None, AG, "VAT", "revenue_share", (f"r-{county}-{prev}-fix",)),
            ("compensation", PRJ, E1, r(1, 10**7), label, alloc, None, None, None, (alloc, f"L1-{county}-{label}")),
            ("compensation", PRJ, E2, r(1, 10**7), label, alloc, None, None, None, (alloc, f"L2-{county}-{label}")),
            ("proceeds_share", PRJ, FUND, r(1, 10**7), label, alloc, None, None, None, (alloc,)),
            ("buyback", FUND, E2, r(1, 10**6), label, None, None, None, None, (f"buyback:LB-{county}-{label}",)),
            ("statistics_share", P, T1, r(1, 10**8), label, None, AG, None, None, (f"va-{county}-{label}",)),
        ]

    @staticmethod
    def totals(lines: list[tuple]) -> tuple[dict, dict, int]:
        money: dict[str, list[int]] = {}
        stats: dict[tuple, list[int]] = {}
        total = 0
        for kind, payer, payee, amount, *_ in lines:
            if kind == "statistics_share":
                stats.setdefault((payee, "value_added"), [0, 0])[0] += amount
                stats.setdefault((payer, "value_added"), [0, 0])[1] += amount
                continue
            total += amount
            money.setdefault(payee, [0, 0])[0] += amount
            money.setdefault(payer, [0, 0])[1] += amount
        return dict(sorted(money.items())), dict(sorted(stats.items())), total

    def draft(self, county: str, label: str, lines: list[tuple], as_of: datetime) -> dict:
        money, stats, total = self.totals(lines)
        digest = hashlib.sha256(f"{county}/{label}/{len(lines)}/{total}".encode()).hexdigest()
        sid = f"{county}/{label}"
        data = {"statement_id": sid, "county_code": county, "period": label, "content_hash": digest,
                "line_count": len(lines), "total": format_amount(total, 2), "as_of": _cst(as_of),
                "policy_id": POLICY[0], "policy_version": POLICY[1], "unmatched_receipts": 0,
                "party_totals": [{"party": p, "receivable": format_amount(a, 2), "payable": format_amount(b, 2)}
                                 for p, (a, b) in money.items()],
                "statistics_totals": [{"party": p, "measure": m, "gained": format_amount(a, 2),
                                       "ceded": format_amount(b, 2)} for (p, m), (a, b) in stats.items()]}
        self.event("SettlementDrafted", "countypool.settlement.events", sid, data, as_of)
        return data

    def statement(self, county: str, i: int) -> None:
        label, start, end = _month(i)
        prev = _month(i - 1)[0] if i else label
        lines = self.lines(county, label, prev)
        at = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=2)
        self.draft(county, label, [ln for ln in lines if ln[0] != "buyback"], at - timedelta(minutes=30))
        d = self.draft(county, label, lines, at - timedelta(minutes=10))
        sid = d["statement_id"]
        accounts, transfers, money_lines = set(), [], []
        for no, ln in enumerate(lines, start=1):
            kind, payer, payee, amount, month, alloc = ln[:6]
            if kind == "statistics_share":
                continue
            debit, credit = f"{payer}/CNY", f"{payee}/CNY"
            accounts.update((debit, credit))
            md = {"county": county, "period": label, "line_no": str(no), "kind": kind, "month": month}
            if alloc:
                md["allocation_id"] = alloc
            tid = f"settlement:{county}:{label}:L{no:05d}"
            transfers.append({"transfer_id": tid, "debit_account": debit, "credit_account": credit, "asset": "CNY",
                              "amount": format_amount(amount, 2), "code": f"settlement.{kind}", "pending": False,
                              "timeout_seconds": 0, "post_pending_id": "", "void_pending_id": "", "linked": False,
                              "refs": [sid, *ln[9][:5]], "metadata": md})
            money_lines.append((tid, no, debit, credit, amount))
        self.event("TransfersRequested", "countypool.ledger.commands", sid, {
            "transfers": transfers, "open_accounts": [{"account_id": a, "asset": "CNY", "address": a[:-4], "flags": []}
                                                      for a in sorted(accounts)]},
            at, event_id=f"settlement:{county}:{label}:postings:1")
        for no, ln in enumerate(lines, start=1):
            kind, payer, payee, amount, month, alloc, agreement, tax, adjusts, sources = ln
            if kind == "adjustment":
                self.event("AdjustmentRecorded", "countypool.settlement.events", sid, {
                    "statement_id": sid, "county_code": county, "period": label, "adjusts_period": month,
                    "amount": format_amount(amount, 2), "sources": list(sources), "line_no": no, "payer": payer,
                    "payee": payee, "agreement_id": agreement, "tax_kind": tax, "adjusts": adjusts}, at)
        money, stats, total = self.totals(lines)
        self.event("SettlementFinalized", "countypool.settlement.events", sid, {
            "statement_id": sid, "county_code": county, "period": label, "content_hash": d["content_hash"],
            "line_count": len(lines), "total": d["total"], "finalized_at": _cst(at), "policy_id": POLICY[0],
            "policy_version": POLICY[1], "unmatched_receipts": 0, "statistics_totals": d["statistics_totals"]}, at)
        if not self.live:
            return
        self.header(county, label, start, end, "finalized", d["content_hash"], len(lines), total, at, at)
        for party, (a, b) in money.items():
            self.add("statement_totals", {"county_code": county, "period": label, "party": party, "receivable_fen": a,
                                          "payable_fen": b})
        for (party, measure), (a, b) in stats.items():
            self.add("statement_statistics", {"county_code": county, "period": label, "party": party,
                                              "measure": measure, "gained": a, "ceded": b})
        for no, ln in enumerate(lines, start=1):
            kind, payer, payee, amount, month, alloc, agreement, tax, adjusts, sources = ln
            self.add("statement_lines", {
                "county_code": county, "period": label, "line_no": no, "kind": kind, "payer": payer, "payee": payee,
                "amount_fen": amount, "agreement_id": agreement, "agreement_version": 1 if agreement else None,
                "tax_kind": tax, "month": month, "agreement_year": None, "adjusts": adjusts,
                "measure": "value_added" if kind == "statistics_share" else None, "allocation_id": alloc,
                "sources": orjson.dumps(list(sources)).decode(), "source_count": len(sources),
                "sources_digest": "0" * 64})
        for tid, no, debit, credit, amount in money_lines:
            self.add("ledger_postings", {"transfer_id": tid, "county_code": county, "period": label, "line_no": no,
                                         "debit_account": debit, "credit_account": credit, "amount_fen": amount,
                                         "status": "requested", "reason": None, "updated_at": at})

    def header(self, county, label, start, end, status, digest, n, total, as_of, finalized_at) -> None:
        self.add("statements", {
            "county_code": county, "period": label, "period_kind": "month", "period_start": start, "period_end": end,
            "status": status, "as_of": as_of, "finalized_at": finalized_at, "content_hash": digest,
            "policy_id": POLICY[0], "policy_version": POLICY[1], "line_count": n, "money_total_fen": total,
            "unmatched_receipts": 0, "computed_at": as_of, "computed_by": "bench"})

    def drafts_only(self, county: str, i: int, k: int) -> None:
        """``k`` drafts of one month left open (the last one is live)."""
        label, start, end = _month(i)
        lines = self.lines(county, label, _month(i - 1)[0] if i else label)
        at = datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
        for j in range(k):
            d = self.draft(county, label, lines[: 5 + j], at + timedelta(minutes=j))
        if self.live and k:
            money, stats, total = self.totals(lines[: 4 + k])
            self.header(county, label, start, end, "draft", d["content_hash"], 4 + k, total,
                        at + timedelta(minutes=k - 1), None)
            for party, (a, b) in money.items():
                self.add("statement_totals", {"county_code": county, "period": label, "party": party,
                                              "receivable_fen": a, "payable_fen": b})


def write_events(db: Database, n: int, *, live: bool = True) -> int:
    """Write ``n`` settlement events into the outbox of an empty, migrated database (and, with ``live``, the
    statement rows they describe); returns ``n``."""
    w = _Writer(live)
    full, rest = divmod(n, EVENTS_PER_STATEMENT)
    for s in range(full):
        county, i = f"{100000 + s // MONTHS_PER_COUNTY}", s % MONTHS_PER_COUNTY
        w.statement(county, i)
        if (s + 1) % CHUNK == 0:
            w.flush(db)
    if rest:
        w.drafts_only(f"{100000 + full // MONTHS_PER_COUNTY}", full % MONTHS_PER_COUNTY, rest)
    w.flush(db)
    if db.is_postgres:  # planner statistics, as a running database has them (the replay pages by position)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("ANALYZE")
    return n


# -- the benchmark ---------------------------------------------------------------------------------------------

def main() -> int:
    from bench.support import DEFAULT_PG, ScratchDatabases
    from services.settlement.main import MIGRATIONS
    from services.settlement.replay import rebuild
    from shared import migrations

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--no-live", action="store_true", help="outbox only: compare against empty live tables")
    ap.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    ap.add_argument("--database", help="replay a database kept by an earlier --keep run (nothing is written)")
    args = ap.parse_args()

    scratch = ScratchDatabases(args.pg_url, "replay_settlement")
    url = scratch.url_of(args.database) if args.database else scratch.create()
    db = Database(url, "settlement")
    try:
        if not args.database:
            migrations.upgrade(db, MIGRATIONS)
            t0 = time.perf_counter()
            write_events(db, args.events, live=not args.no_live)
            print(f"wrote {args.events:,} events{'' if args.no_live else ' and their live rows'} in "
                  f"{time.perf_counter() - t0:.1f} s ({db.engine.url.database})", flush=True)
        t1, c1 = time.perf_counter(), time.process_time()
        report = rebuild(db)
        wall, cpu = time.perf_counter() - t1, time.process_time() - c1
        rows = ", ".join(f"{m} {n:,}" for m, n in sorted(report.rows.items()))
        print(f"fold: {report.events_read:,} events in {report.fold_seconds:.2f} s = {report.events_per_second:,.0f} "
              f"events/s (reading the outbox included)\ncompare: {report.compare_seconds:.2f} s; "
              f"{len(report.differences):,} rows differ; rebuild total {wall:.2f} s wall, {cpu:.2f} s CPU of this "
              f"process (the rest: waiting for PostgreSQL or for a core)\n"
              f"money lines folded: {report.rows.get('money_lines', 0) / report.fold_seconds:,.0f}/s; peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB\nrows: {rows}")
        return 0
    finally:
        db.dispose()
        if args.keep:
            scratch.keep(url)
        scratch.close()


if __name__ == "__main__":
    sys.exit(main())
