"""Review of settlement against the policy (seed, section 六: "建立县级工业资源统筹调度和统一结算机制 … 实现资源平台共用、
项目收益共享") and the design's statement rules (tests first): an agreement's last year and its guaranteed minimum when
an amendment ends the agreement, before or after the months concerned are finalized; late facts of finalized
periods as adjustments of the next open one; finalized statements unchanged by them; and the finance exports (CSV
with Chinese headers, XLSX, JSON) reconciling with the statement to the fen.

Facts go in through ``intake`` and the agreement registry (the paths HTTP, import and Kafka share) with the service
clock set to the moment they arrive; statements are run with ``StatementRuns(now=...)`` and read over HTTP. On SQLite
and PostgreSQL.

The county (``_simple_county``): E left township T for park P; VAT 50 % local, 6:4, remainder to P, 2025-01 to
2027-12, a guaranteed minimum of 10,000.00 a year for T, topped up by P."""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date
from decimal import Decimal

import openpyxl
import pytest

from services.settlement.domain import VAT, LineKind
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.statements import StatementsRepository
from tests.integration.settlement.support import FINANCE, OFFICE
from tests.integration.settlement.test_review_money_over_time import (
    _amend,
    _finalized_nets,
    _receipt,
    _set_clock,
    _simple_county,
    at,
)
from tests.integration.settlement.test_review_reads import MONEY, _no_floats
from tests.support.services import running_service

MINIMUM = 1_000_000  # 10,000.00 a year


@pytest.fixture
def service(db_url, kafka_bootstrap):
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (runtime, api):
        yield runtime, api


def _finalize(runtime, C: str, label: str, when):
    return StatementRuns(runtime, now=lambda: when).finalize(C, label, "test").statement


def _money(st) -> list:
    return [ln for ln in st.lines if ln.kind.is_money]


def _topup_lines(st) -> list[tuple]:
    return [(ln.kind, ln.adjusts, ln.payer, ln.payee, ln.amount_fen, ln.month, ln.agreement_year) for ln in st.lines
            if LineKind.GUARANTEED_MINIMUM_TOPUP in (ln.kind, ln.adjusts)]


# -- an agreement ended by an amendment: its last (short) year still has its minimum ------------------------------

# (when the amendment is recorded, the end it gives, the statement that must top up year 1, the line's kind, month)
ENDINGS = {
    # the control: ended at 2025-07 by an amendment from 2025-07, its short year 1 closes with it (as a year of an
    # agreement whose terms end there: tests/unit/settlement/test_settlement_inputs.py "closes with the agreement")
    "ends-with-its-first-month": (at(2025, 6, 20), date(2025, 7, 31), "2025-Q3", LineKind.GUARANTEED_MINIMUM_TOPUP,
                                  "2025-07"),
    # ended at 2025-06 by an amendment from 2025-07 (the natural "no more from July"), recorded before Q2 closes
    "ends-before-it-recorded-in-time": (at(2025, 6, 20), date(2025, 6, 30), "2025-Q2",
                                        LineKind.GUARANTEED_MINIMUM_TOPUP, "2025-06"),
    # the same, recorded once Q2 is finalized: the year closed in a finalized period, so an adjustment of the next
    "ends-before-it-recorded-after-q2": (at(2025, 7, 10), date(2025, 6, 30), "2025-Q3", LineKind.ADJUSTMENT,
                                         "2025-06"),
}


@pytest.mark.parametrize("case", list(ENDINGS))
def test_an_agreement_ended_by_an_amendment_tops_up_its_last_year(service, monkeypatch, case):
    """The minimum is per agreement year and the last year "may be shorter than 12 months" (agreements.py): it closes
    with the agreement. Ending the agreement by an amendment from July with ``end`` 2025-07-31 topped year 1 up by
    7,000.00; with ``end`` 2025-06-30 — the same amendment one month earlier — no statement ever did: the version in
    force in June (v1) says year 1 ends in December, the version in force in December (v2) covers nothing, so no
    version "closed" the year and T lost its whole minimum. Whenever the amendment is recorded, the year closes in
    the agreement's last month; a late receipt of that year then corrects the top-up like any other."""
    runtime, api = service
    recorded, end, topped_in, kind, month = ENDINGS[case]
    w = _simple_county(runtime, minimum_fen=MINIMUM)
    _set_clock(monkeypatch, at(2025, 4, 2))
    _receipt(runtime, f"r1-{w.C}", w.E, "2025-03", 1_000_000, VAT)  # local 500,000 -> T 300,000 of its 1,000,000
    finalized = {"2025-Q1": _finalize(runtime, w.C, "2025-Q1", at(2025, 4, 5))}

    def amend():
        _set_clock(monkeypatch, recorded)
        _amend(runtime, w, w.agreements[0], recorded, effective_from=date(2025, 7, 1), end=end)

    if recorded < at(2025, 7, 5):
        amend()
    finalized["2025-Q2"] = _finalize(runtime, w.C, "2025-Q2", at(2025, 7, 5))
    if recorded > at(2025, 7, 5):
        amend()
    finalized["2025-Q3"] = _finalize(runtime, w.C, "2025-Q3", at(2025, 10, 5))

    for label, st in finalized.items():
        expected = [(kind, LineKind.GUARANTEED_MINIMUM_TOPUP if kind is LineKind.ADJUSTMENT else None, w.P, w.T,
                     700_000, month, 1)] if label == topped_in else []
        assert _topup_lines(st) == expected, label
    assert _finalized_nets(runtime, w.C) == {w.T: MINIMUM, w.P: -MINIMUM}

    # a late receipt of year 1 (May: local 100,000 -> T 60,000): T's share rises, the top-up falls by as much;
    # a receipt of a month after the agreement ended is shared by nobody
    _set_clock(monkeypatch, at(2025, 10, 20))
    _receipt(runtime, f"late-{w.C}", w.E, "2025-05", 200_000, VAT)
    _receipt(runtime, f"after-{w.C}", w.E, "2025-09" if end.month == 7 else "2025-08", 5_000_000, VAT)
    runs = StatementRuns(runtime, now=lambda: at(2026, 1, 5))
    q4 = runs.finalize(w.C, "2025-Q4", "test").statement
    assert sorted((ln.adjusts, ln.payer, ln.payee, ln.amount_fen, ln.month) for ln in q4.lines) == sorted([
        (LineKind.REVENUE_SHARE, w.P, w.T, 60_000, "2025-05"),
        (LineKind.GUARANTEED_MINIMUM_TOPUP, w.T, w.P, 60_000, month),
    ])
    assert q4.unmatched_receipts == 1
    assert _finalized_nets(runtime, w.C) == {w.T: MINIMUM, w.P: -MINIMUM}

    # finalized statements are unchanged by the late facts (their stored hash and lines are what finalizing gave)
    with runtime.db.sessions() as s:
        repo = StatementsRepository(s)
        for label, st in finalized.items():
            assert repo.header(w.C, label).content_hash == st.content_hash, label
            assert list(repo.stream_lines(w.C, label)) == list(st.lines), label
    r = api.post(f"/v1/counties/{w.C}/periods/2025-Q3/draft", headers=OFFICE)
    assert r.status_code == 409 and r.json()["reason"] == "already_finalized", r.text


# -- exports for finance systems ---------------------------------------------------------------------------------

def _csv(api, C: str, label: str, **params) -> list[dict]:
    r = api.get(f"/v1/counties/{C}/periods/{label}/statement/export", params={"format": "csv", **params},
                headers=FINANCE)
    assert r.status_code == 200, r.text
    assert r.content.startswith("\ufeff".encode())  # a BOM, so Excel reads the Chinese headers
    return list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))


def test_every_export_of_a_statement_with_adjustments_reconciles_with_it_to_the_fen(service, monkeypatch):
    """A statement holding its own month's shares, late receipts and a correction of a finalized month (one
    lowering it: an adjustment the origin pays back) and a guaranteed-minimum top-up. The CSV lines (Chinese
    headers), the CSV totals, the XLSX sheets and the JSON document must each give the statement's lines in line
    order, its party totals, and amounts that add up: per party, the money lines it receives and pays are its
    receivable and payable, nets sum to zero, the money total is the sum of the money lines."""
    runtime, api = service
    w = _simple_county(runtime, minimum_fen=MINIMUM)
    _set_clock(monkeypatch, at(2025, 2, 2))
    _receipt(runtime, f"r1-{w.C}", w.E, "2025-01", 3_333_333, VAT)  # local 1,666,666 -> T 999,999 (6:4, rest to P)
    for label, when in (("2025-Q1", at(2025, 4, 5)), ("2025-Q2", at(2025, 7, 5)), ("2025-Q3", at(2025, 10, 5))):
        _finalize(runtime, w.C, label, when)
    _set_clock(monkeypatch, at(2025, 11, 3))
    _receipt(runtime, f"c1-{w.C}", w.E, "2025-01", 1_000_001, VAT, corrects=f"r1-{w.C}")  # T 300,000: 699,999 back
    _receipt(runtime, f"r2-{w.C}", w.E, "2025-11", 101, VAT)  # local 50 -> T 30
    q4 = _finalize(runtime, w.C, "2025-Q4", at(2026, 1, 5))
    # year 1 closes in December: T has 300,000 + 30 of 1,000,000 -> top-up 699,970
    assert sorted((ln.kind, ln.payer, ln.payee, ln.amount_fen) for ln in q4.lines) == sorted([
        (LineKind.ADJUSTMENT, w.T, w.P, 699_999), (LineKind.REVENUE_SHARE, w.P, w.T, 30),
        (LineKind.GUARANTEED_MINIMUM_TOPUP, w.P, w.T, 699_970)])

    page = _no_floats(api.get(f"/v1/counties/{w.C}/periods/2025-Q4/statement", params={"limit": 1000},
                              headers=FINANCE).text)
    totals = {t["party"]: (t["receivable"], t["payable"], t["net"]) for t in page["totals"]}
    assert sum(Decimal(n) for _, _, n in totals.values()) == 0
    want_lines = [(str(ln["line_no"]), ln["payer"], ln["payee"], ln["amount"]) for ln in page["lines"]]
    assert [int(x[0]) for x in want_lines] == sorted(int(x[0]) for x in want_lines)

    # CSV, Chinese headers: the lines and the totals
    rows = _csv(api, w.C, "2025-Q4", headers="zh")
    assert [(r["行号"], r["付款方"], r["收款方"], r["金额(元)"]) for r in rows] == want_lines
    assert {r["类型"] for r in rows} == {"调整", "税收分成", "保底补足"}
    received, paid = defaultdict(Decimal), defaultdict(Decimal)
    for r in rows:
        assert MONEY.match(r["金额(元)"]), r
        received[r["收款方"]] += Decimal(r["金额(元)"])
        paid[r["付款方"]] += Decimal(r["金额(元)"])
    csv_totals = _csv(api, w.C, "2025-Q4", headers="zh", part="totals")
    assert {r["结算主体"]: (r["应收(元)"], r["应付(元)"], r["净额(元)"]) for r in csv_totals} == totals
    for party, (rec, pay, net) in totals.items():
        assert (Decimal(rec), Decimal(pay)) == (received[party], paid[party])
        assert Decimal(net) == received[party] - paid[party]
    assert Decimal(page["money_total"]) == sum(received.values()) == sum(paid.values())

    # XLSX: summary, lines and totals sheets say the same (amounts are text: exact, never a float)
    r = api.get(f"/v1/counties/{w.C}/periods/2025-Q4/statement/export", params={"format": "xlsx", "headers": "zh"},
                headers=FINANCE)
    assert r.status_code == 200, r.text
    book = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
    summary = dict(book["概要"].iter_rows(values_only=True))
    assert (summary["内容哈希"], summary["行数"], summary["金额合计(元)"]) == (
        page["content_hash"], str(page["line_count"]), page["money_total"])
    sheet = list(book["明细"].iter_rows(values_only=True))[1:]
    assert [(row[0], row[2], row[3], row[4]) for row in sheet] == want_lines
    assert {row[0]: tuple(row[1:]) for row in list(book["汇总"].iter_rows(values_only=True))[1:]} == totals

    # JSON: the same document, no float anywhere
    r = api.get(f"/v1/counties/{w.C}/periods/2025-Q4/statement/export", params={"format": "json"}, headers=FINANCE)
    doc = _no_floats(r.text)
    assert doc["content_hash"] == page["content_hash"] and doc["lines"] == page["lines"]
    assert {t["party"]: (t["receivable"], t["payable"], t["net"]) for t in doc["totals"]} == totals
    assert doc["money_total"] == page["money_total"]
