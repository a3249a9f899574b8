"""Three hand-computed monthly statements of one county through the finance API, finalized in order, posted to a
real ledger running beside settlement (its own database, real Kafka in between); a correction after
finalization becomes an adjustment (and a new guaranteed-minimum figure) in the next period.

The county (C) and its figures:
- agreement: enterprise E1 left township T1 for park P; VAT local share 50 %, CIT 40 %; 6:4 in agreement year 1
  (2024-03 .. 2025-02), 5:5 afterwards; origin guaranteed 500,000.00 per agreement year; remainders to the park.
- policy: 30 % of quota proceeds compensates the enterprises that freed the lots; the rest 4:3:3 per unit
  (origin townships : destination park : county fund), remainder to the fund.

2025-01  VAT 1,000,000.00 -> local 500,000.00 -> T1 6/10 = 300,000.00
         CIT   333,333.33 -> local floor(133,333.332) = 133,333.33 -> T1 floor(79,999.998) = 79,999.99
2025-01 is finalized; then the January VAT is corrected to 1,100,000.00.
2025-02  VAT   200,000.00 -> local 100,000.00 -> T1 60,000.00
         adjustment of 2025-01 VAT: share(1,100,000.00) 330,000.00 - settled 300,000.00 = 30,000.00
         year 1 closes: T1 got 330,000.00 + 79,999.99 + 60,000.00 = 469,999.99 -> top-up 30,000.01
2025-03  VAT 1,000,000.00 (imported from CSV) -> local 500,000.00 -> 5:5 -> 250,000.00
         quota allocated to project PRJ in park P for 100,000.00: lots L1 (E2, T2, 3), L2 (E3, T1, 1), L3 (E2, T2, 2)
         compensation 30,000.00: E2 5/6 = 25,000.00, E3 1/6 = 5,000.00
         rest 70,000.00 by T2 4x5=20, T1 4x1=4, P 3x6=18, fund 3x6=18 (of 60):
         T2 23,333.33, T1 4,666.66, P 21,000.00, fund 21,000.00 + the 0.01 remainder = 21,000.01
"""
from __future__ import annotations

import csv
import io
from datetime import date

import openpyxl

from shared.contracts import topics
from shared.contracts.quota import ConsumedLotOut, QuotaAllocated
from services.settlement.storage.inputs import InputsRepository
from tests.integration.settlement.support import (
    FINANCE,
    OFFICE,
    TAX,
    credit_code,
    end_offsets,
    envelope,
    isolated_service,
    new_county,
    publish,
    read_from,
)
from tests.support.services import wait_for


def lines_of(client, county, period, **params):
    r = client.get(f"/v1/counties/{county}/periods/{period}/statement", params={"limit": 1000, **params}, headers=FINANCE)
    assert r.status_code == 200, r.text
    return r.json()


def short(doc) -> set[tuple]:
    return {(ln["kind"], ln["month"], ln["payer"], ln["payee"], ln["amount"]) for ln in doc["lines"]}


def nets(doc) -> dict[str, str]:
    return {t["party"]: t["net"] for t in doc["totals"]}


def test_hand_computed_statements_finalized_in_order_and_posted_to_the_ledger(db_url, ledger_db_url, kafka_bootstrap):
    C = new_county()
    T1, T2, P, FUND = f"township:{C}101", f"township:{C}102", f"park:P{C}", f"county:{C}/fund"
    E1, E2, E3 = (credit_code(C, i) for i in (1, 2, 3))
    PRJ = f"project:PRJ-{C}"
    events_start = end_offsets(kafka_bootstrap, [topics.SETTLEMENT_EVENTS])

    with isolated_service("ledger", ledger_db_url, kafka_bootstrap) as (_, ledger), \
            isolated_service("settlement", db_url, kafka_bootstrap) as (rt, api):
        assert api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE, json={
            "compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3}).status_code == 200
        agreement = {
            "agreement_id": f"FD-{C}-1", "county_code": C, "enterprise_credit_code": E1, "origin": T1, "destination": P,
            "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}, {"tax_kind": "CIT", "local_share_bp": 4000}],
            "schedule": [{"from_year": 1, "to_year": 1, "origin_weight": 6, "destination_weight": 4},
                         {"from_year": 2, "to_year": None, "origin_weight": 5, "destination_weight": 5}],
            "start": "2024-03-01", "end": "2029-02-28", "guaranteed_minimum": "500000.00"}
        r = api.post("/v1/agreements", json=agreement, headers=OFFICE)
        assert r.status_code == 201, r.text
        assert api.post("/v1/agreements", json=agreement, headers=OFFICE).status_code == 200  # identical: no-op

        for rid, month, tax, amount in [("r1", "2025-01", "VAT", "1000000.00"), ("r2", "2025-01", "CIT", "333333.33"),
                                        ("r3", "2025-02", "VAT", "200000.00")]:
            r = api.post("/v1/tax-receipts", headers=TAX, json={
                "receipt_id": f"{rid}-{C}", "enterprise_credit_code": E1, "month": month, "tax_kind": tax, "amount": amount})
            assert r.status_code == 201, r.text
        csv_body = ("收据编号,统一社会信用代码,所属期,税种,金额(元)\n"
                    f"r5-{C},{E1},2025-03,VAT,1000000.00\n")
        r = api.post("/v1/tax-receipts/import", content=csv_body.encode(), headers={**TAX, "Content-Type": "text/csv"})
        assert r.json() == {"rows": 1, "recorded": 1, "unchanged": 0, "rejected": []}

        publish(kafka_bootstrap, topics.QUOTA_EVENTS, QuotaAllocated(
            request_id=f"REQ-{C}", project_id=f"PRJ-{C}", county_code=C, asset="LAND", amount="6.0000",
            price_per_unit="16666.67", amount_due="100000.00", park_id=f"P{C}", allocated_on=date(2025, 3, 10), lots=[
                ConsumedLotOut(lot_id=f"L1-{C}", source_kind="release", source_ref=E2, township_code=f"{C}102",
                               amount="3.0000", amount_due="50000.00"),
                ConsumedLotOut(lot_id=f"L2-{C}", source_kind="release", source_ref=E3, township_code=f"{C}101",
                               amount="1.0000", amount_due="16666.67"),
                ConsumedLotOut(lot_id=f"L3-{C}", source_kind="release", source_ref=E2, township_code=f"{C}102",
                               amount="2.0000", amount_due="33333.33")]),
            subject=f"REQ-{C}", source="/countypool/quota")

        # -- January -------------------------------------------------------------------------------------------
        draft = api.post(f"/v1/counties/{C}/periods/2025-01/draft", headers=OFFICE).json()
        assert draft["status"] == "draft" and draft["line_count"] == 2 and draft["money_total"] == "379999.99"
        jan = lines_of(api, C, "2025-01")
        assert short(jan) == {("revenue_share", "2025-01", P, T1, "300000.00"),
                              ("revenue_share", "2025-01", P, T1, "79999.99")}
        assert nets(jan) == {P: "-379999.99", T1: "379999.99"}
        assert api.post(f"/v1/counties/{C}/periods/2025-01/draft", headers=OFFICE).json()["content_hash"] == draft["content_hash"]
        assert api.post(f"/v1/counties/{C}/periods/2025-01/draft", headers=FINANCE).status_code == 403

        final = api.post(f"/v1/counties/{C}/periods/2025-01/finalize", headers=OFFICE,
                         json={"expected_content_hash": draft["content_hash"]}).json()
        assert final["status"] == "finalized" and final["content_hash"] == draft["content_hash"]
        assert final["postings"]["requested"] == 2

        # a correction after finalization: January stays as it was
        r = api.post("/v1/tax-receipts", headers=TAX, json={
            "receipt_id": f"r4-{C}", "enterprise_credit_code": E1, "month": "2025-01", "tax_kind": "VAT",
            "amount": "1100000.00", "corrects": f"r1-{C}"})
        assert r.status_code == 201 and r.json()["replaced_amount"] == "1000000.00"
        jan_again = api.get(f"/v1/counties/{C}/periods/2025-01/statement", headers=FINANCE)
        assert jan_again.json()["content_hash"] == draft["content_hash"]
        etag = jan_again.headers["etag"]
        assert api.get(f"/v1/counties/{C}/periods/2025-01/statement", headers={**FINANCE, "If-None-Match": etag}).status_code == 304
        assert api.post(f"/v1/counties/{C}/periods/2025-01/draft", headers=OFFICE).json()["reason"] == "already_finalized"
        assert api.post(f"/v1/counties/{C}/periods/2025-03/finalize", headers=OFFICE).json()["reason"] == "previous_period_not_closed"

        # -- February: own month, the adjustment of January, the top-up of agreement year 1 ------------------------
        api.post(f"/v1/counties/{C}/periods/2025-02/draft", headers=OFFICE)
        feb = lines_of(api, C, "2025-02")
        assert [(ln["kind"], ln["month"], ln["payer"], ln["payee"], ln["amount"], ln["adjusts"]) for ln in feb["lines"]] == [
            ("revenue_share", "2025-02", P, T1, "60000.00", None),
            ("guaranteed_minimum_topup", "2025-02", P, T1, "30000.01", None),
            ("adjustment", "2025-01", P, T1, "30000.00", "revenue_share"),
        ]
        assert feb["lines"][2]["sources"] == [f"r4-{C}"]
        assert api.post(f"/v1/counties/{C}/periods/2025-02/finalize", headers=OFFICE).json()["status"] == "finalized"

        # -- March: 5:5 now, and the quota proceeds ------------------------------------------------------------------
        wait_for(lambda: _allocation_recorded(rt, f"REQ-{C}:LAND"), what="the allocation consumed from Kafka")
        api.post(f"/v1/counties/{C}/periods/2025-03/draft", headers=OFFICE)
        mar = lines_of(api, C, "2025-03")
        assert short(mar) == {
            ("revenue_share", "2025-03", P, T1, "250000.00"),
            ("compensation", "2025-03", PRJ, f"enterprise:{E2}", "25000.00"),
            ("compensation", "2025-03", PRJ, f"enterprise:{E3}", "5000.00"),
            ("proceeds_share", "2025-03", PRJ, T2, "23333.33"),
            ("proceeds_share", "2025-03", PRJ, T1, "4666.66"),
            ("proceeds_share", "2025-03", PRJ, P, "21000.00"),
            ("proceeds_share", "2025-03", PRJ, FUND, "21000.01"),
        }
        comp_e2 = next(ln for ln in mar["lines"] if ln["payee"] == f"enterprise:{E2}")
        assert comp_e2["sources"] == sorted([f"REQ-{C}:LAND", f"L1-{C}", f"L3-{C}"])
        assert sum(int(t["net"].replace(".", "")) for t in mar["totals"]) == 0
        assert nets(mar)[PRJ] == "-100000.00"
        # paging and filters
        page = lines_of(api, C, "2025-03", limit=2)
        assert len(page["lines"]) == 2 and page["next_after_line"] == 2 and page["matching_lines"] == 7
        assert len(lines_of(api, C, "2025-03", kind="compensation")["lines"]) == 2
        by_fund = lines_of(api, C, "2025-03", party=FUND)
        assert short(by_fund) == {("proceeds_share", "2025-03", PRJ, FUND, "21000.01")} and nets(by_fund) == {FUND: "21000.01"}
        assert len(lines_of(api, C, "2025-03", agreement=f"FD-{C}-1")["lines"]) == 1
        api.post(f"/v1/counties/{C}/periods/2025-03/finalize", headers=OFFICE)

        # -- reading: periods, positions, compensation, exports ------------------------------------------------------
        periods = api.get(f"/v1/counties/{C}/periods", headers=FINANCE).json()
        assert [(s["period"], s["status"]) for s in periods["statements"]] == [
            ("2025-01", "finalized"), ("2025-02", "finalized"), ("2025-03", "finalized")]
        assert periods["next_to_close"] == "2025-04"
        expected = {T1: "754666.66", P: "-729000.00", T2: "23333.33", FUND: "21000.01", f"enterprise:{E2}": "25000.00",
                    f"enterprise:{E3}": "5000.00", PRJ: "-100000.00"}
        for party, net in expected.items():
            pos = api.get(f"/v1/counties/{C}/parties/{party}/position", headers=FINANCE).json()
            assert pos["finalized_net"] == net, (party, pos)
        comp = api.get(f"/v1/enterprises/{E2}/compensation", headers=FINANCE).json()
        assert comp["finalized_total"] == "25000.00" and comp["lines"][0]["period"] == "2025-03"

        exported = api.get(f"/v1/counties/{C}/periods/2025-03/statement/export", params={"format": "csv", "headers": "zh"},
                           headers=FINANCE)
        rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert {r["类型"] for r in rows} == {"税收分成", "腾退补偿", "指标收益分成"} and len(rows) == 7
        assert exported.headers["etag"] and exported.headers["x-content-hash"] == periods["statements"][2]["content_hash"]
        wb = openpyxl.load_workbook(io.BytesIO(api.get(f"/v1/counties/{C}/periods/2025-03/statement/export",
                                                       params={"format": "xlsx", "headers": "zh"}, headers=FINANCE).content))
        assert wb.sheetnames == ["概要", "明细", "汇总"] and wb["明细"].max_row == 8
        doc = api.get(f"/v1/counties/{C}/periods/2025-02/statement/export", params={"format": "json"}, headers=FINANCE).json()
        assert doc["status"] == "finalized" and [ln["kind"] for ln in doc["lines"]][-1] == "adjustment"

        # -- the ledger posted every line, and its balances are the finalized nets --------------------------------------
        accounts = sorted(f"{party}/CNY" for party in expected)

        def ledger_balances():  # {party: balance} once every line is posted at *our* ledger
            r = ledger.post("/v1/balances:query", json={"account_ids": accounts}, headers=FINANCE)
            if r.status_code != 200:
                return None  # accounts not opened yet
            got = {b["account_id"][: -len("/CNY")]: b for b in r.json()}
            return got if {p: b["balance"] for p, b in got.items()} == expected else None

        got = wait_for(ledger_balances, timeout=60, what="the ledger balances to be the finalized nets")
        assert all(b["flags"] == [] for b in got.values())
        assert sum(int(b["balance"].replace(".", "")) for b in got.values()) == 0

        def all_posted():  # the ledger's answers came back to settlement
            docs = [api.get(f"/v1/counties/{C}/periods/{p}/statement", headers=FINANCE).json() for p in ("2025-01", "2025-02", "2025-03")]
            return all(d["postings"]["posted"] == d["line_count"] for d in docs)

        wait_for(all_posted, timeout=30, what="TransferPosted for every line back at settlement")

    # -- what settlement announced -----------------------------------------------------------------------------------
    def enough(recs):
        mine = [envelope(r) for r in recs if r.key and r.key.decode().startswith(f"{C}/")]
        return sum(1 for e in mine if "SettlementFinalized" in e["type"]) == 3

    recs = [envelope(r) for r in read_from(kafka_bootstrap, events_start, enough)
            if r.key and r.key.decode().startswith(f"{C}/")]
    kinds = [e["type"].split(".")[1] for e in recs]
    assert kinds.count("SettlementFinalized") == 3 and kinds.count("AdjustmentRecorded") == 1
    adj = next(e["data"] for e in recs if "AdjustmentRecorded" in e["type"])
    assert (adj["period"], adj["adjusts_period"], adj["amount"], adj["sources"]) == ("2025-02", "2025-01", "30000.00", [f"r4-{C}"])


def _allocation_recorded(rt, allocation_id: str) -> bool:
    with rt.db.sessions() as s:
        return InputsRepository(s).allocation_row(allocation_id) is not None
