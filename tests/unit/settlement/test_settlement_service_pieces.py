"""The pieces around the domain: fast paths that must equal the plain definitions (canonical JSON, splits, rule 5,
the one-pass tally of hash and totals), proceeds of reclaimed lots and projects outside parks, ledger commands, the
receipt import reader, HTTP status of refusals."""
from __future__ import annotations

import hashlib
import io
import json
from datetime import date

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.settlement.api.errors import status_of
from services.settlement.api.receipt_import import detect_format, read_rows
from services.settlement.domain import LineKind, ReceiptError, StatementLine, compute_statement, finalize, split_proceeds
from services.settlement.domain.lines import sources_of
from services.settlement.domain.periods import Period
from services.settlement.domain.rounding import exact_split, local_retained, two_way_part
from services.settlement.domain.statement import Tally, canonical_json, content_hash
from services.settlement.ledger_postings import TRANSFERS_PER_COMMAND, ledger_commands
from shared.amounts import split_by_weights
from settlement_factories import COUNTY, FUND, P1, T1, T2, agreement, allocation, at, policy, receipt

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
maybe_text = st.none() | text
maybe_int = st.none() | st.integers(0, 10**6)


@given(kind=st.sampled_from(list(LineKind)), payer=text, payee=text, amount=st.integers(1, 10**15),
       agreement_id=maybe_text, version=maybe_int, tax=maybe_text, month=maybe_text, year=maybe_int,
       adjusts=st.none() | st.sampled_from(list(LineKind)), measure=maybe_text, allocation=maybe_text,
       ids=st.lists(st.text(alphabet="abc123-:/", min_size=1, max_size=8), max_size=4, unique=True))
def test_fast_canonical_json_is_json_dumps_byte_for_byte(kind, payer, payee, amount, agreement_id, version, tax, month,
                                                         year, adjusts, measure, allocation, ids):
    ids_sorted, count, digest = sources_of(ids)
    ln = StatementLine(line_no=7, kind=kind, payer=payer, payee=payee, amount_fen=amount, agreement_id=agreement_id,
                       agreement_version=version, tax_kind=tax, month=month, agreement_year=year, adjusts=adjusts,
                       measure=measure, allocation_id=allocation, sources=ids_sorted, source_count=count,
                       sources_digest=digest)
    assert ln.canonical_json() == json.dumps(ln.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_content_hash_is_the_sha256_of_the_canonical_document():
    rs = [receipt(f"r{i}", f"2026-0{1 + i % 3}", 1_000 + i, at(2026, 4, 2)) for i in range(4500)]
    s = compute_statement(COUNTY, Period.parse("2026-Q1"), agreements=[agreement()], policy=policy(),
                          as_of=at(2026, 5, 1), receipts=rs)
    doc = {"county": COUNTY, "period": "2026-Q1", "lines": [ln.canonical() for ln in s.lines],
           "totals": [{"party": t.party, "receivable_fen": t.receivable_fen, "payable_fen": t.payable_fen,
                       "net_fen": t.net_fen} for t in s.totals]}
    plain = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(COUNTY, s.period, s.lines, s.totals) == plain
    assert s.content_hash == hashlib.sha256(plain.encode()).hexdigest()


@given(total=st.integers(0, 10**15), mine=st.integers(0, 100), other=st.integers(0, 100), remainder_mine=st.booleans())
def test_two_way_part_is_the_split(total, mine, other, remainder_mine):
    if mine + other == 0:
        return
    parts = split_by_weights(total, {"me": mine, "you": other}, remainder_to="me" if remainder_mine else "you")
    assert two_way_part(total, mine, other, remainder_mine) == parts["me"]


@given(total=st.integers(0, 10**15), bp=st.integers(0, 10_000))
def test_local_retained_is_the_split_with_the_remainder_upstairs(total, bp):
    assert local_retained(total, bp) == split_by_weights(total, {"local": bp, "upper": 10_000 - bp}, remainder_to="upper")["local"]


def test_reclaimed_lots_earn_no_compensation_and_no_park_leaves_its_weight_to_the_fund():
    # 1,000.00 due for 4 units: 3 freed by E1 (T1), 1 reclaimed land from T2
    a = allocation("AL", 100_000, [("L1", "E1", T1, 3), ("L2", None, T2, 1)], destination=None)
    parts = split_proceeds(a, policy(compensation_bp=3000))
    # compensable = floor(100,000 * 3/4) = 75,000 -> 30 % = 22,500 to E1
    assert parts.compensation == {"E1": 22_500}
    # rest 77,500 by T1 4x3=12, T2 4x1=4, fund (park 3x4 + fund 3x4) = 24 -> 23,250 / 7,750 / 46,500
    assert parts.shares == {T1: 23_250, T2: 7_750, FUND: 46_500}
    assert sum(parts.compensation.values()) + sum(parts.shares.values()) == 100_000
    only_land = split_proceeds(allocation("AL2", 999, [("L3", None, T2, 2)]), policy())
    assert only_land.compensation == {} and sum(only_land.shares.values()) == 999


def test_ledger_commands_one_transfer_per_money_line_unconstrained_accounts():
    rs = [receipt(f"r{i}", "2026-01", 1_000, at(2026, 2, 2), enterprise=f"E{i}") for i in range(2)]
    agreements = [agreement(agreement_id=f"A{i}", enterprise=f"E{i}") for i in range(2)]
    allocs = [allocation(f"AL{i}", 10_000, [("L1", "E7", T1, 5)], on=date(2026, 1, 5)) for i in range(600)]
    st_ = compute_statement(COUNTY, Period.parse("2026-01"), agreements=agreements, policy=policy(),
                            as_of=at(2026, 2, 5), receipts=rs, allocations=allocs)
    final, postings = finalize(st_)
    commands = list(ledger_commands(final, postings, "r1"))
    transfers = [t for _, c in commands for t in c.transfers]
    assert len(transfers) == len(postings) == sum(1 for ln in final.lines if ln.kind.is_money) > TRANSFERS_PER_COMMAND
    assert all(len(c.transfers) <= TRANSFERS_PER_COMMAND for _, c in commands)
    n = -(-len(postings) // TRANSFERS_PER_COMMAND)
    assert [eid for eid, _ in commands] == [f"settlement:{COUNTY}:2026-01:postings:{i}:r1" for i in range(1, n + 1)]
    first = transfers[0]
    assert (first.transfer_id, first.debit_account, first.credit_account, first.asset, first.amount) == (
        f"settlement:{COUNTY}:2026-01:L00001", f"{P1}/CNY", f"{T1}/CNY", "CNY", "2.50")  # 10.00 -> 5.00 local -> 5:5
    for _, c in commands:
        used = {a for t in c.transfers for a in (t.debit_account, t.credit_account)}
        assert {a.account_id for a in c.open_accounts} == used
        assert all(a.flags == [] and a.asset == "CNY" and f"{a.address}/CNY" == a.account_id for a in c.open_accounts)


def test_receipt_import_reads_csv_and_xlsx_with_chinese_headers():
    csv_body = "\ufeff收据编号,统一社会信用代码,所属期,税种,金额(元),更正收据\nT1,91320612MA1W2B3C4D,2026-03,VAT,1250000.00,\n\n"
    assert list(read_rows(csv_body.encode(), "csv")) == [(2, {
        "receipt_id": "T1", "enterprise_credit_code": "91320612MA1W2B3C4D", "month": "2026-03", "tax_kind": "VAT",
        "amount": "1250000.00", "corrects": ""})]
    wb = openpyxl.Workbook()
    wb.active.append(["receipt_id", "enterprise_credit_code", "所属期", "tax_kind", "amount"])
    wb.active.append(["T2", "91320612MA1W2B3C4D", date(2026, 4, 1), "CIT", 1234.56])
    wb.active.append(["T3", "91320612MA1W2B3C4D", "2026-04", "CIT", 7])
    buf = io.BytesIO()
    wb.save(buf)
    rows = list(read_rows(buf.getvalue(), "xlsx"))
    assert [(n, d["month"], d["amount"]) for n, d in rows] == [(2, "2026-04", "1234.56"), (3, "2026-04", "7")]
    with pytest.raises(ReceiptError) as e:
        list(read_rows(b"receipt_id,amount\nx,1\n", "csv"))
    assert e.value.reason == "import_header_incomplete"
    assert detect_format("text/csv; charset=utf-8", None) == "csv"
    with pytest.raises(ReceiptError):
        detect_format("application/pdf", None)


def test_refusals_map_to_conflict_or_unprocessable():
    assert status_of("overlapping_agreements") == 409
    assert status_of("previous_period_not_closed") == 409
    assert status_of("negative_tax") == 422
    assert status_of("agreement_not_found") == 404


@given(total=st.integers(0, 10**15), weights=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 10**6),
                                                             min_size=1).filter(lambda w: sum(w.values()) > 0),
       data=st.data())
def test_exact_split_is_the_split(total, weights, data):
    remainder_to = data.draw(st.sampled_from(sorted(weights)))
    assert exact_split(total, weights, remainder_to) == split_by_weights(total, weights, remainder_to=remainder_to)


def _rule_5_written_plainly(a, pol) -> tuple[dict, dict, dict, dict]:
    """Rounding rule 5 as first written (every split through ``split_by_weights``): the oracle for the fast one."""
    units_e, units_t, lots_e, lots_t = {}, {}, {}, {}
    for lot in a.lots:
        if lot.enterprise is not None:
            units_e[lot.enterprise] = units_e.get(lot.enterprise, 0) + lot.units
            lots_e.setdefault(lot.enterprise, []).append(lot.lot_id)
        units_t[lot.township] = units_t.get(lot.township, 0) + lot.units
        lots_t.setdefault(lot.township, []).append(lot.lot_id)
    total, freed = a.amount_units, sum(units_e.values())
    compensable = a.amount_due_fen
    if freed < total:
        compensable = split_by_weights(a.amount_due_fen, {"freed": freed, "reclaimed": total - freed}, remainder_to="reclaimed")["freed"]
    compensation_total = local_retained(compensable, pol.compensation_bp)
    largest = min(units_e, key=lambda p: (-units_e[p], str(p))) if units_e else None
    compensation = split_by_weights(compensation_total, units_e, remainder_to=largest) if units_e else {}
    weights = {t: pol.township_weight * u for t, u in units_t.items()}
    for party, w in ((a.destination or pol.fund, pol.park_weight), (pol.fund, pol.fund_weight)):
        weights[party] = weights.get(party, 0) + w * total
    shares = split_by_weights(a.amount_due_fen - compensation_total, weights, remainder_to=pol.fund)
    return (compensation, shares, {k: tuple(sorted(v)) for k, v in lots_e.items()},
            {k: tuple(sorted(v)) for k, v in lots_t.items()})


@given(due=st.integers(0, 10**12), bp=st.integers(0, 10_000), weights=st.tuples(*[st.integers(0, 9)] * 3).filter(any),
       destination=st.sampled_from([None, P1, T1]),
       lots=st.lists(st.tuples(st.sampled_from(["E1", "E2", "E3", None]), st.sampled_from([T1, T2]), st.integers(1, 10**7)),
                     min_size=1, max_size=6))
def test_proceeds_split_is_rule_5_written_plainly(due, bp, weights, destination, lots):
    a = allocation("AL", due, [(f"L{i}", e, t, u) for i, (e, t, u) in enumerate(lots)], destination=destination)
    pol = policy(compensation_bp=bp, township_weight=weights[0], park_weight=weights[1], fund_weight=weights[2])
    parts = split_proceeds(a, pol)
    assert (parts.compensation, parts.shares, parts.lots_by_enterprise, parts.lots_by_township) == _rule_5_written_plainly(a, pol)


line_kinds = st.sampled_from(list(LineKind))


@st.composite
def statement_lines(draw):
    out = []
    for n in range(1, draw(st.integers(0, 25)) + 1):
        ids = draw(st.lists(st.text(alphabet="abc12-:", min_size=1, max_size=5), max_size=3, unique=True))
        srcs, count, digest = sources_of(ids)
        kind = draw(line_kinds)
        measure = draw(st.sampled_from(["value_added", "output"]) if kind is LineKind.STATISTICS_SHARE
                       else st.none() | st.just("output"))
        out.append(StatementLine(
            line_no=n, kind=kind, payer=draw(st.sampled_from([P1, T1]) | text),
            payee=draw(st.sampled_from([T1, T2, FUND]) | text), amount_fen=draw(st.integers(1, 10**12) | st.just(2**70)),
            agreement_id=draw(st.none() | st.sampled_from(["A1", "B\n2"]) | text), agreement_version=draw(maybe_int),
            tax_kind=draw(st.none() | st.just("VAT")), month=draw(st.none() | st.just("2026-01")),
            agreement_year=draw(maybe_int), adjusts=draw(st.none() | line_kinds),
            measure=measure, allocation_id=draw(st.none() | st.just("AL1")),
            sources=srcs, source_count=count, sources_digest=draw(st.sampled_from([digest, "", "not hex \" "]))))
    return out


@given(lines=statement_lines(), batch=st.integers(1, 7))
def test_the_tally_is_the_content_hash_and_the_plain_totals(lines, batch):
    tally = Tally(COUNTY, Period.parse("2026-Q1"))
    records = [(COUNTY, "2026-Q1", *ln) for ln in lines]
    for i in range(0, len(records), batch):
        tally.add(records[i : i + batch])
    digest, totals, statistics = tally.close()
    money = [ln for ln in lines if ln.kind.is_money]
    parties = sorted({ln.payer for ln in money} | {ln.payee for ln in money})
    assert [(t.party, t.receivable_fen, t.payable_fen) for t in totals] == [
        (p, sum(ln.amount_fen for ln in money if ln.payee == p), sum(ln.amount_fen for ln in money if ln.payer == p))
        for p in parties]
    stats = [ln for ln in lines if not ln.kind.is_money]
    keys = sorted({(ln.payee, ln.measure) for ln in stats} | {(ln.payer, ln.measure) for ln in stats}, key=str)
    assert sorted((s.party, s.measure, s.gained, s.ceded) for s in statistics) == sorted(
        (p, m, sum(ln.amount_fen for ln in stats if (ln.payee, ln.measure) == (p, m)),
         sum(ln.amount_fen for ln in stats if (ln.payer, ln.measure) == (p, m))) for p, m in keys)
    assert digest == content_hash(COUNTY, Period.parse("2026-Q1"), lines, totals)
