"""Bad input gets a clear, machine-readable reason; finance principals read but cannot run; the OpenAPI document
carries examples. HTTP only (relay and consumer stopped), on SQLite and PostgreSQL."""
from __future__ import annotations

import io

import openpyxl

from tests.integration.settlement.support import FINANCE, OFFICE, TAX, credit_code, new_county
from tests.support.services import auth, running_service


def agreement(C: str, E: str, **over) -> dict:
    doc = {"agreement_id": f"FD-{C}-1", "county_code": C, "enterprise_credit_code": E, "origin": f"township:{C}101",
           "destination": f"park:P{C}", "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}],
           "schedule": [{"from_year": 1, "origin_weight": 6, "destination_weight": 4}],
           "start": "2025-01-01", "end": "2026-12-31"}
    doc.update(over)
    return doc


def reason(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["message"]
    return body["reason"]


def test_bad_input_and_access_get_clear_reasons(db_url, kafka_bootstrap):
    C = new_county()
    E1, E2, STRANGER = credit_code(C, 1), credit_code(C, 2), credit_code(C, 9)
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (_, api):
        # -- access -----------------------------------------------------------------------------------------------
        assert reason(api.get(f"/v1/counties/{C}/periods"), 401) == "missing_token"
        assert reason(api.get(f"/v1/counties/{C}/periods", headers=auth("nope")), 401) == "invalid_token"
        assert reason(api.get(f"/v1/counties/{C}/periods", headers=TAX), 403) == "insufficient_scope"
        assert api.get(f"/v1/counties/{C}/periods", headers=FINANCE).status_code == 200
        for method, path in [("post", f"/v1/counties/{C}/periods/2025-01/draft"),
                             ("post", f"/v1/counties/{C}/periods/2025-01/finalize"),
                             ("put", f"/v1/counties/{C}/settlement-policy"), ("post", "/v1/agreements")]:
            assert reason(getattr(api, method)(path, headers=FINANCE, json={}), 403) == "insufficient_scope"

        # -- agreements -------------------------------------------------------------------------------------------
        assert reason(api.post(f"/v1/counties/{C}/periods/2025-01/draft", headers=OFFICE), 409) == "policy_missing"
        api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE,
                json={"compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3})
        assert reason(api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E1, start="2025-01-15")), 422) == \
            "start_not_first_of_month"
        assert reason(api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E1, destination=f"township:{C}101")),
                      422) == "origin_equals_destination"
        assert reason(api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E1, schedule=[
            {"from_year": 1, "to_year": 1, "origin_weight": 6, "destination_weight": 4}])), 422) == "invalid_schedule"
        assert api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E1)).status_code == 201
        overlapping = api.post("/v1/agreements", headers=OFFICE, json=agreement(
            C, E1, agreement_id=f"FD-{C}-2", origin=f"township:{C}102", start="2026-06-01", end="2027-05-31"))
        assert reason(overlapping, 409) == "overlapping_agreements" and "2026-06" in overlapping.json()["message"]
        assert reason(api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E1, end="2027-12-31")), 409) == \
            "agreement_exists"
        assert reason(api.post("/v1/agreements/nope/versions", headers=OFFICE, json={
            **{k: v for k, v in agreement(C, E1).items() if k not in ("agreement_id", "county_code")},
            "effective_from": "2025-06-01"}), 404) == "agreement_not_found"

        # -- receipts -----------------------------------------------------------------------------------------------
        def post_receipt(rid, enterprise=E1, month="2025-01", amount="100.00", **kw):
            return api.post("/v1/tax-receipts", headers=TAX, json={
                "receipt_id": f"{rid}-{C}", "enterprise_credit_code": enterprise, "month": month, "tax_kind": "VAT",
                "amount": amount, **kw})

        assert reason(post_receipt("x1", enterprise=STRANGER), 422) == "unknown_enterprise"
        assert reason(post_receipt("x2", amount="-100.00"), 422) == "negative_tax"
        assert reason(post_receipt("x3", month="2099-01"), 422) == "period_in_future"
        assert reason(post_receipt("x4", amount="1.005"), 422) == "amount_exceeds_scale"
        assert reason(post_receipt("x5", amount="12,5"), 422) == "invalid_request"
        assert post_receipt("ok").status_code == 201
        assert post_receipt("ok").status_code == 200  # the same again: recorded once
        assert reason(post_receipt("ok", amount="200.00"), 409) == "receipt_id_conflict"
        assert reason(post_receipt("c1", corrects=f"missing-{C}"), 422) == "correction_target_unknown"
        assert reason(post_receipt("c2", month="2025-02", corrects=f"ok-{C}"), 422) == "correction_mismatch"
        assert post_receipt("c3", amount="150.00", corrects=f"ok-{C}").status_code == 201
        assert reason(post_receipt("c4", amount="160.00", corrects=f"ok-{C}"), 409) == "already_corrected"

        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(["receipt_id", "enterprise_credit_code", "month", "tax_kind", "amount"])
        ws.append([f"i1-{C}", E1, "2025-02", "VAT", 1234.56])
        ws.append([f"i2-{C}", STRANGER, "2025-02", "VAT", "10.00"])
        ws.append([f"i3-{C}", E1, "2025-02", "VAT", "-1"])
        ws.append([f"i4-{C}", E1, "2025-13", "VAT", "1"])
        buf = io.BytesIO()
        wb.save(buf)
        r = api.post("/v1/tax-receipts/import", content=buf.getvalue(), headers={
            **OFFICE, "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
        report = r.json()
        assert (report["rows"], report["recorded"]) == (4, 1)
        assert [(p["row"], p["reason"]) for p in report["rejected"]] == [
            (3, "unknown_enterprise"), (4, "negative_tax"), (5, "invalid_row")]
        assert api.get(f"/v1/tax-receipts/i1-{C}", headers=FINANCE).json()["amount"] == "1234.56"
        assert reason(api.post("/v1/tax-receipts/import", content=b"a,b\n1,2\n", headers={**TAX, "Content-Type": "text/csv"}),
                      422) == "import_header_incomplete"

        # -- periods --------------------------------------------------------------------------------------------------
        assert reason(api.post(f"/v1/counties/{C}/periods/2099-01/draft", headers=OFFICE), 422) == "period_in_future"
        assert reason(api.post(f"/v1/counties/{C}/periods/2025-13/draft", headers=OFFICE), 422) == "invalid_request"
        assert reason(api.get(f"/v1/counties/{C}/periods/2025-01/statement", headers=FINANCE), 404) == "statement_not_found"
        draft = api.post(f"/v1/counties/{C}/periods/2025-01/draft", headers=OFFICE).json()
        assert draft["money_total"] == "45.00"  # 150.00 (corrected) -> local 75.00 -> 6:4 -> 45.00
        assert reason(api.post(f"/v1/counties/{C}/periods/2025-01/finalize", headers=OFFICE,
                               json={"expected_content_hash": "0" * 64}), 409) == "content_changed"
        current = __import__("services.settlement.clock", fromlist=["today"]).today().strftime("%Y-%m")
        assert reason(api.post(f"/v1/counties/{C}/periods/{current}/finalize", headers=OFFICE), 409) == "period_not_ended"
        assert api.post(f"/v1/counties/{C}/periods/2025-01/finalize", headers=OFFICE).status_code == 200
        again = api.post(f"/v1/counties/{C}/periods/2025-01/finalize", headers=OFFICE)  # answered, not repeated
        assert again.status_code == 200 and again.json()["content_hash"] == draft["content_hash"]
        assert reason(api.post(f"/v1/counties/{C}/periods/2025-03/finalize", headers=OFFICE), 409) == \
            "previous_period_not_closed"
        assert reason(api.post(f"/v1/counties/{C}/periods/2025-Q1/draft", headers=OFFICE), 409) == "period_already_closed"

        # amendments take effect in open months only
        terms = {k: v for k, v in agreement(C, E1).items() if k not in ("agreement_id", "county_code")}
        assert reason(api.post(f"/v1/agreements/FD-{C}-1/versions", headers=OFFICE,
                               json={**terms, "effective_from": "2025-01-01"}), 409) == "effective_in_closed_period"
        amended = api.post(f"/v1/agreements/FD-{C}-1/versions", headers=OFFICE, json={
            **terms, "effective_from": "2025-07-01", "schedule": [{"from_year": 1, "origin_weight": 5, "destination_weight": 5}]})
        assert amended.status_code == 201 and [v["version"] for v in amended.json()["versions"]] == [1, 2]
        assert reason(api.post(f"/v1/agreements/FD-{C}-1/versions", headers=OFFICE, json={
            **terms, "effective_from": "2025-09-01", "version": 2}), 409) == "version_conflict"
        assert reason(api.post("/v1/agreements", headers=OFFICE, json=agreement(
            C, E2, agreement_id=f"FD-{C}-3", start="2024-06-01")), 409) == "effective_in_closed_period"

        # -- the OpenAPI document documents the API with examples ----------------------------------------------------
        doc = api.get("/openapi.json").json()
        assert doc["components"]["schemas"]["AgreementIn"]["examples"][0]["schedule"][0]["origin_weight"] == 6
        assert "/v1/counties/{county}/periods/{period}/statement/export" in doc["paths"]


def test_an_amendment_cannot_take_closed_months_from_the_version_before(db_url, kafka_bootstrap):
    C = new_county()
    E1 = credit_code(C, 1)
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (_, api):
        api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE,
                json={"compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3})
        # the origin cannot pay its own guaranteed minimum (a transfer from its account to itself)
        assert reason(api.post("/v1/agreements", headers=OFFICE, json=agreement(
            C, E1, guaranteed_minimum="1000.00", minimum_payer=f"township:{C}101")), 422) == "minimum_payer_is_origin"
        assert api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E1)).status_code == 201

        def post_receipt(rid, amount, **kw):
            return api.post("/v1/tax-receipts", headers=TAX, json={
                "receipt_id": f"{rid}-{C}", "enterprise_credit_code": E1, "month": "2025-01", "tax_kind": "VAT",
                "amount": amount, **kw})

        assert post_receipt("r1", "1000.00").status_code == 201
        jan = api.post(f"/v1/counties/{C}/periods/2025-01/finalize", headers=OFFICE)
        assert jan.status_code == 200 and jan.json()["money_total"] == "300.00", jan.text

        # effective in the closed January, terms from June: it would end v1 there, leaving January to no agreement
        terms = {k: v for k, v in agreement(C, E1).items() if k not in ("agreement_id", "county_code")}
        refused = api.post(f"/v1/agreements/FD-{C}-1/versions", headers=OFFICE,
                           json={**terms, "effective_from": "2025-01-01", "start": "2025-06-01"})
        assert reason(refused, 409) == "effective_in_closed_period" and "2025-01-01" in refused.json()["message"]
        # from the first open month it may
        amended = api.post(f"/v1/agreements/FD-{C}-1/versions", headers=OFFICE,
                           json={**terms, "effective_from": "2025-02-01", "start": "2025-06-01"})
        assert amended.status_code == 201, amended.text

        # January is still v1's: a correction of it is settled in February (2000.00 -> 600.00, 300.00 more)
        assert post_receipt("c1", "2000.00", corrects=f"r1-{C}").status_code == 201
        feb = api.post(f"/v1/counties/{C}/periods/2025-02/draft", headers=OFFICE).json()
        assert feb["money_total"] == "300.00"
        lines = api.get(f"/v1/counties/{C}/periods/2025-02/statement", headers=FINANCE).json()["lines"]
        assert [(ln["kind"], ln["month"], ln["agreement_version"], ln["amount"]) for ln in lines] == [
            ("adjustment", "2025-01", 1, "300.00")]
