"""The settlement fold alone (services/settlement/replay.py): statements computed by the domain, announced by the
service's own emission code (``StatementRuns._announce``, ``summary_fields``), folded from their JSON envelopes;
the domain's statements are the oracle."""
from __future__ import annotations

from datetime import date, timezone

import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import Session

from services.settlement.domain import (
    BuyBack,
    LineKind,
    SettlementHistory,
    StatisticsReport,
    compute_statement,
    finalize,
)
from services.settlement.domain.export import yuan
from services.settlement.domain.periods import Period
from services.settlement.replay import SettlementProjection, fen, iso
from services.settlement.statement_runs import StatementRuns, summary_fields
from services.settlement.storage import tables
from services.settlement.storage.statements import money_total
from shared.contracts.ledger import TransferSpec, TransfersRequested
from shared.contracts.settlement import SettlementDrafted, SettlementFinalized
from shared.envelope import new_envelope
from shared.replay import compare, fold
from settlement_factories import COUNTY, FUND, P1, T1, agreement, allocation, at, policy, receipt


class Announced:
    """What a unit of work would write to the outbox: (event type, envelope JSON)."""

    def __init__(self):
        self.events: list[tuple[str, bytes]] = []

    def emit(self, event, *, subject: str, event_id: str | None = None, topic: str | None = None) -> None:
        self.events.append((event.type_name(), new_envelope(event, subject=subject, source="/countypool/settlement",
                                                            event_id=event_id).to_json()))

    def draft(self, st) -> None:
        self.emit(SettlementDrafted(statement_id=st.statement_id, county_code=st.county, period=st.period.label,
                                    content_hash=st.content_hash, line_count=len(st.lines), total=yuan(money_total(st)),
                                    as_of=st.as_of, **summary_fields(st, party_totals=True)), subject=st.statement_id)

    def finalize(self, draft):
        final, postings = finalize(draft)
        StatementRuns._announce(self, final, postings)
        return final


def folded(events) -> SettlementProjection:
    p = SettlementProjection()
    fold(p, iter(events))
    return p


def _history():
    """January finalized; February with a late correction of January, quota proceeds, a buy-back; a March draft."""
    a, pol = agreement(statistics_weights=(3, 7)), policy()
    out = Announced()
    r1 = receipt("r1", "2026-01", 1_000_000, at(2026, 2, 3))
    q1 = compute_statement(COUNTY, Period.parse("2026-Q1"), agreements=[a], policy=pol, as_of=at(2026, 2, 4),
                           receipts=[r1])
    out.draft(q1)
    jan0 = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=pol, as_of=at(2026, 2, 4),
                             receipts=[r1])
    out.draft(jan0)
    r1b = receipt("r1b", "2026-01", 10, at(2026, 2, 4, 18))
    va = StatisticsReport(report_id="S1", enterprise="E1", month=Period.parse("2026-01"), measure="value_added",
                          amount_fen=1_000_001, received_at=at(2026, 2, 1))
    jan_draft = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=pol, as_of=at(2026, 2, 5),
                                  receipts=[r1, r1b], statistics=[va])
    out.draft(jan_draft)
    jan = out.finalize(jan_draft)

    r2 = receipt("r2", "2026-01", 1_200_001, at(2026, 2, 20), corrects="r1", replaced=1_000_000)
    f1 = receipt("f1", "2026-02", 500_000, at(2026, 3, 2))
    alloc = allocation("AL1", 1_000_001, [("L1", "E1", T1, 3000), ("L2", "E2", T1, 1000)], on=date(2026, 2, 10))
    bb = BuyBack(buyback_id="B1", enterprise="E2", lot_id="L9", amount_fen=12_345, agreed_on=date(2026, 2, 3),
                 received_at=at(2026, 2, 3))
    feb_draft = compute_statement(COUNTY, Period.parse("2026-02"), agreements=[a], policy=pol, as_of=at(2026, 3, 5),
                                  receipts=[r1, r1b, r2, f1], allocations=[alloc], buybacks=[bb],
                                  finalized_prior=SettlementHistory.empty().after(jan))
    out.draft(feb_draft)
    feb = out.finalize(feb_draft)
    mar = compute_statement(COUNTY, Period.parse("2026-03"), agreements=[a], policy=pol, as_of=at(2026, 3, 20),
                            receipts=[receipt("m1", "2026-03", 40_000, at(2026, 3, 15))],
                            finalized_prior=SettlementHistory.empty().after(jan).after(feb))
    out.draft(mar)
    return out.events, jan, feb, mar


def test_fold_gives_the_statements_the_domain_computed():
    events, jan, feb, mar = _history()
    p = SettlementProjection()
    read, applied = fold(p, iter(events))
    assert read == applied == len(events)
    m = p.rebuilt()

    assert set(m["statements"]) == {(COUNTY, "2026-01"), (COUNTY, "2026-02"), (COUNTY, "2026-03")}  # Q1 dropped
    for st in (jan, feb, mar):
        status = "finalized" if st is not mar else "draft"
        assert m["statements"][(COUNTY, st.period.label)] == (
            status, st.content_hash, len(st.lines), money_total(st), iso(st.as_of),
            iso(st.finalized_at) if status == "finalized" else None, "POL", 1, 0)
        assert {k[2]: v for k, v in m["party_totals"].items() if k[:2] == (COUNTY, st.period.label)} == {
            t.party: (t.receivable_fen, t.payable_fen, t.net_fen) for t in st.totals}
    assert jan.statistics_totals and {k[2:]: v for k, v in m["statistics_totals"].items() if k[1] == "2026-01"} == {
        (t.party, t.measure): (t.gained, t.ceded) for t in jan.statistics_totals}

    # positions: finalized statements only, the draft of March is not in them
    expected: dict = {}
    for st in (jan, feb):
        for t in st.totals:
            r, pay, n = expected.get(t.party, (0, 0, 0))
            expected[t.party] = (r + t.receivable_fen, pay + t.payable_fen, n + 1)
    assert m["party_positions"] == {(COUNTY, party): (r, pay, r - pay, n) for party, (r, pay, n) in expected.items()}

    money = [(st, ln) for st in (jan, feb) for ln in st.lines if ln.kind.is_money]
    assert m["money_lines"] == {(COUNTY, st.period.label, ln.line_no): (
        ln.kind.value, ln.payer, ln.payee, ln.amount_fen, ln.month, ln.allocation_id) for st, ln in money}
    assert len(m["ledger_postings"]) == len(money)
    assert m["ledger_postings"][f"settlement:{COUNTY}:2026-01:L00001"] == (
        COUNTY, "2026-01", 1, f"{P1}/CNY", f"{T1}/CNY", jan.lines[0].amount_fen)

    (adj,) = [ln for ln in feb.lines if ln.kind is LineKind.ADJUSTMENT]
    assert m["adjustments"] == {(COUNTY, "2026-02", adj.line_no): (
        adj.payer, adj.payee, adj.amount_fen, "A1", "VAT", "2026-01", "revenue_share", ("r2",))}

    comp = {ln.payee: ln.amount_fen for ln in feb.lines if ln.kind is LineKind.COMPENSATION}
    assert m["finalized_compensation"] == {
        ("E1", COUNTY, "2026-02"): (comp["enterprise:E1"], 0, 1),
        ("E2", COUNTY, "2026-02"): (comp["enterprise:E2"], 12_345, 2)}
    assert FUND in {k[1] for k in m["party_positions"]}


def test_a_draft_drafted_before_the_finalization_of_an_earlier_period_is_dropped_and_replaced_by_its_rerun():
    events, jan, feb, mar = _history()
    # March drafted before February was finalized, whatever its as_of (a replica's clock may run ahead): it was
    # computed against the history without February, so February's finalization drops it, as the service does
    early, rest = events[:-1], events[-1:]
    i = next(i for i, (t, raw) in enumerate(early) if "TransfersRequested" in t and b"2026-02" in raw)
    p = folded(early[:i] + rest + early[i:])
    assert (COUNTY, "2026-03") not in p.rebuilt()["statements"]
    assert folded(events).rebuilt()["statements"][(COUNTY, "2026-03")][0] == "draft"  # drafted after: it stands
    # a second run of the draft replaces the first one's totals entirely
    out = Announced()
    mar2 = compute_statement(COUNTY, Period.parse("2026-03"), agreements=[agreement()], policy=policy(),
                             as_of=at(2026, 3, 21), receipts=[receipt("m2", "2026-03", 8, at(2026, 3, 21))],
                             finalized_prior=SettlementHistory.empty().after(jan).after(feb))
    out.draft(mar2)
    p = folded(events + out.events)
    m = p.rebuilt()
    assert m["statements"][(COUNTY, "2026-03")][1] == mar2.content_hash
    assert {k[2]: v[:2] for k, v in m["party_totals"].items() if k[1] == "2026-03"} == {
        t.party: (t.receivable_fen, t.payable_fen) for t in mar2.totals}


def test_a_finalization_drops_a_later_draft_computed_before_it_as_the_service_does():
    """Nothing closed: February drafted on Feb 3 takes January's receipt as a late one; January finalized on
    Feb 5 makes that draft stale (services/settlement/storage/statements.py drops it): the fold drops it too. A
    draft computed after the cut-off stays."""
    a, pol = agreement(), policy()
    r1 = receipt("r1", "2026-01", 1_000_000, at(2026, 2, 2))
    out = Announced()
    out.draft(compute_statement(COUNTY, Period.parse("2026-02"), agreements=[a], policy=pol, as_of=at(2026, 2, 3),
                                receipts=[r1]))
    jan = out.finalize(compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=pol,
                                         as_of=at(2026, 2, 5), receipts=[r1]))
    m = folded(out.events).rebuilt()
    assert set(m["statements"]) == {(COUNTY, "2026-01")}
    assert {k[1] for k in m["party_totals"]} == {"2026-01"}
    feb = compute_statement(COUNTY, Period.parse("2026-02"), agreements=[a], policy=pol, as_of=at(2026, 2, 6),
                            receipts=[r1], finalized_prior=SettlementHistory.empty().after(jan))
    out.draft(feb)
    assert folded(out.events).rebuilt()["statements"][(COUNTY, "2026-02")][:2] == ("draft", feb.content_hash)


def test_what_the_events_do_not_carry_is_marked_not_guessed():
    events, jan, feb, mar = _history()
    old = SettlementDrafted(statement_id=f"{COUNTY}/2026-04", county_code=COUNTY, period="2026-04", content_hash="h",
                            line_count=1, total="12.34")  # an event from before the optional fields
    p = folded(events + [(old.type_name(), new_envelope(old, subject=old.statement_id, source="/x").to_json())])
    m = p.rebuilt()
    assert m["statements"][(COUNTY, "2026-04")] == ("draft", "h", 1, 1234, None, None, None, None, None)
    assert (COUNTY, "2026-04") in p.unknown["party_totals"] and (COUNTY, "2026-04") in p.unknown["statistics_totals"]
    assert not any(k[:2] == (COUNTY, "2026-04") for k in m["party_totals"])
    # an older finalization (policy fields missing) keeps the facts it has; the missing ones are masked
    fin = SettlementFinalized(statement_id=f"{COUNTY}/2026-04", county_code=COUNTY, period="2026-04", content_hash="h",
                              line_count=0, total="0.00", finalized_at=at(2026, 5, 2))
    p = folded(events + [(fin.type_name(), new_envelope(fin, subject="s", source="/x").to_json())])
    assert p.rebuilt()["statements"][(COUNTY, "2026-04")] == (
        "finalized", "h", 0, 0, None, iso(at(2026, 5, 2)), None, None, None)
    assert (COUNTY, "2026-03") not in p.rebuilt()["statements"]  # April's finalization closed March's draft


def test_transfers_of_other_services_are_not_settlement_lines():
    cmd = TransfersRequested(transfers=[TransferSpec(transfer_id="release-1", debit_account="a/CNY",
                                                     credit_account="b/CNY", asset="CNY", amount="1.00")])
    p = folded([(cmd.type_name(), new_envelope(cmd, subject="x", source="/x").to_json())])
    assert p.rebuilt()["ledger_postings"] == {} and p.pending == {}


@pytest.mark.parametrize("text, units", [("0.05", 5), ("-0.05", -5), ("1234567.89", 123456789), ("-12.30", -1230),
                                         ("12", 1200), ("1.5", 150), ("0", 0)])
def test_fen_reads_the_amount_strings_exactly(text, units):
    assert fen(text) == units


def test_live_rows_the_events_cannot_tell_are_left_out_on_both_sides():
    """A June draft announced without totals or policy (too many parties, or before the fields existed) and a
    transfer without month: the live rows are read from real tables (SQLite in memory) and compared equal."""
    old = SettlementDrafted(statement_id=f"{COUNTY}/2026-06", county_code=COUNTY, period="2026-06", content_hash="h",
                            line_count=1, total="12.34")
    cmd = TransfersRequested(transfers=[TransferSpec(
        transfer_id=f"settlement:{COUNTY}:2026-05:L00001", debit_account=f"{P1}/CNY", credit_account=f"{T1}/CNY",
        asset="CNY", amount="5.00", metadata={"county": COUNTY, "period": "2026-05", "line_no": "1",
                                               "kind": "revenue_share"})])
    fin = SettlementFinalized(statement_id=f"{COUNTY}/2026-05", county_code=COUNTY, period="2026-05", content_hash="f",
                              line_count=1, total="5.00", finalized_at=at(2026, 6, 2))
    # the June draft drafted after May was finalized (a draft drafted before it would have been dropped by it)
    p = folded([(e.type_name(), new_envelope(e, subject="s", source="/x").to_json()) for e in (cmd, fin, old)])

    def utc(*ymd):  # stored as UTC, as storage.rows.to_db does (SQLite keeps no offset)
        return at(*ymd).astimezone(timezone.utc)

    engine = create_engine("sqlite://")
    tables.metadata.create_all(engine)
    header = dict(county_code=COUNTY, period_kind="month", policy_id="POL", policy_version=3, unmatched_receipts=0,
                  computed_at=utc(2026, 6, 2), computed_by="x")
    with Session(engine) as s, s.begin():
        s.execute(insert(tables.statements), [
            dict(header, period="2026-06", period_start=date(2026, 6, 1), period_end=date(2026, 6, 30), status="draft",
                 as_of=utc(2026, 6, 10), finalized_at=None, content_hash="h", line_count=1, money_total_fen=1234),
            dict(header, period="2026-05", period_start=date(2026, 5, 1), period_end=date(2026, 5, 31),
                 status="finalized", as_of=utc(2026, 6, 2), finalized_at=utc(2026, 6, 2), content_hash="f",
                 line_count=1, money_total_fen=500)])
        s.execute(insert(tables.statement_totals), [  # the June draft's totals: not in its event
            dict(county_code=COUNTY, period="2026-06", party=P1, receivable_fen=0, payable_fen=1234),
            dict(county_code=COUNTY, period="2026-06", party=T1, receivable_fen=1234, payable_fen=0),
            dict(county_code=COUNTY, period="2026-05", party=P1, receivable_fen=0, payable_fen=500),
            dict(county_code=COUNTY, period="2026-05", party=T1, receivable_fen=500, payable_fen=0)])
        s.execute(insert(tables.statement_lines), [dict(
            county_code=COUNTY, period="2026-05", line_no=1, kind="revenue_share", payer=P1, payee=T1, amount_fen=500,
            month="2026-05", sources="[]", source_count=0, sources_digest="")])
        s.execute(insert(tables.ledger_postings), [dict(
            transfer_id=f"settlement:{COUNTY}:2026-05:L00001", county_code=COUNTY, period="2026-05", line_no=1,
            debit_account=f"{P1}/CNY", credit_account=f"{T1}/CNY", amount_fen=500, status="posted",
            updated_at=utc(2026, 6, 3))])
    with Session(engine) as s:
        live, rebuilt = p.live(s), p.rebuilt()
        assert compare(live, rebuilt) == []
        assert live["money_lines"][(COUNTY, "2026-05", 1)] == ("revenue_share", P1, T1, 500, None, None)
        assert live["statements"][(COUNTY, "2026-06")] == ("draft", "h", 1, 1234, None, None, None, None, None)
        assert set(live["party_totals"]) == {(COUNTY, "2026-05", P1), (COUNTY, "2026-05", T1)}
        # what the events do carry is still compared: a changed hash or amount shows
        s.execute(text("UPDATE statements SET content_hash = 'x' WHERE period = '2026-06'"))
        s.execute(text("UPDATE statement_lines SET amount_fen = 501"))
        assert {(d.model, d.key) for d in compare(p.live(s), rebuilt)} == {
            ("statements", (COUNTY, "2026-06")), ("money_lines", (COUNTY, "2026-05", 1))}
