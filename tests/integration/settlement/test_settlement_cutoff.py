"""Receipts keep arriving while a period is finalized: each lands in exactly one statement — in the finalized one,
or as an adjustment in the next — never in both, never lost (the cut-off lock, services/settlement/storage/locks.py).

Each receipt is 100.00 of VAT for January: local 50.00, origin 6/10 = 30.00, so every receipt moves the origin's
share by exactly 30.00 and a lost or doubled receipt shows in the totals."""
from __future__ import annotations

import threading

from shared.contracts.settlement import TaxReceiptReported
from services.settlement import intake
from tests.integration.settlement.support import FINANCE, OFFICE, credit_code, new_county
from tests.support.services import running_service


def test_receipts_racing_a_finalization_are_settled_exactly_once(db_url, kafka_bootstrap):
    C = new_county()
    E = credit_code(C, 1)
    T1 = f"township:{C}101"
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (rt, api):
        api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE,
                json={"compensation_bp": 0, "township_weight": 1, "park_weight": 1, "fund_weight": 1})
        assert api.post("/v1/agreements", headers=OFFICE, json={
            "agreement_id": f"FD-{C}", "county_code": C, "enterprise_credit_code": E, "origin": T1,
            "destination": f"park:P{C}", "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}],
            "schedule": [{"from_year": 1, "origin_weight": 6, "destination_weight": 4}],
            "start": "2024-01-01", "end": "2027-12-31"}).status_code == 201

        stop = threading.Event()
        sent: list[str] = []

        def keep_sending(sender: int):
            i = 0
            while not stop.is_set() or i < 20:
                rid = f"race-{C}-{sender}-{i:05d}"
                ev = TaxReceiptReported(receipt_id=rid, enterprise_credit_code=E, month="2025-01", tax_kind="VAT",
                                        amount="100.00")
                rt.transaction(lambda uow: intake.record_tax_receipt(uow.session, ev, channel="http"))
                sent.append(rid)
                i += 1

        senders = [threading.Thread(target=keep_sending, args=(n,)) for n in range(2)]
        for t in senders:
            t.start()
        try:
            while len(sent) < 10:
                threading.Event().wait(0.01)
            jan = api.post(f"/v1/counties/{C}/periods/2025-01/finalize", headers=OFFICE)
            assert jan.status_code == 200, jan.text
        finally:
            stop.set()
            for t in senders:
                t.join()
        feb = api.post(f"/v1/counties/{C}/periods/2025-02/finalize", headers=OFFICE)
        assert feb.status_code == 200, feb.text

        position = api.get(f"/v1/counties/{C}/parties/{T1}/position", headers=FINANCE).json()
        per_period = {p["period"]: p["receivable"] for p in position["periods"]}
        in_jan = int(per_period["2025-01"].replace(".", "")) // 3000
        in_feb = int(per_period.get("2025-02", "0.00").replace(".", "")) // 3000
        assert in_jan >= 10 and in_jan + in_feb == len(sent), (in_jan, in_feb, len(sent))
        assert position["finalized_receivable"] == f"{30 * len(sent)}.00"
