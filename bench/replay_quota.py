"""Replay of the quota service from a million events: how fast ``services.quota.replay.rebuild`` folds its outbox.

``write_events(db, n)`` fills an empty, migrated quota database with exactly n synthetic but consistent events
of every type the projection folds — per block of one county: releases (free with a retired share, paid with a
buy-back, some held or rejected), a reclamation lot, their ledger intake commands, then requests that are
allocated over those lots (FIFO), refused, cancelled, expired, left reserved / reserving / waiting — and the
live rows the service would hold for them, so that the rebuild compares equal. Envelopes are written as JSON
directly (the shape ``Envelope.to_json`` gives; they decode with the real contracts) with COPY.

Usage:  .venv/bin/python bench/replay_quota.py [--events 1000000] [--pg-url URL] [--profile]
        [--out bench/results/replay_quota.json]
A throw-away PostgreSQL database beside ``TEST_DATABASE_URL`` (or ``--pg-url``) is created and dropped.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from sqlalchemy import Table  # noqa: E402

from services.quota.domain.assets import ASSETS, confirming_approval  # noqa: E402
from services.quota.domain.identifiers import credit_code_check_char  # noqa: E402
from services.quota.domain.lots import retired_part  # noqa: E402
from services.quota.domain.provenance import amount_due_fen  # noqa: E402
from services.quota.storage import tables as T  # noqa: E402
from shared.amounts import format_amount, split_by_weights  # noqa: E402
from shared.bulk import bulk_insert  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.envelope import latest  # noqa: E402
from shared.outbox import mark_all_published  # noqa: E402

COUNTIES = [f"32{i:04d}" for i in range(600, 650)]
PRICE_FEN = {"COD": 1_200_000, "ENERGY": 50_000, "LAND": 3_000_000}  # county prices per display unit
COD_RETIRE_BP = 2000
FLUSH_EVENTS = 20_000
DEMAND = ("allocated", "allocated", "allocated", "rejected", "cancelled", "reservation_expired",
          "request_expired", "reserved", "reserving", "waiting")
NAMES = ("QuotaReleased", "LotCreated", "QuotaRetired", "BuybackOwed", "QuotaRequested", "QuotaReserved",
         "QuotaAllocated", "QuotaRequestRejected", "QuotaReservationCancelled", "QuotaReservationExpired",
         "QuotaRequestExpired", "TransfersRequested")


def _qty(asset: str, units: int) -> str:
    return format_amount(units, ASSETS[asset].scale)


def _cny(fen: int) -> str:
    return format_amount(fen, 2)


class _Writer:
    """Buffers outbox rows and live rows, and writes them with COPY a chunk at a time."""

    def __init__(self, db: Database, live: bool):
        self.db, self.live = db, live
        self.now = datetime.now(timezone.utc)
        self.stamp = self.now.isoformat().replace("+00:00", "Z")
        self.prefix = uuid.uuid4().hex[:8]
        self.meta = {n: (latest(n).type_name(), latest(n).topic, latest(n).aggregate_type) for n in NAMES}
        self.events = 0
        self.outbox: list[dict] = []
        self.rows: dict[Table, list[dict]] = defaultdict(list)

    def emit(self, name: str, subject: str, data: dict) -> None:
        type_, topic, aggregate = self.meta[name]
        eid = f"{self.prefix}-{self.events:09d}"
        env = {"specversion": "1.0", "id": eid, "source": "/countypool/quota", "type": type_, "subject": subject,
               "time": self.stamp, "datacontenttype": "application/json", "aggregatetype": aggregate,
               "aggregateversion": 0, "correlationid": eid, "recordedat": self.stamp, "producer": "quota",
               "data": data}
        self.outbox.append({"event_id": eid, "event_type": type_, "topic": topic, "key": subject,
                            "envelope": orjson.dumps(env).decode(), "created_at": self.now})
        self.events += 1

    def row(self, table: Table, **values) -> None:
        if self.live:
            self.rows[table].append(values)

    def flush(self) -> None:
        with self.db.sessions() as s, s.begin():
            bulk_insert(s, T.messaging["outbox"], self.outbox)
            for table, rows in self.rows.items():
                bulk_insert(s, table, rows)
            # a relay pointed at this database must not send a million synthetic events
            mark_all_published(s)
        self.outbox.clear()
        self.rows.clear()


class _Block:
    """One county's slice: its lots, then requests drawing on them."""

    def __init__(self, w: _Writer, blk: int, rng: random.Random):
        self.w, self.blk, self.rng = w, blk, rng
        self.county = COUNTIES[blk % len(COUNTIES)]
        # per asset: [lot_id, remaining, source kind, source ref, township, dated], in date order
        self.lots: dict[str, list] = {"COD": [], "ENERGY": [], "LAND": []}
        self.lot_rows: dict[str, dict] = {}

    # -- supply ------------------------------------------------------------------------------------
    def credit_code(self, i: int) -> str:
        body = f"91{self.county}MA{(self.blk * 10 + i) % 10_000_000:07d}"
        return body + credit_code_check_char(body)

    def transfers(self, subject_ref: str, moves: list[tuple], *, pending: bool = False, timeout: int = 0,
                  post: bool = False, void: bool = False) -> list[dict]:
        """moves: (transfer_id, code, debit, credit, asset, amount). A chain unless these are voids."""
        specs, accounts = [], {}
        for i, (tid, code, debit, credit, asset, amount) in enumerate(moves):
            pend = moves[i][0].replace("/post/", "/reserve/").replace("/void/", "/reserve/")
            specs.append({"transfer_id": tid, "debit_account": debit, "credit_account": credit, "asset": asset,
                          "amount": _qty(asset, amount), "code": code, "pending": pending, "timeout_seconds": timeout,
                          "post_pending_id": pend if post else "", "void_pending_id": pend if void else "",
                          "linked": not void and i < len(moves) - 1, "refs": [subject_ref],
                          "metadata": {"county_code": self.county}})
            for acc in (debit, credit):
                accounts.setdefault(acc, {"account_id": acc, "asset": asset, "address": acc.rsplit("/", 1)[0],
                                          "flags": None})
        self.w.emit("TransfersRequested", specs[0]["transfer_id"], {"transfers": specs,
                                                                    "open_accounts": list(accounts.values())})
        purpose = {"quota_release_intake": "intake", "quota_reclamation_intake": "intake", "quota_retire": "retire",
                   "quota_reserve": "reserve", "quota_allocate": "post", "quota_void_reservation": "void"}
        for tid, code, debit, credit, asset, amount in moves:
            p = purpose[code]
            lot = subject_ref if p in ("intake", "retire") else None
            self.w.row(T.ledger_transfers, transfer_id=tid, purpose=p, county_code=self.county, asset=asset,
                       amount=amount, debit_account=debit, credit_account=credit,
                       request_id=None if lot else subject_ref, lot_id=lot,
                       state="pending" if pending else "posted", ledger_reason=None, asked_at=self.w.now,
                       answered_at=self.w.now)
        return specs

    def release(self, i: int, asset: str, status: str, *, paid: bool = False) -> None:
        w, county, rng = self.w, self.county, self.rng
        rid, township, code = f"R{self.blk}-{i}", f"{county}1{i % 10:02d}", self.credit_code(i)
        amount = rng.randint(1, 500_000) * (10 if asset == "COD" else 1)
        price = rng.randint(100, 2000) * 100 if paid else None
        dated = f"2024-{1 + i % 12:02d}-{1 + self.blk % 28:02d}"
        reason = "upgrade_savings" if paid else "closure"
        why = {"accepted": "verification_not_required" if paid else "accepted_unverified",
               "pending_verification": "exit_not_known", "rejected": "exit_not_known"}[status]
        dept = "ecology" if asset == "COD" else "development_reform"
        w.emit("QuotaReleased", rid, {
            "release_id": rid, "enterprise_credit_code": code, "township_code": township, "county_code": county,
            "asset": asset, "amount": _qty(asset, amount), "reason": reason, "basis": "paid" if paid else "free",
            "status": status, "status_reason": why, "department": dept,
            "buyback_price_per_unit": None if price is None else _cny(price),
            "document_ref": f"通环收〔2024〕{i}号", "released_on": dated})
        w.row(T.releases, release_id=rid, department=dept, submitted_by="bench", enterprise_credit_code=code,
              township_code=township, county_code=county, asset=asset, amount=amount, reason=reason,
              basis="paid" if paid else "free", buyback_price_fen=price, document_ref=f"通环收〔2024〕{i}号",
              released_on=datetime.fromisoformat(dated).date(), status=status, status_reason=why, digest="0" * 64,
              received_at=w.now, decided_at=w.now)
        if status == "accepted":
            self.lot(f"release:{rid}", rid, asset, amount, "enterprise", code, township, dated, price)

    def reclamation(self) -> None:
        pid, township = f"RC{self.blk}", f"{self.county}101"
        area = self.rng.randint(10_000, 500_000)
        dated = f"2024-05-{1 + self.blk % 28:02d}"
        self.w.row(T.reclamation_projects, project_id=pid, county_code=self.county, township_code=township, area=area,
                   registered_on=datetime(2024, 1, 2).date(), state="accepted",
                   accepted_on=datetime.fromisoformat(dated).date(), accepted_area=area, document_ref="验收",
                   digest="0" * 64, registered_by="bench")
        self.lot(f"reclamation:{pid}", pid, "LAND", area, "reclamation", pid, township, dated, None)

    def lot(self, lot_id: str, origin: str, asset: str, amount: int, kind: str, ref: str, township: str, dated: str,
            price: int | None) -> None:
        w, county = self.w, self.county
        retired = retired_part(amount, COD_RETIRE_BP) if asset == "COD" else 0
        w.emit("LotCreated", lot_id, {
            "lot_id": lot_id, "county_code": county, "asset": asset, "amount": _qty(asset, amount),
            "retired": _qty(asset, retired), "source_kind": "release" if kind == "enterprise" else "reclamation",
            "source_ref": ref, "township_code": township, "dated": dated, "basis": "paid" if price else "free",
            "buyback_price_per_unit": None if price is None else _cny(price)})
        if retired:
            w.emit("QuotaRetired", lot_id, {"lot_id": lot_id, "county_code": county, "asset": asset,
                                            "amount": _qty(asset, retired)})
        if price is not None:
            w.emit("BuybackOwed", lot_id, {
                "lot_id": lot_id, "county_code": county, "enterprise_credit_code": ref, "township_code": township,
                "asset": asset, "amount": _qty(asset, amount),
                "amount_due": _cny(amount_due_fen(asset, amount, price))})
        pool = f"county:{county}/pool/{asset}"
        source = "external:land-reclamation" if kind == "reclamation" else "external:rights-register"
        code = "quota_reclamation_intake" if kind == "reclamation" else "quota_release_intake"
        moves = [(f"quota/intake/{lot_id}", code, f"{source}/{asset}", pool, asset, amount)]
        if retired:
            moves.append((f"quota/retire/{lot_id}", "quota_retire", pool, f"county:{county}/retired/{asset}", asset,
                          retired))
        self.transfers(lot_id, moves)
        self.lots[asset].append([lot_id, amount - retired, kind, ref, township, dated])
        self.lot_rows[lot_id] = dict(
            lot_id=lot_id, county_code=county, asset=asset, amount=amount, retired=retired, remaining=amount - retired,
            source_kind=kind, source_ref=ref, township_code=township, dated=datetime.fromisoformat(dated).date(),
            basis="paid" if price else "free", buyback_price_fen=price, origin_id=origin, ledger_state="booked",
            created_at=w.now)

    # -- demand ------------------------------------------------------------------------------------
    def request(self, j: int, kind: str) -> None:
        w, county, rng = self.w, self.county, self.rng
        rid, pid = f"Q{self.blk}-{j}", f"P{self.blk}-{j}"
        if kind == "allocated":
            have = [a for a, lots in self.lots.items() if sum(x[1] for x in lots) > 0]
            assets = rng.sample(have, min(len(have), rng.choice((1, 1, 2)))) if have else []
            if not assets:
                kind, assets = "waiting", ["COD"]
            lines = [(a, rng.randint(1, sum(x[1] for x in self.lots[a])) if kind == "allocated" else 10_000)
                     for a in assets]
        else:
            lines = [(a, rng.randint(1, 100_000)) for a in rng.sample(["COD", "ENERGY", "LAND"], rng.choice((1, 2)))]
        ids = {"request_id": rid, "project_id": pid, "county_code": county}
        lines_out = [{"asset": a, "amount": _qty(a, n), "approval_kind": confirming_approval(a).value}
                     for a, n in lines]
        w.emit("QuotaRequested", rid, {**ids, "lines": lines_out})
        for pos, (a, n) in enumerate(lines):
            w.row(T.request_lines, request_id=rid, asset=a, position=pos, amount=n,
                  approval_kind=confirming_approval(a).value)
        moves = [(f"quota/reserve/{rid}/{a}", "quota_reserve", f"county:{county}/pool/{a}", f"project:{pid}/{a}", a, n)
                 for a, n in lines]
        state, reason = kind, None
        if kind in ("allocated", "cancelled", "reservation_expired", "reserved", "reserving"):
            self.transfers(rid, moves, pending=True, timeout=5_184_000)
        if kind in ("allocated", "cancelled", "reserved"):
            w.emit("QuotaReserved", rid, {**ids, "lines": lines_out, "expires_at": self.w.stamp})
        if kind == "allocated":
            self.transfers(rid, [(m[0].replace("/reserve/", "/post/"), "quota_allocate", *m[2:]) for m in moves],
                           post=True)
            for a, n in lines:
                self.allocate(rid, pid, a, n)
        elif kind == "rejected":
            reason = "insufficient_quota"
            w.emit("QuotaRequestRejected", rid, {**ids, "reason": reason})
        elif kind in ("cancelled", "reservation_expired"):
            reason = "withdrawn" if kind == "cancelled" else "deadline_passed"
            name = "QuotaReservationCancelled" if kind == "cancelled" else "QuotaReservationExpired"
            w.emit(name, rid, {**ids, "reason": reason})
            self.transfers(rid, [(m[0].replace("/reserve/", "/void/"), "quota_void_reservation", *m[2:])
                                 for m in moves], void=True)
            state = "cancelled" if kind == "cancelled" else "expired"
        elif kind == "request_expired":
            reason, state = "deadline_passed", "expired"
            w.emit("QuotaRequestExpired", rid, {**ids, "reason": reason})
        elif kind == "waiting":
            state = "requested"
        held = kind in ("allocated", "reserved")
        reserved = kind in ("allocated", "cancelled", "reserved")  # QuotaReserved: the deadline is its expires_at
        w.row(T.quota_requests, request_id=rid, project_id=pid, county_code=county, state=state,
              requested_at=w.now, deadline=w.now if reserved else w.now + timedelta(days=30), approvals="[]",
              reserved_assets=json.dumps(sorted(a for a, _ in lines)) if held else "[]", reason=reason,
              updated_at=w.now, project_admitted=True, project_class="A", tax_per_mu_fen=15_000_000,
              industry_code="C39", park_id="park-1", digest="0" * 64, requested_by="bench",
              reserved_at=w.now if reserved else None)

    def allocate(self, rid: str, pid: str, asset: str, amount: int) -> None:
        w, county = self.w, self.county
        taken, need = [], amount
        for lot in self.lots[asset]:  # FIFO: the block's lots were made in date order per asset
            if need == 0:
                break
            part = min(need, lot[1])
            if part:
                lot[1] -= part
                need -= part
                taken.append((lot, part))
        due = amount_due_fen(asset, amount, PRICE_FEN[asset])
        shares = split_by_weights(due, [(lot[0], part) for lot, part in taken], remainder_to=taken[0][0][0])
        out = []
        for lot, part in taken:
            lot_id, _, kind, ref, township, _ = lot
            out.append({"lot_id": lot_id, "source_kind": "release" if kind == "enterprise" else "reclamation",
                        "source_ref": ref, "township_code": township, "amount": _qty(asset, part),
                        "amount_due": _cny(shares[lot_id])})
            w.row(T.consumptions, request_id=rid, project_id=pid, county_code=county, lot_id=lot_id, asset=asset,
                  source_kind=kind, source_ref=ref, township_code=township, amount=part, amount_due_fen=shares[lot_id],
                  allocated_at=w.now)
            self.lot_rows[lot_id]["remaining"] = lot[1]
        w.emit("QuotaAllocated", rid, {
            "request_id": rid, "project_id": pid, "county_code": county, "asset": asset, "amount": _qty(asset, amount),
            "price_per_unit": _cny(PRICE_FEN[asset]), "amount_due": _cny(due), "park_id": "park-1", "lots": out,
            "allocated_on": "2024-06-01"})
        w.row(T.allocations, request_id=rid, asset=asset, project_id=pid, county_code=county, amount=amount,
              price_fen_per_unit=PRICE_FEN[asset], amount_due_fen=due, allocated_on=datetime(2024, 6, 1).date(),
              allocated_at=w.now)

    def run(self) -> None:
        rng = self.rng
        self.release(0, "COD", "accepted")
        self.release(1, "COD", "accepted")
        self.release(2, "ENERGY", "accepted", paid=True)
        self.reclamation()
        if rng.random() < 0.3:
            self.release(3, "COD", rng.choice(("pending_verification", "rejected")))
        kinds = list(DEMAND)
        rng.shuffle(kinds)
        for j, kind in enumerate(kinds):
            self.request(j, kind)
        for row in self.lot_rows.values():
            self.w.row(T.lots, **row)


def write_events(db: Database, n: int, *, live: bool = True, seed: int = 42) -> int:
    """Write exactly ``n`` events into the outbox of an empty, migrated quota database (and, with ``live``,
    the rows the service would hold for them). Returns how many events were written."""
    w = _Writer(db, live)
    rng = random.Random(seed)
    blk = 0
    while w.events < n:
        mark = (len(w.outbox), {t: len(r) for t, r in w.rows.items()}, w.events)
        _Block(w, blk, rng).run()
        blk += 1
        if w.events > n:  # the block does not fit: undo it and end with waiting requests (1 event each)
            del w.outbox[mark[0]:]
            for t in list(w.rows):
                del w.rows[t][mark[1].get(t, 0):]
            w.events = mark[2]
            tail = _Block(w, blk, rng)
            j = 0
            while w.events < n:
                tail.request(j, "waiting")
                j += 1
        if len(w.outbox) >= FLUSH_EVENTS or w.events >= n:
            w.flush()
    return w.events


# -- the benchmark ---------------------------------------------------------------------------------
def main() -> None:
    import cProfile
    import pstats

    from bench.support import DEFAULT_PG, ScratchDatabases
    from services.quota.main import MIGRATIONS
    from services.quota.replay import rebuild
    from shared import migrations

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_PG))
    ap.add_argument("--profile", action="store_true", help="cProfile the rebuild (slower; top 25 by own time)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "replay_quota.json"))
    args = ap.parse_args()

    scratch = ScratchDatabases(args.pg_url, "replay_quota")
    db = Database(scratch.create(), "quota")
    try:
        migrations.upgrade(db, MIGRATIONS)
        t0 = time.perf_counter()
        written = write_events(db, args.events)
        write_s = time.perf_counter() - t0
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")  # as autovacuum would after a bulk load
        print(f"wrote {written:,} events (and their live rows) in {write_s:.1f} s")
        prof = cProfile.Profile() if args.profile else None
        t1 = time.perf_counter()
        if prof:
            prof.enable()
        report = rebuild(db)
        if prof:
            prof.disable()
        total_s = time.perf_counter() - t1
        print(f"fold: {report.events_read:,} events in {report.fold_seconds:.2f} s = "
              f"{report.events_per_second:,.0f} events/s (outbox read + parse + fold)")
        print(f"compare with the live tables: {report.compare_seconds:.2f} s; rebuild in all {total_s:.2f} s")
        print("rows: " + ", ".join(f"{m} {n:,}" for m, n in sorted(report.rows.items())))
        print("equal" if report.equal else f"{len(report.differences)} differences, e.g. {report.differences[:3]}")
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        result = {"events": report.events_read, "fold_seconds": report.fold_seconds,
                  "events_per_second": report.events_per_second, "compare_seconds": report.compare_seconds,
                  "rebuild_seconds": total_s, "write_seconds": write_s, "rows": report.rows,
                  "equal": report.equal, "at": datetime.now(timezone.utc).isoformat(), "cpus": os.cpu_count()}
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        db.dispose()
        scratch.close()


if __name__ == "__main__":
    main()
