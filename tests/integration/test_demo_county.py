"""The whole county, end to end (issue 7): the demo's tiny county fed through all four services as processes, on
real Kafka and PostgreSQL (fresh databases of this run beside TEST_DATABASE_URL), in --stop mode. After the year
has settled, the figures of every service must agree:

- the pool per asset: available = released − retired − allocated − reserved, released and retired are the lots'
  sums, and the ledger's pool, retired and project accounts hold exactly that;
- the ledger: per asset, every balance (external accounts included) sums to zero and its journal verifies;
- provenance: each allocation is the sum of its lot consumptions, each project's totals the sum of its allocations,
  and all of them the pool's allocated;
- compensation: each enterprise's compensation lines in settlement equal its share, under the county's policy, of
  the proceeds of the lots it freed (recomputed from the quota service's provenance);
- every statement's party nets sum to zero, and the finalized year's nets are the parties' CNY balances in the ledger;
- every service's read models rebuilt from its own event store (services/<name>/replay.py, what `countypool
  replay` runs) equal the live ones.
"""
from __future__ import annotations

import importlib
import socket
from collections import defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from ops.demo import Options, run
from ops.demo_report import LEDGER_PREFIXES
from services.settlement.domain.proceeds import ConsumedLot, QuotaAllocation, SettlementPolicy, split_proceeds
from services.settlement.intake import ALLOCATION_UNIT_SCALE
from shared.amounts import parse_amount
from shared.db import Database

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres]
SERVICES = ("ledger", "quota", "settlement", "assessment")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def D(x) -> Decimal:
    return Decimal(str(x))


def check_pool_and_ledger(api, county: str) -> None:
    pool = {a["asset"]: a for a in api.get("quota", f"/v1/counties/{county}/pool")["assets"]}
    lots = api.pages("quota", f"/v1/counties/{county}/lots", "lots", "after", "next_after", limit=1000)
    assert lots, "no lot was booked"
    booked = [lot for lot in lots if lot["ledger_state"] == "booked"]
    assert len(booked) == len(lots), {lot["lot_id"]: lot["ledger_state"] for lot in lots if lot not in booked}
    accounts = {a["account_id"]: a for p in LEDGER_PREFIXES
                for a in api.get("ledger", "/v1/balances", address_prefix=p, limit=10000)}
    allocated_somewhere = False
    for asset, f in pool.items():
        released, retired, allocated, reserved, available = (D(f[k]) for k in
                                                             ("released", "retired", "allocated", "reserved", "available"))
        assert available == released - retired - allocated - reserved, f
        assert D(f["incoming"]) == 0, f
        assert released == sum(D(lot["amount"]) for lot in lots if lot["asset"] == asset), asset
        assert retired == sum(D(lot["retired"]) for lot in lots if lot["asset"] == asset), asset
        if released == 0:
            continue
        pool_acc = accounts[f"county:{county}/pool/{asset}"]
        assert D(pool_acc["balance"]) == released - retired - allocated, (asset, pool_acc)
        assert D(pool_acc["available"]) == available, (asset, pool_acc)
        retired_acc = accounts.get(f"county:{county}/retired/{asset}")
        assert (D(retired_acc["balance"]) if retired_acc else Decimal(0)) == retired, asset
        # this county's projects (the ledger also books what other runs on the broker send it)
        projects = sum(D(a["balance"]) for a in accounts.values()
                       if a["asset"] == asset and a["address"].startswith(f"project:PRJ-{county}-"))
        assert projects == allocated, asset
        allocated_somewhere |= allocated > 0
    assert allocated_somewhere, "the demo allocated nothing"

    sums: dict[str, Decimal] = defaultdict(Decimal)
    for a in accounts.values():
        sums[a["asset"]] += D(a["balance"])
    assert sums and all(v == 0 for v in sums.values()), dict(sums)
    imbalance = [(labels, v) for name, labels, v in api.p.metrics("ledger") if name == "countypool_ledger_asset_imbalance_units"]
    assert imbalance and all(v == 0 for _, v in imbalance), imbalance

    rec = api.get("quota", f"/v1/counties/{county}/reconciliation")
    assert rec["agrees"] and rec["in_flight"] == 0, rec
    v = api.get("ledger", "/v1/journal/verify")
    assert v["ok"] and v["checked"] == v["head_seq"] > 0, v


def check_provenance(api, county: str) -> dict[str, dict]:
    requests = api.pages("quota", "/v1/requests", "requests", "after", "next_after", county_code=county, limit=1000)
    allocated = [q for q in requests if q["state"] == "allocated"]
    assert allocated, "no request was allocated"
    pool = {a["asset"]: D(a["allocated"]) for a in api.get("quota", f"/v1/counties/{county}/pool")["assets"]}
    by_asset: dict[str, Decimal] = defaultdict(Decimal)
    provenance = {}
    for project in sorted({q["project_id"] for q in allocated}):
        prov = provenance[project] = api.get("quota", f"/v1/projects/{project}/provenance")
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for a in prov["allocations"]:
            assert a["lots"], a
            assert sum(D(c["amount"]) for c in a["lots"]) == D(a["amount"]), a
            assert sum(D(c["amount_due"]) for c in a["lots"]) == D(a["amount_due"]), a
            totals[a["asset"]] += D(a["amount"])
            by_asset[a["asset"]] += D(a["amount"])
        assert {k: D(v) for k, v in prov["totals"].items()} == dict(totals), project
        asked = defaultdict(Decimal)
        for q in allocated:
            if q["project_id"] == project:
                for line in q["lines"]:
                    asked[line["asset"]] += D(line["amount"])
        assert dict(asked) == dict(totals), project
    assert {a: v for a, v in by_asset.items()} == {a: v for a, v in pool.items() if v}, (dict(by_asset), pool)
    return provenance


def check_compensation(api, county: str, provenance: dict[str, dict]) -> None:
    pol = api.get("settlement", f"/v1/counties/{county}/settlement-policy")
    policy = SettlementPolicy(policy_id=pol["policy_id"], version=pol["version"], county=county,
                              compensation_bp=pol["compensation_bp"], township_weight=pol["township_weight"],
                              park_weight=pol["park_weight"], fund_weight=pol["fund_weight"])
    want: dict[str, int] = defaultdict(int)
    due_of_freed = 0
    for project, prov in provenance.items():
        for a in prov["allocations"]:
            lots = tuple(ConsumedLot(c["lot_id"], c["source_ref"] if c["source_kind"] != "reclamation" else None,
                                     f"township:{c['township_code']}", parse_amount(c["amount"], ALLOCATION_UNIT_SCALE))
                         for c in a["lots"])
            alloc = QuotaAllocation(allocation_id=f"{a['request_id']}:{a['asset']}", project_id=project, asset=a["asset"],
                                    amount_units=sum(x.units for x in lots), price=a["price_per_unit"],
                                    amount_due_fen=parse_amount(a["amount_due"], 2, allow_zero=True), destination=None,
                                    lots=lots, allocated_on=date.today(), received_at=datetime.now(timezone.utc))
            for code, fen in split_proceeds(alloc, policy).compensation.items():
                want[code] += fen
            due_of_freed += sum(parse_amount(c["amount_due"], 2, allow_zero=True) for c in a["lots"]
                                if c["source_kind"] != "reclamation")
    assert want, "no enterprise's lot was consumed"
    # the policy's share of what the enterprises' lots brought in, to within a fen per allocation
    allocations = sum(len(p["allocations"]) for p in provenance.values())
    assert abs(sum(want.values()) - due_of_freed * pol["compensation_bp"] / 10_000) <= allocations
    for code, fen in want.items():
        got = api.get("settlement", f"/v1/enterprises/{code}/compensation", county=county)
        paid = sum(parse_amount(ln["amount"], 2) for ln in got["lines"] if ln["kind"] == "compensation")
        assert paid == fen, (code, paid, fen, got)


def check_statements(api, county: str, periods: dict) -> None:
    assert periods.get("closed") and periods.get("to_date"), periods
    for period in periods.values():
        st = api.get("settlement", f"/v1/counties/{county}/periods/{period}/statement", limit=1)
        assert st["totals"], period
        assert sum(D(t["net"]) for t in st["totals"]) == 0, (period, st["totals"])
        assert sum(D(t["receivable"]) for t in st["totals"]) == D(st["money_total"]), period
    closed = api.get("settlement", f"/v1/counties/{county}/periods/{periods['closed']}/statement", limit=1)
    assert closed["status"] == "finalized" and closed["postings"]["requested"] == 0, closed["postings"]
    assert closed["postings"]["rejected"] == 0 and closed["postings"]["posted"] == closed["line_count"], closed["postings"]
    # the finalized year's money is in the ledger: each party's CNY position is its net
    for t in closed["totals"]:
        acc = api.get("ledger", f"/v1/accounts/{t['party']}/CNY")
        assert D(acc["balance"]) == D(t["net"]), (t, acc)


def test_tiny_county_through_all_four_services(pg_server_url, kafka_bootstrap, tmp_path):
    # every department message signed and checked (the demo signs as the departments would): all are still taken in
    env = {"DATABASE_URL": pg_server_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "COUNTYPOOL_INTAKE_SIGNATURES": "require",
           **{f"COUNTYPOOL_{s.upper()}_PORT": str(_free_port()) for s in SERVICES}}
    seen: dict = {}

    def inspect(demo, report):
        api, county = demo.feeder, demo.facts.county_code
        seen["databases"] = list(demo.platform.databases)
        assert len(seen["databases"]) == 4 and demo.platform.database_url("ledger").startswith("postgresql"), seen
        assert [c for c in report["checks"] if not c[1]] == []
        # everything fed was taken in (dead letters are not compared: the services also read whatever other runs
        # publish on the shared topics, malformed test messages included)
        f = demo.facts
        assert len(report["enterprises"]) == demo.ds.manifest["enterprises"]
        assert len(report["lots"]) == f.releases_sent + f.acceptances_sent > 0
        sent = {e["data"]["receipt_id"] for e in demo.ds.events("countypool.intake.settlement")}
        recorded = {r["receipt_id"] for r in api.pages("settlement", "/v1/tax-receipts", "receipts", "after", "next_after",
                                                       limit=1000)}
        assert sent and sent <= recorded, sorted(sent - recorded)[:5]
        assert all(d["status"] == "executed" for d in f.executions) and len(f.executions) == len(demo.ds.http("exits"))
        check_pool_and_ledger(api, county)
        provenance = check_provenance(api, county)
        check_compensation(api, county, provenance)
        check_statements(api, county, demo.facts.periods)
        for service in ("ledger", "quota", "settlement", "assessment"):
            db = Database(demo.platform.database_url(service), service)
            try:
                report = importlib.import_module(f"services.{service}.replay").rebuild(db)
            finally:
                db.dispose()
            assert report.equal, (service, [str(d) for d in report.differences[:5]])
            assert report.events_applied > 0 and sum(report.rows.values()) > 0, (service, report.rows)
        seen["checked"] = True

    code = run(Options(size="tiny", seed=42, stop=True, quiet=True, env=env, data_dir=tmp_path / "demo"), inspect=inspect)
    assert seen.get("checked") and code == 0
    assert not (tmp_path / "demo").exists(), "a --stop demo removes its throw-away data"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(pg_server_url).set(database="postgres"))
    try:
        with admin.connect() as c:
            left = c.execute(text("SELECT datname FROM pg_database WHERE datname = ANY(:n)"), {"n": seen["databases"]}).all()
        assert left == [], "the demo drops the databases it made"
    finally:
        admin.dispose()
