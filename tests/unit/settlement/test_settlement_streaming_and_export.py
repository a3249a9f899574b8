"""Inputs are streamed (memory does not grow with the number of receipts) and statements export as rows."""
from __future__ import annotations

import tracemalloc
from datetime import date, timedelta

from services.settlement.domain import VAT, LineKind, compute_statement, finalize
from services.settlement.domain.export import LINE_COLUMNS, statement_document, statement_rows, totals_rows
from services.settlement.domain.periods import Period
from settlement_factories import COUNTY, P1, T1, agreement, allocation, at, policy, receipt


def _receipts(n: int):
    """A generator: n receipts spread over 3 enterprises (2 with agreements) and 3 months, never all in memory."""
    base = at(2026, 4, 2)
    for i in range(n):
        yield receipt(f"r{i:07d}", f"2026-0{1 + i % 3}", 1 + i % 997, base + timedelta(seconds=i),
                      enterprise=("E1", "E2", "E3")[i % 3])


def _peak_bytes(n: int) -> tuple[int, object]:
    agreements = [agreement(), agreement(agreement_id="A2", enterprise="E2")]
    tracemalloc.start()
    try:
        st = compute_statement(COUNTY, Period.parse("2026-Q1"), agreements=agreements, policy=policy(),
                               as_of=at(2026, 6, 1), receipts=_receipts(n), max_sources_per_line=20,
                               distinct_ids=True)  # ids unique by construction: none remembered to refuse a repeat
        return tracemalloc.get_traced_memory()[1], st
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_receipts():
    small, st_small = _peak_bytes(3_000)
    large, st_large = _peak_bytes(30_000)
    assert st_large.unmatched_receipts == 10_000
    assert sum(ln.source_count for ln in st_large.lines) == 20_000
    assert all(len(ln.sources) == 20 for ln in st_large.lines)
    # ten times the receipts, (almost) the same peak: only per-line aggregates are held
    assert large < small * 1.5 + 64_000, (small, large)


def test_rows_with_english_and_chinese_headers():
    a = agreement()
    alloc = allocation("AL1", 1_000, [("L1", "E7", T1, 5)], on=date(2026, 1, 20))
    st = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 5),
                           receipts=[receipt("r1", "2026-01", 123_457, at(2026, 2, 1))], allocations=[alloc])
    st, _ = finalize(st)
    en = statement_rows(st)
    zh = statement_rows(st, headers="zh")
    assert list(en[0]) == [c.en for c in LINE_COLUMNS]
    assert list(zh[0])[:8] == ["行号", "类型", "付款方", "收款方", "金额(元)", "统计分成数额(元)", "协议", "税种"]
    assert "来源" in zh[0]
    first_en, first_zh = en[0], zh[0]
    # 123,457 -> local 61,728 -> 5:5 -> 30,864 fen = 308.64 yuan
    assert (first_en["Type"], first_en["Amount (CNY)"], first_en["Agreement"], first_en["Tax"], first_en["Sources"]) == (
        "revenue_share", "308.64", "A1@v1", VAT, "r1")
    assert (first_zh["类型"], first_zh["金额(元)"], first_zh["来源"]) == ("税收分成", "308.64", "r1")
    assert {r["类型"] for r in zh} == {"税收分成", "腾退补偿", "指标收益分成"}
    totals = {r["Party"]: r for r in totals_rows(st)}
    assert totals[T1]["Net (CNY)"] == totals[T1]["Receivable (CNY)"]
    assert totals[P1]["Payable (CNY)"] == "308.64"
    assert list(totals_rows(st, headers="zh")[0]) == ["结算主体", "应收(元)", "应付(元)", "净额(元)"]
    doc = statement_document(st)
    assert doc["status"] == "finalized" and doc["content_hash"] == st.content_hash
    assert doc["lines"][0]["amount"] == "308.64" and doc["lines"][0]["kind"] == LineKind.REVENUE_SHARE.value
    assert all(isinstance(line["amount"], str) for line in doc["lines"])


def test_a_statistics_line_is_not_in_the_money_column():
    """A statistics_share line's statistic stood in "Amount (CNY)": a finance system summing that column (no filter on
    the type) counted 3,000.00 of value added as money. It has a column of its own now."""
    from services.settlement.domain import StatisticsReport

    a = agreement(statistics_weights=(3, 7))
    rep = StatisticsReport(report_id="S1", enterprise="E1", month=Period.parse("2026-01"), measure="value_added",
                           amount_fen=1_000_001, received_at=at(2026, 2, 1))
    st = compute_statement(COUNTY, Period.parse("2026-01"), agreements=[a], policy=policy(), as_of=at(2026, 2, 2),
                           statistics=[rep], receipts=[receipt("r", "2026-01", 100, at(2026, 2, 1))])
    rows = statement_rows(st, headers="zh")
    assert [(r["类型"], r["金额(元)"], r["统计分成数额(元)"]) for r in rows] == [
        ("税收分成", "0.25", ""), ("统计分成", "", "3000.00")]
    money = sum(int(r["金额(元)"].replace(".", "")) for r in rows if r["金额(元)"])
    assert money == sum(t.receivable_fen for t in st.totals)
