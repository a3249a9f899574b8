"""Review (determinism of statements): the same facts give the same statement — lines, totals, content hash —
whatever the database, the ids' spelling, the source cap, and whatever commits while a draft is being computed.

- A draft reads its inputs in several statements (allocations, buy-backs, the tax GROUP BY, statistics, and a month
  with more receipts than the source cap read *again* for its ids). On PostgreSQL each statement of a READ COMMITTED
  transaction sees its own snapshot, and a draft holds no cut-off lock: a receipt whose intake read the clock before
  the draft did (``received_at`` < the draft's ``as_of``) and commits while the draft runs is left out of the month's
  sum but counted among its sources. The line then matches neither the facts with that receipt nor those without.
- Guard: ids in mixed case, digits, '-', '_', '.', '/', ':' and Chinese lot / buy-back ids, months past the source
  cap, give on SQLite and PostgreSQL exactly the in-memory statement (the worlds of the database-path test use
  plain ids and months of at most a few receipts)."""
from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from services.settlement.domain import (
    BuyBack,
    ConsumedLot,
    QuotaAllocation,
    StatisticsReport,
    TaxReceipt,
    compute_statement,
)
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage import sums as sums_module
from services.settlement.storage.inputs import InputsRepository
from tests.integration.settlement.support import new_county
from tests.integration.settlement.worlds import QUARTERS, at, load, world

_ALPHABET = "aAzZ09-_./:"


def _covered(w):
    """An agreement of the world, a quarter and month it covers, and a tax kind it shares."""
    for a in w.agreements:
        for q in QUARTERS:
            for m in q.months():
                if a.covers(m) and a.effective_from <= m.start:
                    return a, q, m, next(iter(a.local_shares_bp))
    raise AssertionError("no agreement covers a quarter")


def _expected(w, q, as_of, cap, receipts=None):
    return compute_statement(w.county, q, agreements=w.agreements, policy=w.policy, as_of=as_of,
                             receipts=w.county_receipts() if receipts is None else receipts,
                             allocations=w.allocations, buybacks=w.buybacks, statistics=w.statistics,
                             max_sources_per_line=cap)


@pytest.mark.parametrize("seed", [0, 4])
def test_odd_ids_and_months_past_the_source_cap_give_the_in_memory_statement_on_both_databases(runtime, seed):
    rng = random.Random(seed)
    county = new_county()
    w = world(seed, county)
    a, q, m, tax = _covered(w)
    for k in range(25):  # one month of many receipts and reports, ids spelt every way the id rule allows
        rid = rng.choice("aAzZ0") + "".join(rng.choice(_ALPHABET) for _ in range(6)) + f"{county}{k}"
        w.receipts.append(TaxReceipt(receipt_id=rid, enterprise=a.enterprise, month=m, tax_kind=tax,
                                     amount_fen=rng.randint(1, 10**7), received_at=at(m.end)))
        w.statistics.append(StatisticsReport(report_id="S" + rid, enterprise=a.enterprise, month=m, measure="output",
                                             amount_fen=rng.randint(1, 10**7), received_at=at(m.end)))
    lots = tuple(ConsumedLot(f"通环收〔2024〕{j}号-{county}", rng.choice([a.enterprise, None]), f"township:{county}101",
                             rng.randint(1, 100)) for j in range(5))
    w.allocations.append(QuotaAllocation(
        allocation_id=f"zz{county}:LAND", project_id="p", asset="LAND", amount_units=sum(x.units for x in lots),
        price="1", amount_due_fen=1_000_007, destination=None, lots=lots, allocated_on=m.start, received_at=at(m.end)))
    w.buybacks.append(BuyBack(buyback_id=f"buyback:收储〔2024〕-{county}", enterprise=a.enterprise,
                              lot_id=f"收储〔2024〕-{county}", amount_fen=5, agreed_on=m.start, received_at=at(m.end)))
    load(runtime, w)
    as_of = at(q.end + timedelta(days=2))
    for cap in (None, 3):
        expected = _expected(w, q, as_of, cap)
        got = StatementRuns(runtime, now=lambda: as_of, max_sources_per_line=cap).draft(county, q.label, "t").statement
        assert (got.content_hash, got.lines, got.totals) == (expected.content_hash, expected.lines, expected.totals), cap


@pytest.fixture
def pg_runtime(pg_url):
    from services.settlement.main import build
    from shared.settings import load_settings

    rt, _ = build(load_settings("settlement", database_url=pg_url, relay_enabled=False, consumer_enabled=False,
                                log_json=False))
    rt.migrate()
    yield rt, pg_url
    rt.db.dispose()


def test_a_receipt_committing_while_a_draft_reads_a_month_past_the_cap_is_in_both_its_sum_and_sources_or_neither(
        pg_runtime, monkeypatch):
    rt, url = pg_runtime
    county = new_county()
    w = world(1, county)
    a, q, m, tax = _covered(w)
    many = [TaxReceipt(receipt_id=f"m{k:02d}-{county}", enterprise=a.enterprise, month=m, tax_kind=tax,
                       amount_fen=1_000_000 + k, received_at=at(m.end)) for k in range(5)]
    w.receipts += many
    load(rt, w)
    as_of = at(q.end + timedelta(days=2))
    # an intake that read its clock before the draft did, and commits while the draft is reading
    in_flight = TaxReceipt(receipt_id=f"m99-{county}", enterprise=a.enterprise, month=m, tax_kind=tax,
                           amount_fen=777_777_777, received_at=as_of - timedelta(seconds=1))
    other = create_engine(url)
    real_fetch = sums_module.fetch_rows
    calls = []

    def fetch_then_commit(session, stmt, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the tax GROUP BY is read; the month past the cap is about to be read again
            with other.begin() as conn:
                conn.execute(text(
                    "INSERT INTO tax_receipts (receipt_id, enterprise, month, month_start, tax_kind, amount_fen, "
                    "received_at, channel) VALUES (:r, :e, :m, :ms, :t, :a, :at, 'http')"),
                    dict(r=in_flight.receipt_id, e=in_flight.enterprise, m=m.label, ms=m.start, t=tax,
                         a=in_flight.amount_fen, at=in_flight.received_at))
        return real_fetch(session, stmt, *args, **kwargs)

    monkeypatch.setattr(sums_module, "fetch_rows", fetch_then_commit)
    try:
        got = StatementRuns(rt, now=lambda: as_of, max_sources_per_line=2).draft(county, q.label, "t").statement
    finally:
        other.dispose()
    assert len(calls) >= 2, "the month past the cap was read again"
    without = _expected(w, q, as_of, 2)
    with_it = _expected(w, q, as_of, 2, receipts=[*w.county_receipts(), in_flight])
    line = next(ln for ln in got.lines if ln.month == m.label and ln.agreement_id == a.agreement_id
                and ln.tax_kind == tax)
    assert got.content_hash in (without.content_hash, with_it.content_hash), (
        f"the draft is the statement of no set of facts: line {line.line_no} moves {line.amount_fen} fen "
        f"for {line.source_count} receipts (without the in-flight receipt: "
        f"{[(x.amount_fen, x.source_count) for x in without.lines if x.month == m.label and x.tax_kind == tax]}, "
        f"with it: {[(x.amount_fen, x.source_count) for x in with_it.lines if x.month == m.label and x.tax_kind == tax]})")
    # and it is a fact the next draft takes as it stands
    with rt.db.sessions() as s:
        assert InputsRepository(s).receipt_row(in_flight.receipt_id) is not None
