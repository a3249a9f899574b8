"""Facts arriving over Kafka: tax receipts on the intake topic (checked against the publishing department),
the enterprise register from assessment, lots and buy-backs from the quota service. A refused message goes to
``countypool.intake.settlement.dlq`` with its reason and the consumer carries on."""
from __future__ import annotations

from shared.contracts import topics
from shared.contracts.assessment import EnterpriseRegistered
from shared.contracts.quota import BuybackOwed, LotCreated
from shared.contracts.settlement import TaxReceiptReported
from shared.contracts.topics import dlq
from tests.integration.settlement.support import (
    FINANCE,
    OFFICE,
    credit_code,
    end_offsets,
    envelope,
    headers_of,
    isolated_service,
    new_county,
    publish,
    read_from,
)
from tests.support.services import wait_for

TAX_SOURCE = "/departments/tax"


def receipt(rid: str, enterprise: str, amount: str = "1000.00", month: str = "2025-06", **kw) -> TaxReceiptReported:
    return TaxReceiptReported(receipt_id=rid, enterprise_credit_code=enterprise, month=month, tax_kind="VAT", amount=amount, **kw)


def test_receipts_over_kafka_refusals_to_the_dlq_and_quota_facts(db_url, kafka_bootstrap):
    C = new_county()
    E1, E2, STRANGER = credit_code(C, 1), credit_code(C, 2), credit_code(C, 9)
    dlq_start = end_offsets(kafka_bootstrap, [dlq(topics.INTAKE_SETTLEMENT)])
    with isolated_service("settlement", db_url, kafka_bootstrap) as (_, api):
        def get_receipt(rid):
            r = api.get(f"/v1/tax-receipts/{rid}", headers=FINANCE)
            return r.json() if r.status_code == 200 else None

        # the register says E1 exists; its receipt arrives before any agreement names it
        publish(kafka_bootstrap, topics.ASSESSMENT_EVENTS, EnterpriseRegistered(
            credit_code=E1, name="某某化工有限公司", county_code=C, township_code=f"{C}101", in_park=False),
            subject=E1, source="/countypool/assessment")
        wait_for(lambda: _known(api, E1, C), what="E1 registered")
        good = publish(kafka_bootstrap, topics.INTAKE_SETTLEMENT, receipt(f"k1-{C}", E1), subject=E1, source=TAX_SOURCE)
        publish(kafka_bootstrap, topics.INTAKE_SETTLEMENT, receipt(f"k1-{C}", E1), subject=E1, source=TAX_SOURCE)  # re-sent
        refused = {
            publish(kafka_bootstrap, topics.INTAKE_SETTLEMENT, receipt(f"k2-{C}", E1), subject=E1,
                    source="/departments/ecology"): "source_not_allowed",
            publish(kafka_bootstrap, topics.INTAKE_SETTLEMENT, receipt(f"k3-{C}", E1), subject=E1,
                    source="/departments/nobody"): "unknown_source",
            publish(kafka_bootstrap, topics.INTAKE_SETTLEMENT, receipt(f"k5-{C}", E1, amount="-5.00"), subject=E1,
                    source=TAX_SOURCE): "negative_tax",
            publish(kafka_bootstrap, topics.INTAKE_SETTLEMENT, receipt(f"k1-{C}", E1, amount="999.00"), subject=E1,
                    source=TAX_SOURCE): "receipt_id_conflict",
            publish(kafka_bootstrap, topics.INTAKE_SETTLEMENT, receipt(f"k6-{C}", E1, month="2099-01"), subject=E1,
                    source=TAX_SOURCE): "period_in_future",
        }
        got = wait_for(lambda: get_receipt(f"k1-{C}"), what="the receipt from Kafka")
        assert (got["amount"], got["channel"]) == ("1000.00", "kafka")

        def all_refused(recs):
            return refused.keys() <= {envelope(r)["id"] for r in recs}

        dead = {envelope(r)["id"]: headers_of(r)["dlq-reason"] for r in read_from(kafka_bootstrap, dlq_start, all_refused)}
        assert {i: dead.get(i) for i in refused} == refused
        assert good not in dead
        # a receipt of an enterprise nobody has named yet waits for it (not dead-lettered unknown_enterprise)
        waiting = publish(kafka_bootstrap, topics.INTAKE_SETTLEMENT, receipt(f"k4-{C}", STRANGER), subject=STRANGER,
                          source=TAX_SOURCE)
        listed = wait_for(lambda: api.get("/v1/waiting-inputs", params={"enterprise": STRANGER}, headers=FINANCE)
                          .json()["inputs"], what="the receipt waiting for its enterprise")
        assert [(w["kind"], w["input_id"], w["state"], w["content"]["amount"]) for w in listed] == [
            ("tax_receipt", f"k4-{C}", "waiting", "1000.00")]
        for rid in ("k2", "k3", "k4", "k5", "k6"):
            assert get_receipt(f"{rid}-{C}") is None

        # quota facts: a lot freed by E2 makes it known; a buy-back of its paid rights is owed by the county fund
        publish(kafka_bootstrap, topics.QUOTA_EVENTS, LotCreated(
            lot_id=f"LOT-{C}", county_code=C, asset="COD", amount="2.0000", retired="0.4000", source_kind="release",
            source_ref=E2, township_code=f"{C}102", dated="2025-05-01", basis="paid", buyback_price_per_unit="30000.00"),
            subject=f"LOT-{C}", source="/countypool/quota")
        publish(kafka_bootstrap, topics.QUOTA_EVENTS, BuybackOwed(
            lot_id=f"LOT-{C}", county_code=C, enterprise_credit_code=E2, township_code=f"{C}102", asset="COD",
            amount="1.6000", amount_due="48000.00"), subject=f"LOT-{C}", source="/countypool/quota")
        wait_for(lambda: _known(api, E2, C), what="E2 known from its lot")

        # the agreement comes after the receipt: the draft still finds it
        assert api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE, json={
            "compensation_bp": 2000, "township_weight": 1, "park_weight": 1, "fund_weight": 1}).status_code == 200
        r = api.post("/v1/agreements", headers=OFFICE, json={
            "agreement_id": f"FD-{C}", "county_code": C, "enterprise_credit_code": E1, "origin": f"township:{C}101",
            "destination": f"park:P{C}", "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}],
            "schedule": [{"from_year": 1, "origin_weight": 6, "destination_weight": 4}],
            "statistics_split": {"origin_weight": 5, "destination_weight": 5}, "start": "2025-01-01", "end": "2027-12-31"})
        assert r.status_code == 201, r.text
        # value added is shared too (统计分成), but it is not money: 1,000.01 -> 5:5, remainder to the park
        r = api.post("/v1/statistics-reports", headers=OFFICE, json={
            "report_id": f"va-{C}", "enterprise_credit_code": E1, "month": "2025-06", "measure": "value_added",
            "amount": "1000.01"})
        assert r.status_code == 201, r.text
        draft = api.post(f"/v1/counties/{C}/periods/2025-06/draft", headers=OFFICE).json()
        june = api.get(f"/v1/counties/{C}/periods/2025-06/statement", headers=FINANCE).json()
        assert [(ln["kind"], ln["amount"], ln["sources"]) for ln in june["lines"]] == [
            ("revenue_share", "300.00", [f"k1-{C}"]), ("statistics_share", "500.00", [f"va-{C}"])]
        assert draft["money_total"] == "300.00"
        assert june["statistics_totals"] == [
            {"party": f"park:P{C}", "measure": "value_added", "gained": "0.00", "ceded": "500.00"},
            {"party": f"township:{C}101", "measure": "value_added", "gained": "500.00", "ceded": "0.00"}]

        # the buy-back belongs to the month the quota service announced it (now)
        def buyback_lines():
            label = _current_month()
            r = api.post(f"/v1/counties/{C}/periods/{label}/draft", headers=OFFICE)
            assert r.status_code == 200, r.text
            doc = api.get(f"/v1/counties/{C}/periods/{label}/statement", params={"kind": "buyback"}, headers=FINANCE).json()
            return doc["lines"]

        lines = wait_for(buyback_lines, what="the buy-back line")
        assert [(ln["payer"], ln["payee"], ln["amount"]) for ln in lines] == [(f"county:{C}/fund", f"enterprise:{E2}", "48000.00")]

        # the register names the stranger: its waiting receipt is taken in, never dead-lettered
        publish(kafka_bootstrap, topics.ASSESSMENT_EVENTS, EnterpriseRegistered(
            credit_code=STRANGER, name="某某新材料有限公司", county_code=C, township_code=f"{C}103", in_park=False),
            subject=STRANGER, source="/countypool/assessment")
        got = wait_for(lambda: get_receipt(f"k4-{C}"), what="the waiting receipt taken in")
        assert (got["amount"], got["channel"]) == ("1000.00", "kafka")
        assert api.get("/v1/waiting-inputs", params={"enterprise": STRANGER}, headers=FINANCE).json()["inputs"] == []
        assert waiting not in {envelope(r)["id"] for r in read_from(kafka_bootstrap, dlq_start, lambda recs: False, timeout=3)}


def _current_month() -> str:
    from services.settlement import clock

    return clock.today().strftime("%Y-%m")


def _known(api, enterprise: str, county: str) -> bool:
    """Probe with a zero receipt (never stored): a known enterprise's is refused as zero_tax, not unknown_enterprise."""
    r = api.post("/v1/tax-receipts", headers=OFFICE, json={
        "receipt_id": f"probe-{enterprise}", "enterprise_credit_code": enterprise, "month": "2025-01",
        "tax_kind": "VAT", "amount": "0.00"})
    return r.json().get("reason") == "zero_tax"
