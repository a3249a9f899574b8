"""The statement the service computes from its database — tax and statistics summed by SQL, lines written with COPY
while they are computed — is the statement ``compute_statement`` gives for the same facts in memory: same lines,
same content hash, draft after draft and finalization after finalization. On SQLite and PostgreSQL.

Also: a refusal in the middle of reading or writing leaves the stored statement as it was."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from json.encoder import encode_basestring

import pytest
from sqlalchemy import text

from services.settlement.domain import SettlementHistory, StatementError, TaxReceipt, compute_statement, finalize
from services.settlement.statement_runs import StatementRuns, compute_from_database
from services.settlement.storage.inputs import InputsRepository
from services.settlement.storage.statements import StatementsRepository
from tests.integration.settlement.support import new_county
from tests.integration.settlement.worlds import CST, QUARTERS, World, at, load, world


def stored(rt, county: str, label: str):
    with rt.db.sessions() as s:
        repo = StatementsRepository(s)
        return repo.header(county, label), tuple(repo.stream_lines(county, label)), repo.totals(county, label)


def run_chain(rt, w: World, cap: int | None) -> int:
    """Draft and finalize every quarter in order, through the service and in memory; returns the lines compared."""
    history, compared = SettlementHistory.empty(), 0
    for i, q in enumerate(QUARTERS):
        cutoff = at(q.end + timedelta(days=1 + (7 * i) % 30), 9)
        runs = StatementRuns(rt, now=lambda c=cutoff: c, max_sources_per_line=cap)
        try:
            expected = compute_statement(w.county, q, agreements=w.agreements, policy=w.policy, as_of=cutoff,
                                         receipts=w.county_receipts(), allocations=w.allocations, buybacks=w.buybacks,
                                         statistics=w.statistics, finalized_prior=history, max_sources_per_line=cap)
        except StatementError as exc:  # the service refuses the same facts for the same reason
            with pytest.raises(StatementError) as refused:
                runs.draft(w.county, q.label, "test")
            assert refused.value.reason == exc.reason
            return compared
        draft = runs.draft(w.county, q.label, "test").statement
        assert (draft.content_hash, draft.lines) == (expected.content_hash, expected.lines), q.label
        assert (draft.totals, draft.statistics_totals) == (expected.totals, expected.statistics_totals)
        assert draft.unmatched_receipts == expected.unmatched_receipts
        final = runs.finalize(w.county, q.label, "test", expected_hash=draft.content_hash).statement
        expected, _ = finalize(expected)
        assert (final.content_hash, final.lines, final.settled_months, final.settled_topups) == (
            expected.content_hash, expected.lines, expected.settled_months, expected.settled_topups)
        header, lines, totals = stored(rt, w.county, q.label)
        assert (header.status, header.content_hash, header.line_count) == ("finalized", expected.content_hash, len(lines))
        assert lines == expected.lines
        with rt.db.sessions() as s:  # sources stored as compact JSON text, as they always were
            raw = s.execute(text("SELECT sources FROM statement_lines WHERE county_code = :c AND period = :p "
                                 "ORDER BY line_no"), {"c": w.county, "p": q.label}).scalars().all()
        assert raw == ["[" + ",".join(map(encode_basestring, ln.sources)) + "]" for ln in lines]
        assert [(x.party, x.receivable_fen, x.payable_fen) for x in totals] == [
            (x.party, x.receivable_fen, x.payable_fen) for x in expected.totals]
        history = history.after(expected)
        compared += len(lines)
    return compared


@pytest.mark.parametrize("seed", range(4))
def test_database_statements_are_the_in_memory_statements(runtime, seed):
    county = new_county()
    w = world(seed, county)
    load(runtime, w)
    # a small source cap on some seeds: months with more receipts than that are read again, ids in order
    run_chain(runtime, w, cap=(None, 1000, 1, 2)[seed])


def test_many_worlds_in_one_database(runtime):
    compared = 0
    for seed in range(4, 12):
        w = world(seed, new_county())
        load(runtime, w)
        compared += run_chain(runtime, w, cap=seed % 3 or None)
    assert compared > 100  # the worlds made lines to compare


def test_a_refusal_while_lines_are_written_leaves_the_stored_draft(runtime):
    county = new_county()
    w = world(3, county)
    load(runtime, w)
    q = QUARTERS[0]
    runs = StatementRuns(runtime, now=lambda: at(q.end + timedelta(days=3)))
    before = runs.draft(county, q.label, "test").statement
    assert before.lines
    # an allocation citing itself as a lot: refused when its lines are made, after other lines were written
    with runtime.db.sessions() as s, s.begin():
        s.execute(text("INSERT INTO quota_allocations VALUES ('ZZ:LAND', :c, 'ZZ', 'PRJ9', 'LAND', 5, '1.00', 500, NULL, "
                       ":on, :at, 'e-zz')"), {"c": county, "on": date(2025, 3, 30), "at": at(date(2025, 3, 30))})
        s.execute(text("INSERT INTO allocation_lots VALUES ('ZZ:LAND', 'ZZ:LAND', NULL, :t, 5)"), {"t": f"township:{county}101"})
    with pytest.raises(StatementError) as e:
        runs.draft(county, q.label, "test")
    assert e.value.reason == "duplicate_input"
    header, lines, _ = stored(runtime, county, q.label)
    assert (header.content_hash, lines) == (before.content_hash, before.lines)
    with runtime.db.sessions() as s, s.begin():
        s.execute(text("DELETE FROM allocation_lots WHERE allocation_id = 'ZZ:LAND'"))
        s.execute(text("DELETE FROM quota_allocations WHERE allocation_id = 'ZZ:LAND'"))
    assert runs.draft(county, q.label, "test").statement.content_hash == before.content_hash


def test_a_wrong_stored_receipt_is_refused_by_name(runtime):
    county = new_county()
    w = world(5, county)
    load(runtime, w)
    enterprise = w.agreements[0].enterprise
    with runtime.db.sessions() as s, s.begin():
        s.execute(text("INSERT INTO tax_receipts (receipt_id, enterprise, month, month_start, tax_kind, amount_fen, "
                       "received_at, channel) VALUES ('bad-1', :e, '2025-02', :m, 'VAT', -5, :at, 'import')"),
                  {"e": enterprise, "m": date(2025, 2, 1), "at": at(date(2025, 3, 2))})
    with runtime.db.sessions() as s, s.begin():
        with pytest.raises(StatementError) as e:
            compute_from_database(s, county, QUARTERS[0], datetime(2025, 4, 2, tzinfo=CST))
        assert e.value.reason == "negative_tax" and "bad-1" in str(e.value)
        assert s.execute(text("SELECT 1")).scalar() == 1  # the connection is still usable


def _shared_month(w: World, q) -> tuple:
    """An agreement of the world, a month of ``q`` it covers and a tax kind it shares."""
    for a in w.agreements:
        for m in q.months():
            if a.covers(m) and a.effective_from <= m.start:
                return a, m, next(iter(a.local_shares_bp))
    raise AssertionError("no agreement covers the quarter")


def _receipt(rid: str, a, m, tax: str, amount: int, received: datetime | None = None) -> TaxReceipt:
    return TaxReceipt(receipt_id=rid, enterprise=a.enterprise, month=m, tax_kind=tax, amount_fen=amount,
                      received_at=received or at(m.end))


def test_a_rerun_keeps_the_stored_lines_only_when_they_are_the_same(runtime):
    county = new_county()
    w = world(2, county)
    q = QUARTERS[1]
    a, m, tax = _shared_month(w, q)
    w.receipts += [_receipt(f"i{k}-{county}", a, m, tax, 10_000_000 + k) for k in range(3)]  # one month, 3 receipts
    load(runtime, w)
    day = [q.end + timedelta(days=2)]
    runs = {cap: StatementRuns(runtime, now=lambda: at(day[0]), max_sources_per_line=cap) for cap in (1, None)}
    version = "xmin::text" if runtime.db.engine.dialect.name == "postgresql" else "rowid"

    def stored_rows():
        with runtime.db.sessions() as s:
            return s.execute(text(f"SELECT line_no, sources, source_count, {version} AS version FROM statement_lines "
                                  "WHERE county_code = :c AND period = :p ORDER BY line_no"),
                             {"c": county, "p": q.label}).all()

    capped = runs[1].draft(county, q.label, "test").statement
    assert capped.lines.capped()
    # the same inputs without a cap: the same hash, but the stored lines cut their sources, so they are rewritten
    full = runs[None].draft(county, q.label, "test").statement
    assert full.content_hash == capped.content_hash and not full.lines.capped()
    first = stored_rows()
    assert all(len(json.loads(r.sources)) == r.source_count for r in first)
    # again, nothing changed: the stored lines stay (the same row versions), the header is the new run's
    day[0] += timedelta(days=1)
    again = runs[None].draft(county, q.label, "test").statement
    assert again.content_hash == full.content_hash and stored_rows() == first
    header, lines, _ = stored(runtime, county, q.label)
    assert header.as_of.astimezone(CST).date() == day[0] and lines == again.lines
    # a new receipt of the quarter: another statement, written over the stored one
    with runtime.db.sessions() as s, s.begin():
        InputsRepository(s).add_receipt(_receipt(f"new-{county}", a, m, tax, 123_456_789), "http", None)
    changed = runs[None].draft(county, q.label, "test").statement
    header, lines, _ = stored(runtime, county, q.label)
    assert changed.content_hash != full.content_hash
    assert (header.content_hash, lines) == (changed.content_hash, changed.lines)
    # a receipt recorded since that draft (received after its as_of): written while computed, over the stored one
    day[0] += timedelta(days=1)
    late = _receipt(f"late-{county}", a, m, tax, 7_654_321, received=at(day[0], hour=6))
    with runtime.db.sessions() as s, s.begin():
        InputsRepository(s).add_receipt(late, "http", None)
    latest = runs[None].draft(county, q.label, "test").statement
    header, lines, _ = stored(runtime, county, q.label)
    assert latest.content_hash not in (changed.content_hash, full.content_hash)
    assert (header.content_hash, lines) == (latest.content_hash, latest.lines)
