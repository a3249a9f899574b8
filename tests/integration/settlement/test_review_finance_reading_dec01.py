"""Review (dec01) of what a county finance bureau (财政局) reads from settlement: statements (drafts and finalized),
their lines, party totals, money total, exports (CSV lines / totals with en, zh and key headers, XLSX, JSON), party
positions, quarter and year periods, and the ledger postings of a finalized statement.

Every fact goes in through the real HTTP API (agreements, the settlement policy, tax receipts in instalments and
corrections, statistics reports) with the service clock set to when it arrives; quota allocations, which only arrive
from quota over Kafka, through the intake function its consumer calls. Statements are drafted and finalized over HTTP
with the statement runs' clock set. PostgreSQL and real Kafka only.

The county: E1 left township T1 for park P (VAT 50 %, CIT 40 % local, 6:4, remainder to P, statistics 3:7, a
guaranteed minimum for T1 of 1,000,000,000.01 a year); E2 left township T2 for P (VAT 33.33 % local, 1:2, remainder to
T2). Policy: 33.33 % compensation, the rest 7:5:3. Awkward amounts everywhere: 1 fen, 3 fen, 10^12+1 fen.
The oracle is written out here in integers (floor, named remainder), not taken from the service's code."""
from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest

from services.settlement import clock, intake
from shared.china_time import CST
from shared.contracts.quota import ConsumedLotOut, QuotaAllocated
from tests.integration.settlement.support import FINANCE, OFFICE, isolated_service, new_county
from tests.support.pg import fresh_database
from tests.support.services import running_service, wait_for

MONEY = re.compile(r"^-?(0|[1-9][0-9]*)\.[0-9]{2}$")
BIG = 10**12 + 1  # fen


def at(y: int, m: int, d: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(y, m, d, hour, minute, tzinfo=CST)


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(fen), 100)
    return f"{sign}{q}.{r:02d}"


def fen(text: str) -> int:
    assert MONEY.match(text), text
    neg = text.startswith("-")
    whole, frac = text.lstrip("-").split(".")
    v = int(whole) * 100 + int(frac)
    return -v if neg else v


def _no_floats(text: str):
    def refuse(number: str):
        raise AssertionError(f"a float in the answer: {number}")
    return json.loads(text, parse_float=refuse)


# -- the oracle (rounding rules 1, 2, 5 written out) ------------------------------------------------------------

def origin_share(total: int, bp: int, wo: int, wd: int, origin_takes_remainder: bool) -> int:
    local = total * bp // 10_000
    if origin_takes_remainder:
        return local - local * wd // (wo + wd)
    return local * wo // (wo + wd)


def split(total: int, weights: dict, remainder_to) -> dict:
    s = sum(weights.values())
    out = {k: total * w // s for k, w in weights.items()}
    out[remainder_to] += total - sum(out.values())
    return out


# -- the service ------------------------------------------------------------------------------------------------

@pytest.fixture
def service(pg_url, kafka_bootstrap, monkeypatch):
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (runtime, api):
        yield runtime, api


def _code(C: str, i: int) -> str:
    return f"91{C}{i:08d}AB"


class County:
    """One county's facts, entered over HTTP; ``C`` appears in every party, so two counties with the same facts can
    be compared party by party (``norm``)."""

    def __init__(self, runtime, api, monkeypatch, C: str | None = None):
        self.runtime, self.api, self.mp = runtime, api, monkeypatch
        self.C = C = C or new_county()
        self.E1, self.E2, self.E3 = _code(C, 1), _code(C, 2), _code(C, 3)
        self.T1, self.T2, self.T3 = f"township:{C}101", f"township:{C}102", f"township:{C}103"
        self.P, self.FUND = f"park:P{C}", f"county:{C}/fund"

    def norm(self, party: str) -> str:
        return party.replace(self.C, "<C>")

    def clock(self, when: datetime) -> None:
        self.mp.setattr(clock, "now", lambda: when)

    def post(self, url: str, body: dict, expect=(200, 201)) -> dict:
        r = self.api.post(url, json=body, headers=OFFICE)
        assert r.status_code in expect, (url, body, r.status_code, r.text)
        return r.json()

    def setup(self, when: datetime = at(2024, 12, 20)) -> "County":
        C = self.C
        self.clock(when)
        self.api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE, json={
            "policy_id": "TZBF-1", "compensation_bp": 3333, "township_weight": 7, "park_weight": 5, "fund_weight": 3})
        assert self.api.get(f"/v1/counties/{C}/settlement-policy", headers=FINANCE).status_code == 200
        self.post("/v1/agreements", {
            "agreement_id": f"FD-{C}-1", "county_code": C, "enterprise_credit_code": self.E1, "origin": self.T1,
            "destination": self.P, "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000},
                                              {"tax_kind": "CIT", "local_share_bp": 4000}],
            "schedule": [{"from_year": 1, "origin_weight": 6, "destination_weight": 4}],
            "start": "2025-01-01", "end": "2027-12-31", "guaranteed_minimum": "1000000000.01",
            "statistics_split": {"origin_weight": 3, "destination_weight": 7}, "remainder_to": "destination"})
        self.post("/v1/agreements", {
            "agreement_id": f"FD-{C}-2", "county_code": C, "enterprise_credit_code": self.E2, "origin": self.T2,
            "destination": self.P, "taxes": [{"tax_kind": "VAT", "local_share_bp": 3333}],
            "schedule": [{"from_year": 1, "origin_weight": 1, "destination_weight": 2}],
            "start": "2025-01-01", "end": "2027-12-31", "remainder_to": "origin"})
        return self

    def receipt(self, rid: str, ent: str, month: str, kind: str, amount_fen: int, corrects: str | None = None) -> dict:
        body = {"receipt_id": f"{rid}-{self.C}", "enterprise_credit_code": ent, "month": month, "tax_kind": kind,
                "amount": yuan(amount_fen)}
        if corrects:
            body["corrects"] = f"{corrects}-{self.C}"
        return self.post("/v1/tax-receipts", body)

    def statistic(self, rid: str, ent: str, month: str, measure: str, amount_fen: int) -> dict:
        return self.post("/v1/statistics-reports", {"report_id": f"{rid}-{self.C}", "enterprise_credit_code": ent,
                                                    "month": month, "measure": measure, "amount": yuan(amount_fen)})

    def allocation(self, n: int, on: date, due_fen: int, lots: list[tuple[str | None, str, int]],
                   park: bool = True) -> QuotaAllocated:
        """lots: (enterprise credit code or None for reclaimed land, township party, units of 0.0001)."""
        C = self.C
        outs = [ConsumedLotOut(lot_id=f"L{n}-{i}-{C}", source_kind="release" if ent else "reclaimed",
                               source_ref=ent or f"RC-{C}-{i}", township_code=t.split(":", 1)[1],
                               amount=f"{u // 10_000}.{u % 10_000:04d}", amount_due="0.00")
                for i, (ent, t, u) in enumerate(lots)]
        total = sum(u for _, _, u in lots)
        ev = QuotaAllocated(request_id=f"REQ{n}-{C}", project_id=f"PRJ{n}-{C}", county_code=C, asset="LAND",
                            amount=f"{total // 10_000}.{total % 10_000:04d}", price_per_unit="1.00",
                            amount_due=yuan(due_fen), park_id=f"P{C}" if park else None, allocated_on=on, lots=outs)
        with self.runtime.db.sessions() as s, s.begin():
            assert intake.record_allocation(s, ev, event_id=str(uuid.uuid4()))
        return ev

    # -- statements over HTTP ----------------------------------------------------------------------------------
    def _runs_at(self, when: datetime) -> None:
        self.api.app.state.statement_runs.now = lambda: when

    def draft(self, label: str, when: datetime) -> dict:
        self._runs_at(when)
        r = self.api.post(f"/v1/counties/{self.C}/periods/{label}/draft", headers=OFFICE)
        assert r.status_code == 200, r.text
        return r.json()

    def finalize(self, label: str, when: datetime, expected: str | None = None) -> dict:
        self._runs_at(when)
        body = {"expected_content_hash": expected} if expected else None
        r = self.api.post(f"/v1/counties/{self.C}/periods/{label}/finalize", headers=OFFICE, json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def statement(self, label: str, **params) -> dict:
        """The whole statement: every page, checked to be of one hash."""
        lines, after, first = [], 0, None
        for _ in range(1000):
            r = self.api.get(f"/v1/counties/{self.C}/periods/{label}/statement", headers=FINANCE,
                             params={"after_line": after, "limit": 1000, **params})
            assert r.status_code == 200, r.text
            page = _no_floats(r.text)
            first = first or page
            assert page["content_hash"] == first["content_hash"]
            lines += page["lines"]
            if page["next_after_line"] is None:
                return {**first, "lines": lines}
            after = page["next_after_line"]
        raise AssertionError("paging does not end")

    def export(self, label: str, **params):
        r = self.api.get(f"/v1/counties/{self.C}/periods/{label}/statement/export", params=params, headers=FINANCE)
        assert r.status_code == 200, (params, r.text)
        return r


# -- the world of one quarter, amounts chosen to be awkward -----------------------------------------------------

def q1_facts(w: County) -> None:
    """January to March 2025, all received on 2025-04-02."""
    w.clock(at(2025, 4, 2, 9))
    w.receipt("v1a", w.E1, "2025-01", "VAT", 1)            # 1 fen, then 2 more: 3 fen
    w.receipt("v1b", w.E1, "2025-01", "VAT", 2)
    w.receipt("c1", w.E1, "2025-01", "CIT", BIG)           # 10^12 + 1 fen
    w.receipt("v2", w.E2, "2025-01", "VAT", BIG)
    w.receipt("v2f", w.E2, "2025-02", "VAT", 33_333_333)
    w.receipt("v2fc", w.E2, "2025-02", "VAT", 33_333_334, corrects="v2f")  # a correction within the period
    w.receipt("v1m", w.E1, "2025-03", "VAT", 99_999_999_99)
    w.statistic("s1", w.E1, "2025-01", "value_added", 1)
    w.statistic("s2", w.E1, "2025-02", "output", BIG)
    w.statistic("s3", w.E1, "2025-02", "output", 3)
    lots3 = [(w.E1, w.T1, 1), (w.E2, w.T2, 1), (w.E3, w.T3, 1)]
    w.allocation(1, date(2025, 1, 10), 1, lots3)                          # 1 fen among three
    w.allocation(2, date(2025, 2, 10), 3, lots3)                          # 3 fen among three
    w.allocation(3, date(2025, 3, 10), BIG, lots3 + [(None, w.T1, 7)])   # with reclaimed land
    w.allocation(4, date(2025, 3, 11), BIG, [(w.E1, w.T1, 3), (w.E2, w.T1, 3)], park=False)
    w.receipt("x3", w.E1, "2025-03", "PIT", 5_00)  # a tax no agreement shares: unmatched


def expected_q1_allocation_lines(w: County) -> dict[str, dict]:
    """Per allocation, party -> fen (rule 5, written out)."""
    out = {}
    specs = {1: (1, [(w.E1, w.T1, 1), (w.E2, w.T2, 1), (w.E3, w.T3, 1)], w.P),
             2: (3, [(w.E1, w.T1, 1), (w.E2, w.T2, 1), (w.E3, w.T3, 1)], w.P),
             3: (BIG, [(w.E1, w.T1, 1), (w.E2, w.T2, 1), (w.E3, w.T3, 1), (None, w.T1, 7)], w.P),
             4: (BIG, [(w.E1, w.T1, 3), (w.E2, w.T1, 3)], None)}
    for n, (due, lots, dest) in specs.items():
        units = sum(u for _, _, u in lots)
        freed = sum(u for e, _, u in lots if e)
        compensable = due if freed == units else split(due, {"f": freed, "r": units - freed}, "r")["f"]
        comp = compensable * 3333 // 10_000
        by_ent = defaultdict(int)
        for e, _, u in lots:
            if e:
                by_ent[f"enterprise:{e}"] += u
        largest = min(by_ent, key=lambda p: (-by_ent[p], p))
        parts = defaultdict(int)
        for p, v in split(comp, dict(by_ent), largest).items():
            parts[p] += v
        weights = defaultdict(int)
        for _, t, u in lots:
            weights[t] += 7 * u
        weights[dest or w.FUND] += 5 * units
        weights[w.FUND] += 3 * units
        for p, v in split(due - comp, dict(weights), w.FUND).items():
            parts[p] += v
        out[f"REQ{n}-{w.C}:LAND"] = {p: v for p, v in parts.items() if v}
    return out


def _money(lines):
    return [ln for ln in lines if ln["kind"] != "statistics_share"]


def _nets(lines) -> dict[str, int]:
    nets = defaultdict(int)
    for ln in _money(lines):
        nets[ln["payee"]] += fen(ln["amount"])
        nets[ln["payer"]] -= fen(ln["amount"])
    return {p: v for p, v in nets.items() if v}


# -- lines, totals, splits to the fen ----------------------------------------------------------------------------

def test_every_split_of_awkward_amounts_is_exact_and_totals_are_the_sum_of_lines(service, monkeypatch):
    """1 fen, 3 fen and 10^12+1 fen through odd shares (33.33 %, 1:2, 7:5:3, 3:7). If a fen were lost or created a
    township, a park or an exiting enterprise would be paid what no fact says, and the finance bureau's totals would
    not reconcile with the lines it is shown."""
    runtime, api = service
    w = County(runtime, api, monkeypatch).setup()
    q1_facts(w)
    summary = w.draft("2025-Q1", at(2025, 4, 2, 10))
    st = w.statement("2025-Q1")
    lines = st["lines"]
    assert st["line_count"] == len(lines) == summary["line_count"]
    assert [ln["line_no"] for ln in lines] == list(range(1, len(lines) + 1))
    assert all(MONEY.match(ln["amount"]) and fen(ln["amount"]) > 0 for ln in lines)

    # tax: one line per agreement, tax and month, the origin's share as the oracle says
    revenue = {(ln["agreement_id"], ln["tax_kind"], ln["month"]): (ln["payer"], ln["payee"], fen(ln["amount"]))
               for ln in lines if ln["kind"] == "revenue_share"}
    C = w.C
    want = {
        (f"FD-{C}-1", "VAT", "2025-01"): origin_share(3, 5000, 6, 4, False),
        (f"FD-{C}-1", "CIT", "2025-01"): origin_share(BIG, 4000, 6, 4, False),
        (f"FD-{C}-2", "VAT", "2025-01"): origin_share(BIG, 3333, 1, 2, True),
        (f"FD-{C}-2", "VAT", "2025-02"): origin_share(33_333_334, 3333, 1, 2, True),
        (f"FD-{C}-1", "VAT", "2025-03"): origin_share(99_999_999_99, 5000, 6, 4, False),
    }
    assert {k: v[2] for k, v in revenue.items()} == {k: v for k, v in want.items() if v}
    assert all((payer, payee) == (w.P, w.T1 if k[0].endswith("-1") else w.T2) for k, (payer, payee, _) in revenue.items())
    assert st["unmatched_receipts"] == 1

    # statistics: 3:7, remainder to the park; not money
    stats = {(ln["measure"], ln["month"]): fen(ln["amount"]) for ln in lines if ln["kind"] == "statistics_share"}
    assert stats == {k: v for k, v in {("value_added", "2025-01"): 1 * 3 // 10,
                                       ("output", "2025-02"): (BIG + 3) * 3 // 10}.items() if v}

    # quota proceeds: the parts of each allocation are the oracle's and sum to its amount due exactly
    got = defaultdict(lambda: defaultdict(int))
    for ln in lines:
        if ln["allocation_id"]:
            assert ln["payer"].startswith("project:PRJ")
            got[ln["allocation_id"]][ln["payee"]] += fen(ln["amount"])
    expected = expected_q1_allocation_lines(w)
    assert {a: dict(v) for a, v in got.items()} == expected
    dues = {f"REQ1-{C}:LAND": 1, f"REQ2-{C}:LAND": 3, f"REQ3-{C}:LAND": BIG, f"REQ4-{C}:LAND": BIG}
    assert {a: sum(v.values()) for a, v in got.items()} == dues

    # totals: each party's receivable / payable is the sum of its money lines, nets sum to zero, money total
    money = _money(lines)
    for t in st["totals"]:
        assert all(MONEY.match(t[k]) for k in ("receivable", "payable", "net")), t
        assert fen(t["receivable"]) == sum(fen(ln["amount"]) for ln in money if ln["payee"] == t["party"])
        assert fen(t["payable"]) == sum(fen(ln["amount"]) for ln in money if ln["payer"] == t["party"])
        assert fen(t["net"]) == fen(t["receivable"]) - fen(t["payable"])
    assert {t["party"] for t in st["totals"]} == {p for ln in money for p in (ln["payer"], ln["payee"])}
    assert sum(fen(t["net"]) for t in st["totals"]) == 0
    assert fen(st["money_total"]) == sum(fen(ln["amount"]) for ln in money) == sum(
        fen(t["receivable"]) for t in st["totals"])
    # statistics totals: gained and ceded are the statistics lines
    for t in st["statistics_totals"]:
        mine = [ln for ln in lines if ln["kind"] == "statistics_share" and ln["measure"] == t["measure"]]
        assert fen(t["gained"]) == sum(fen(ln["amount"]) for ln in mine if ln["payee"] == t["party"])
        assert fen(t["ceded"]) == sum(fen(ln["amount"]) for ln in mine if ln["payer"] == t["party"])

    # filtered reads: one party's totals and lines are those of the whole statement
    for party in (w.P, w.T1, f"enterprise:{w.E3}", w.FUND):
        one = w.statement("2025-Q1", party=party)
        assert one["totals"] == [t for t in st["totals"] if t["party"] == party]
        assert one["lines"] == [ln for ln in lines if party in (ln["payer"], ln["payee"])]


def test_a_split_of_one_fen_among_parties_reaches_one_party_once(service, monkeypatch):
    """A 1-fen allocation and a 1-fen tax month: the fen goes to exactly one party (the named remainder taker), once;
    it is neither dropped nor handed to each of three enterprises. A county's small fees must reconcile too."""
    runtime, api = service
    w = County(runtime, api, monkeypatch).setup()
    w.clock(at(2025, 2, 2))
    w.allocation(1, date(2025, 1, 10), 1, [(w.E1, w.T1, 1), (w.E2, w.T2, 1), (w.E3, w.T3, 1)])
    w.allocation(2, date(2025, 1, 11), 1, [(None, w.T1, 1)], park=False)  # reclaimed only: all to the fund side
    w.receipt("one", w.E2, "2025-01", "VAT", 1)  # local floor(0.3333) = 0: no line
    fin = w.finalize("2025-01", at(2025, 2, 3))
    st = w.statement("2025-01")
    assert st["content_hash"] == fin["content_hash"] and st["status"] == "finalized"
    by_alloc = defaultdict(list)
    for ln in st["lines"]:
        by_alloc[ln["allocation_id"]].append((ln["kind"], ln["payee"], ln["amount"]))
    assert by_alloc[f"REQ1-{w.C}:LAND"] == [("proceeds_share", w.FUND, "0.01")]
    assert by_alloc[f"REQ2-{w.C}:LAND"] == [("proceeds_share", w.FUND, "0.01")]
    assert None not in by_alloc, "a tax line for a month whose local share is 0 fen"
    assert st["money_total"] == "0.02"
    assert {t["party"]: t["net"] for t in st["totals"]} == {
        w.FUND: "0.02", f"project:PRJ1-{w.C}": "-0.01", f"project:PRJ2-{w.C}": "-0.01"}
    assert {t["party"]: t["payable"] for t in st["totals"]}[w.FUND] == "0.00"


# -- exports -----------------------------------------------------------------------------------------------------

def _csv_rows(w: County, label: str, **params) -> list[dict]:
    r = w.export(label, format="csv", **params)
    assert r.headers["content-type"].startswith("text/csv")
    text = r.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def test_every_export_gives_the_jsons_figures_as_decimal_strings(service, monkeypatch):
    """The bureau loads the CSV or XLSX into its own books. Each figure must be the statement's own decimal string
    (never 1e+12, never 1000000000000.0, a negative net with its '-', nothing paid as '0.00'), statistics kept out of
    the money column, and the header hash the statement's. Otherwise the books disagree with the statement."""
    runtime, api = service
    w = County(runtime, api, monkeypatch).setup()
    q1_facts(w)
    w.finalize("2025-Q1", at(2025, 4, 2, 10))
    st = w.statement("2025-Q1")
    lines, totals = st["lines"], st["totals"]
    assert any(t["net"].startswith("-") for t in totals) and any(t["payable"] == "0.00" for t in totals)
    assert any(ln["amount"] == "10000000000.01" or fen(ln["amount"]) >= 10**11 for ln in lines)

    for headers, cols in (("en", ("Line", "Type", "Payer", "Payee", "Amount (CNY)",
                                  "Statistic shared (CNY of the statistic)")),
                          ("zh", ("行号", "类型", "付款方", "收款方", "金额(元)", "统计分成数额(元)")),
                          ("key", ("line_no", "kind", "payer", "payee", "amount", "statistic_amount"))):
        no, kind, payer, payee, amount, stat = cols
        rows = _csv_rows(w, "2025-Q1", headers=headers)
        assert len(rows) == len(lines)
        for row, ln in zip(rows, lines):
            assert (int(row[no]), row[payer], row[payee]) == (ln["line_no"], ln["payer"], ln["payee"])
            if ln["kind"] == "statistics_share":
                assert (row[amount], row[stat]) == ("", ln["amount"]), row
            else:
                assert (row[amount], row[stat]) == (ln["amount"], ""), row
        assert sum(fen(r[amount]) for r in rows if r[amount]) == fen(st["money_total"])
        key = {"en": ("Party", "Receivable (CNY)", "Payable (CNY)", "Net (CNY)"),
               "zh": ("结算主体", "应收(元)", "应付(元)", "净额(元)"),
               "key": ("party", "receivable", "payable", "net")}[headers]
        trows = _csv_rows(w, "2025-Q1", headers=headers, part="totals")
        assert [tuple(r[k] for k in key) for r in trows] == [
            (t["party"], t["receivable"], t["payable"], t["net"]) for t in totals]

    r = w.export("2025-Q1", format="csv")
    assert r.headers["x-content-hash"] == st["content_hash"]

    book = openpyxl.load_workbook(io.BytesIO(w.export("2025-Q1", format="xlsx", headers="key").content))
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True)}
    assert (summary["Content hash"], summary["Money total (CNY)"], summary["Lines"]) == (
        st["content_hash"], st["money_total"], str(st["line_count"]))
    sheet = list(book["Lines"].iter_rows(values_only=True))
    head = list(sheet[0])
    got = [dict(zip(head, ["" if v is None else v for v in row])) for row in sheet[1:]]
    assert [(g["line_no"], g["amount"], g["statistic_amount"]) for g in got] == [
        (str(ln["line_no"]), ln["amount"] if ln["kind"] != "statistics_share" else "",
         ln["amount"] if ln["kind"] == "statistics_share" else "") for ln in lines]
    for row in book["Lines"].iter_rows(min_row=2):
        for cell in row:
            assert cell.data_type in ("s", "inlineStr", "n") and not isinstance(cell.value, float), cell
    tsheet = list(book["Totals"].iter_rows(values_only=True))[1:]
    assert [tuple(x) for x in tsheet] == [(t["party"], t["receivable"], t["payable"], t["net"]) for t in totals]

    doc = _no_floats(w.export("2025-Q1", format="json").text)
    assert doc["content_hash"] == st["content_hash"] and doc["money_total"] == st["money_total"]
    assert doc["lines"] == lines and doc["totals"] == totals
    assert doc["statistics_totals"] == st["statistics_totals"]
    figures = [doc["money_total"], *(t[k] for t in doc["totals"] for k in ("receivable", "payable", "net")),
               *(t[k] for t in doc["statistics_totals"] for k in ("gained", "ceded")), *(ln["amount"] for ln in doc["lines"])]
    assert all(isinstance(x, str) and MONEY.match(x) for x in figures), [x for x in figures if not MONEY.match(str(x))]


# -- the hash --------------------------------------------------------------------------------------------------

def test_the_hash_is_reproduced_by_a_redraft_the_finalization_and_every_export(service, monkeypatch):
    """The bureau reviews a draft and finalizes with its hash (expected_content_hash). A redraft over the same facts
    (later clock), the finalized statement and every export must carry that hash; one fen more must change it.
    Otherwise the bureau cannot prove the statement it signed is the one that was paid."""
    runtime, api = service
    w = County(runtime, api, monkeypatch).setup()
    q1_facts(w)
    first = w.draft("2025-Q1", at(2025, 4, 2, 10))
    again = w.draft("2025-Q1", at(2025, 4, 2, 11))
    assert again["content_hash"] == first["content_hash"] and again["as_of"] != first["as_of"]
    fin = w.finalize("2025-Q1", at(2025, 4, 2, 12), expected=first["content_hash"])
    assert fin["content_hash"] == first["content_hash"] and fin["status"] == "finalized"
    assert w.finalize("2025-Q1", at(2025, 4, 3), expected=first["content_hash"])["content_hash"] == first["content_hash"]
    for fmt in ("csv", "xlsx", "json"):
        assert w.export("2025-Q1", format=fmt).headers["x-content-hash"] == first["content_hash"], fmt
    assert _no_floats(w.export("2025-Q1", format="json").text)["content_hash"] == first["content_hash"]

    # one fen more in the next period: its redraft has a different hash
    w.clock(at(2025, 5, 2))
    w.receipt("apr", w.E1, "2025-04", "VAT", 20)
    a = w.draft("2025-04", at(2025, 5, 2, 10))
    w.clock(at(2025, 5, 2, 11))
    w.receipt("apr2", w.E1, "2025-04", "VAT", 1)
    b = w.draft("2025-04", at(2025, 5, 2, 12))
    assert a["content_hash"] != b["content_hash"]


# -- quarter and year against months ----------------------------------------------------------------------------

def _year_facts(w: County) -> None:
    w.clock(at(2025, 1, 2))  # arrangements before anything is closed; facts on the 2nd of the month after
    for i, month in enumerate(("2025-01", "2025-02", "2025-03", "2025-05", "2025-12"), 1):
        y, m = map(int, month.split("-"))
        w.clock(at(y if m < 12 else 2026, m % 12 + 1, 2, 9))
        w.receipt(f"a{i}", w.E1, month, "VAT", 10**i + 1)
        w.receipt(f"b{i}", w.E1, month, "CIT", 3 * 10**(i + 6) + i)
        w.receipt(f"c{i}", w.E2, month, "VAT", BIG * i)
        w.statistic(f"s{i}", w.E1, month, "value_added", 7 * 10**(i + 3) + 1)
        w.allocation(i, date(y, m, 15), 10**(2 * i) + i, [(w.E1, w.T1, 1 + i), (w.E2, w.T2, 2), (None, w.T3, i)])
    w.clock(at(2026, 1, 2, 10))
    w.receipt("b1c", w.E1, "2025-01", "CIT", 3 * 10**7 + 4, corrects="b1")  # a correction before anything closed


def _finalized_nets_of(w: County) -> dict[str, int]:
    periods = w.api.get(f"/v1/counties/{w.C}/periods", headers=FINANCE).json()["statements"]
    nets = defaultdict(int)
    for p in periods:
        assert p["status"] == "finalized"
        for t in w.statement(p["period"])["totals"]:
            nets[w.norm(t["party"])] += fen(t["net"])
    return {k: v for k, v in nets.items() if v}


def _normalized_lines(w: County, labels) -> list[tuple]:
    out = []
    for label in labels:
        for ln in w.statement(label)["lines"]:
            out.append((ln["kind"], w.norm(ln["payer"]), w.norm(ln["payee"]), ln["amount"], ln["month"],
                        ln["tax_kind"], ln["measure"], w.norm(ln["allocation_id"] or "")))
    return sorted(out)


def test_quarters_and_the_year_settle_what_their_months_settle(service, monkeypatch):
    """The same facts in three counties: one closes 2025 month by month, one quarter by quarter, one as a year.
    Every party must be settled the same amount to the fen, with the same lines (guaranteed-minimum top-up of the
    year included), and each party's position must say so. If not, a county's choice of period would move money."""
    runtime, api = service
    months = [f"2025-{m:02d}" for m in range(1, 13)]
    quarters = [f"2025-Q{q}" for q in range(1, 5)]
    counties = {}
    for name, labels in (("months", months), ("quarters", quarters), ("year", ["2025"])):
        w = County(runtime, api, monkeypatch).setup()
        counties[name] = (w, labels)
    for w, _ in counties.values():  # every fact before any cut-off (intake stamps a fact after the latest one)
        _year_facts(w)
    for h, (w, labels) in enumerate(counties.values()):
        for k, label in enumerate(labels):
            w.finalize(label, at(2026, 1, 3, 8 + h, k))
    nets = {name: _finalized_nets_of(w) for name, (w, _) in counties.items()}
    assert nets["months"] == nets["quarters"] == nets["year"]
    lines = {name: _normalized_lines(w, labels) for name, (w, labels) in counties.items()}
    assert lines["months"] == lines["quarters"] == lines["year"]
    # the year's minimum for T1 (1,000,000,000.01) is topped up once, in December's statement / Q4 / the year
    w, _ = counties["months"]
    dec = w.statement("2025-12")["lines"]
    assert [ln["kind"] for ln in dec].count("guaranteed_minimum_topup") == 1
    # a position sums the finalized nets of every period, in period order
    for name, (w, labels) in counties.items():
        pos = w.api.get(f"/v1/counties/{w.C}/parties/{w.T1}/position", headers=FINANCE)
        assert pos.status_code == 200, pos.text
        pos = _no_floats(pos.text)
        assert [p["period"] for p in pos["periods"]] == [lb for lb in labels if any(
            t["party"] == w.T1 for t in w.statement(lb)["totals"])]
        assert fen(pos["finalized_net"]) == nets[name]["township:<C>101"], name
        assert pos["periods"][-1]["cumulative_finalized_net"] == pos["finalized_net"]


# -- a correction of a finalized month ----------------------------------------------------------------------------

def test_a_correction_of_a_finalized_month_is_settled_as_the_difference_in_the_next_statement(service, monkeypatch):
    """January is finalized with 10^12+1 fen of CIT; in February the bureau lowers it to 3 fen. February's statement
    must carry an adjustment of exactly share(3) - share(10^12+1), the township paying it back to the park; summed
    over both statements the township holds exactly share(3). Else a correction would leave money with the wrong
    party."""
    runtime, api = service
    w = County(runtime, api, monkeypatch).setup()
    w.clock(at(2025, 2, 2))
    w.receipt("cit", w.E1, "2025-01", "CIT", BIG)
    w.finalize("2025-01", at(2025, 2, 3))
    w.clock(at(2025, 2, 10))
    out = w.receipt("citc", w.E1, "2025-01", "CIT", 3, corrects="cit")
    assert (out["amount"], out["replaced_amount"]) == ("0.03", yuan(BIG))
    w.finalize("2025-02", at(2025, 3, 3))
    feb = w.statement("2025-02")
    adj = [ln for ln in feb["lines"] if ln["kind"] == "adjustment"]
    before, after = origin_share(BIG, 4000, 6, 4, False), origin_share(3, 4000, 6, 4, False)
    assert [(ln["payer"], ln["payee"], fen(ln["amount"]), ln["month"], ln["adjusts"]) for ln in adj] == [
        (w.T1, w.P, before - after, "2025-01", "revenue_share")]
    pos = _no_floats(api.get(f"/v1/counties/{w.C}/parties/{w.T1}/position", headers=FINANCE).text)
    assert fen(pos["finalized_net"]) == after
    assert [p["cumulative_finalized_net"] for p in pos["periods"]] == [yuan(before), yuan(after)]
    assert {t["party"]: t["net"] for t in feb["totals"]} == {w.T1: yuan(after - before), w.P: yuan(before - after)}


# -- ledger postings -----------------------------------------------------------------------------------------------

@pytest.fixture
def ledger_db(pg_server_url):
    with fresh_database(pg_server_url) as url:
        yield url


def test_the_ledger_moves_exactly_each_money_line_between_its_parties(pg_url, ledger_db, kafka_bootstrap, monkeypatch):
    """Two finalized statements (Q1 with awkward amounts, then April with an adjustment the township pays back)
    posted by the real ledger: every money line is one transfer debiting its payer's CNY account and crediting its
    payee's by exactly its amount, statistics lines are never posted, and each party's ledger balance is its net over
    both statements. Else the county's book of record would not be its statements."""
    with isolated_service("ledger", ledger_db, kafka_bootstrap) as (_, ledger), \
            isolated_service("settlement", pg_url, kafka_bootstrap) as (rt, api):
        w = County(rt, api, monkeypatch).setup()
        q1_facts(w)
        w.finalize("2025-Q1", at(2025, 4, 2, 10))
        w.clock(at(2025, 4, 10))
        w.receipt("c1c", w.E1, "2025-01", "CIT", 1, corrects="c1")
        w.receipt("apr", w.E2, "2025-04", "VAT", 3)
        w.finalize("2025-04", at(2025, 5, 3))
        statements = {label: w.statement(label) for label in ("2025-Q1", "2025-04")}
        assert any(ln["kind"] == "adjustment" and ln["payer"] == w.T1 for ln in statements["2025-04"]["lines"])

        def answered():
            counts = [w.statement(lb)["postings"] for lb in statements]
            return counts if all(c["requested"] == 0 for c in counts) else None
        counts = wait_for(answered, timeout=90, what="the ledger's answers")
        assert [c["rejected"] for c in counts] == [0, 0], counts

        nets = defaultdict(int)
        for label, st in statements.items():
            money = _money(st["lines"])
            assert counts[list(statements).index(label)]["posted"] == len(money)
            for ln in st["lines"]:
                tid = f"settlement:{w.C}:{label}:L{ln['line_no']:05d}"  # as ledger_postings numbers them
                r = ledger.get(f"/v1/transfers/{tid}", headers=FINANCE)
                if ln["kind"] == "statistics_share":
                    assert r.status_code == 404, (tid, r.text)
                    continue
                assert r.status_code == 200, (tid, r.text)
                t = r.json()
                assert (t["debit_account"], t["credit_account"], t["asset"], t["amount"]) == (
                    f"{ln['payer']}/CNY", f"{ln['payee']}/CNY", "CNY", ln["amount"]), (tid, t, ln)
                assert not t["pending"] and t["status"] == "posted"
            for party, net in _nets(st["lines"]).items():
                nets[party] += net
        r = ledger.post("/v1/balances:query", json={"account_ids": [f"{p}/CNY" for p in nets]}, headers=FINANCE)
        assert r.status_code == 200, r.text
        assert {b["account_id"][:-4]: fen(b["balance"]) for b in r.json()} == dict(nets)



def test_a_lines_ledger_transfer_has_the_id_the_readme_gives_it(service, monkeypatch):
    """The README promises one transfer per money line with id ``settlement:<county>:<period>:L<n>``, n in five
    digits, and the statement's lines carry no transfer id: a finance system reconciling line 1 with the ledger
    builds the id from the README. The review found the READMEs saying ``L1`` while the ids are written ``L00001``
    (``StatementLine.line_id``): every lookup was a 404 ("transfer_not_found"). The READMEs now say so."""
    from sqlalchemy import select

    from services.settlement.storage import tables

    runtime, api = service
    w = County(runtime, api, monkeypatch).setup()
    w.clock(at(2025, 2, 2))
    w.receipt("cit", w.E1, "2025-01", "CIT", BIG)
    w.receipt("vat", w.E2, "2025-01", "VAT", 3_000_000)
    w.finalize("2025-01", at(2025, 2, 3))
    lines = w.statement("2025-01")["lines"]
    lp = tables.ledger_postings
    with runtime.db.sessions() as s:
        ids = {r.line_no: r.transfer_id for r in s.execute(select(lp).where(lp.c.county_code == w.C)).all()}
    assert set(ids) == {ln["line_no"] for ln in _money(lines)} == {1, 2}
    assert ids == {n: f"settlement:{w.C}:2025-01:L{n:05d}" for n in ids}, ids
    readme = (Path(__file__).resolve().parents[3] / "services" / "settlement" / "README.md").read_text(encoding="utf-8")
    assert "`settlement:<county>:<period>:L<n>` (n in five digits, `L00001` for line 1)" in readme
