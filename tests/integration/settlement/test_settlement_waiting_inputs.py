"""Receipts and statistics reports from the intake topic whose enterprise settlement does not know yet wait for it.

The tax bureau's topic and the register's events (assessment's EnterpriseRegistered, after the industry bureau's
EnterpriseReported) are not ordered against each other: a new enterprise's first receipt may well come first. It was
dead-lettered unknown_enterprise, for good, though a moment later the enterprise was known. Now it waits, is listed
(GET /v1/waiting-inputs, countypool_settlement_inputs_waiting) and is taken in when the enterprise becomes known —
by the register, an agreement or a quota lot — in the order the waiting ones came. Every other refusal still comes at
once, and the same id with other content is still a conflict."""
from __future__ import annotations

import re
import threading
import time

import pytest
from sqlalchemy import select

from services.settlement import clock as settlement_clock
from services.settlement import intake
from services.settlement import main as settlement_main
from services.settlement.storage import tables as T
from shared.contracts import topics
from shared.contracts.assessment import EnterpriseRegistered
from shared.contracts.quota import LotCreated
from shared.contracts.settlement import StatisticsReported, TaxReceiptReported
from shared.contracts.topics import dlq
from tests.integration.settlement.support import (
    FINANCE,
    OFFICE,
    TAX,
    credit_code,
    end_offsets,
    envelope,
    headers_of,
    isolated_service,
    new_county,
    publish,
    read_from,
)
from shared.settings import load_settings
from tests.support.services import TOKENS, wait_for

TAX_SOURCE = "/departments/tax"


def receipt(rid: str, enterprise: str, amount: str = "1000.00", **kw) -> TaxReceiptReported:
    return TaxReceiptReported(receipt_id=rid, enterprise_credit_code=enterprise, month="2025-06", tax_kind="VAT",
                              amount=amount, **kw)


def _metric(api, kind: str, state: str) -> int:
    text = api.get("/metrics").text
    m = re.search(rf'^countypool_settlement_inputs_waiting{{kind="{kind}",state="{state}"}} (\S+)$', text, re.M)
    assert m, f"no countypool_settlement_inputs_waiting for {kind}/{state}"
    return int(float(m.group(1)))


def _waiting(api, **params) -> list[dict]:
    r = api.get("/v1/waiting-inputs", params=params, headers=FINANCE)
    assert r.status_code == 200, r.text
    return r.json()["inputs"]


def test_intake_of_an_unknown_enterprise_waits_and_is_taken_in_when_it_is_known(db_url, kafka_bootstrap):
    C = new_county()
    E1, E2, E3 = credit_code(C, 1), credit_code(C, 2), credit_code(C, 3)
    dlq_start = end_offsets(kafka_bootstrap, [dlq(topics.INTAKE_SETTLEMENT)])
    with isolated_service("settlement", db_url, kafka_bootstrap) as (_, api):
        def get_receipt(rid):
            r = api.get(f"/v1/tax-receipts/{rid}", headers=FINANCE)
            return r.json() if r.status_code == 200 else None

        def send(ev, subject, source=TAX_SOURCE):
            return publish(kafka_bootstrap, topics.INTAKE_SETTLEMENT, ev, subject=subject, source=source)

        # E1: a receipt, the same again under another event id, then its correction — all before E1 is known
        send(receipt(f"w1-{C}", E1), E1)
        send(receipt(f"w1-{C}", E1), E1)
        send(receipt(f"w2-{C}", E1, amount="1200.00", corrects=f"w1-{C}"), E1)
        conflict = send(receipt(f"w1-{C}", E1, amount="999.00"), E1)  # the waiting id with other content
        negative = send(receipt(f"w3-{C}", E1, amount="-5.00"), E1)  # refused at once, known or not
        # a code no register or agreement can ever hold (here in full width) would wait for ever: refused at once
        odd_code = "".join(chr(ord(ch) + 0xFEE0) for ch in E1)
        odd = send(receipt(f"w5-{C}", odd_code), E1)
        # E2: a statistics report; E3: a receipt whose id HTTP will give to another receipt meanwhile
        send(StatisticsReported(report_id=f"s1-{C}", enterprise_credit_code=E2, month="2025-06", measure="value_added",
                                amount="500.00"), E2, "/departments/statistics")
        send(receipt(f"w4-{C}", E3), E3)

        wanted = {("tax_receipt", f"w1-{C}"), ("tax_receipt", f"w2-{C}"), ("statistics_report", f"s1-{C}"),
                  ("tax_receipt", f"w4-{C}")}
        wait_for(lambda: wanted <= {(w["kind"], w["input_id"]) for w in _waiting(api)}, what="four inputs waiting")
        dead = {envelope(r)["id"]: headers_of(r)["dlq-reason"]
                for r in read_from(kafka_bootstrap, dlq_start, lambda recs: len(recs) >= 3)}
        assert dead == {conflict: "receipt_id_conflict", negative: "negative_tax", odd: "unknown_enterprise"}, dead
        mine = [w for w in _waiting(api) if w["input_id"].endswith(f"-{C}")]
        assert [(w["kind"], w["input_id"], w["enterprise_credit_code"], w["state"]) for w in mine] == [
            ("statistics_report", f"s1-{C}", E2, "waiting"), ("tax_receipt", f"w1-{C}", E1, "waiting"),
            ("tax_receipt", f"w2-{C}", E1, "waiting"), ("tax_receipt", f"w4-{C}", E3, "waiting")]
        assert mine[1]["content"]["amount"] == "1000.00" and mine[2]["content"]["corrects"] == f"w1-{C}"
        assert _waiting(api, enterprise=E1, state="refused") == []
        assert _metric(api, "tax_receipt", "waiting") >= 3 and _metric(api, "statistics_report", "waiting") >= 1
        assert get_receipt(f"w1-{C}") is None, "nothing is taken in before the enterprise is known"
        # over HTTP the caller is answered at once
        r = api.post("/v1/tax-receipts", headers=TAX, json={"receipt_id": f"h1-{C}", "enterprise_credit_code": E1,
                                                            "month": "2025-06", "tax_kind": "VAT", "amount": "1.00"})
        assert (r.status_code, r.json()["reason"]) == (422, "unknown_enterprise"), r.text

        # the register names E1: the receipt, then its correction, in the order they came
        publish(kafka_bootstrap, topics.ASSESSMENT_EVENTS, EnterpriseRegistered(
            credit_code=E1, name="某某化工有限公司", county_code=C, township_code=f"{C}101", in_park=False),
            subject=E1, source="/countypool/assessment")
        first = wait_for(lambda: get_receipt(f"w1-{C}"), what="w1 taken in")
        second = wait_for(lambda: get_receipt(f"w2-{C}"), what="w2 taken in")
        assert (first["amount"], first["channel"], first["corrected_by"]) == ("1000.00", "kafka", f"w2-{C}")
        assert (second["amount"], second["corrects"], second["replaced_amount"]) == ("1200.00", f"w1-{C}", "1000.00")
        assert _waiting(api, enterprise=E1) == []

        # an agreement names E2: its report is taken in by the same transaction
        assert api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE, json={
            "compensation_bp": 2000, "township_weight": 1, "park_weight": 1, "fund_weight": 1}).status_code == 200
        r = api.post("/v1/agreements", headers=OFFICE, json={
            "agreement_id": f"FD-{C}", "county_code": C, "enterprise_credit_code": E2, "origin": f"township:{C}101",
            "destination": f"park:P{C}", "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}],
            "schedule": [{"from_year": 1, "origin_weight": 6, "destination_weight": 4}],
            "statistics_split": {"origin_weight": 5, "destination_weight": 5}, "start": "2025-01-01",
            "end": "2027-12-31"})
        assert r.status_code == 201, r.text
        assert _waiting(api, enterprise=E2) == []
        assert _metric(api, "statistics_report", "waiting") == len(
            [w for w in _waiting(api, state="waiting", limit=1000) if w["kind"] == "statistics_report"])

        # w4's id is taken over HTTP by a receipt of E1; then a quota lot names E3: w4 cannot be taken in, and says why
        r = api.post("/v1/tax-receipts", headers=TAX, json={"receipt_id": f"w4-{C}", "enterprise_credit_code": E1,
                                                            "month": "2025-06", "tax_kind": "VAT", "amount": "7.00"})
        assert r.status_code == 201, r.text
        publish(kafka_bootstrap, topics.QUOTA_EVENTS, LotCreated(
            lot_id=f"LOT-{C}", county_code=C, asset="COD", amount="2.0000", retired="0.4000", source_kind="release",
            source_ref=E3, township_code=f"{C}103", dated="2025-05-01", basis="free"),
            subject=f"LOT-{C}", source="/countypool/quota")
        refused = wait_for(lambda: _waiting(api, enterprise=E3, state="refused"), what="w4 refused when taken in")
        assert [(w["input_id"], w["refused_reason"]) for w in refused] == [(f"w4-{C}", "receipt_id_conflict")]
        assert refused[0]["refused_at"] and refused[0]["content"]["amount"] == "1000.00"
        assert get_receipt(f"w4-{C}")["enterprise_credit_code"] == E1, "the receipt recorded first stands"
        assert _metric(api, "tax_receipt", "refused") >= 1

        # paging by kind and id
        page = api.get("/v1/waiting-inputs", params={"enterprise": E3, "limit": 1}, headers=FINANCE).json()
        assert page["next_after"] is None and len(page["inputs"]) == 1
        assert api.get("/v1/waiting-inputs", params={"state": "other"}, headers=FINANCE).status_code == 422
        assert api.get("/v1/waiting-inputs").status_code == 401


def _runtime(url: str, bootstrap: str):
    runtime, _ = settlement_main.build(load_settings("settlement", database_url=url, kafka_bootstrap_servers=bootstrap,
                                                     auth_tokens_file=TOKENS))
    runtime.migrate()
    return runtime


def _rows(runtime, C: str) -> tuple[list, list]:
    with runtime.db.sessions() as s:
        return (s.execute(select(T.tax_receipts.c.receipt_id).where(T.tax_receipts.c.receipt_id.like(f"%-{C}"))).all(),
                s.execute(select(T.waiting_inputs.c.input_id).where(T.waiting_inputs.c.input_id.like(f"%-{C}"))).all())


@pytest.mark.parametrize("first", ["waits", "makes_known"])
def test_an_input_waiting_while_another_writer_makes_its_enterprise_known_is_taken_in(pg_url, kafka_bootstrap, first):
    """Two replicas: one takes a receipt of E from the intake topic while the other takes the register's event naming
    E. Neither sees the other's uncommitted row; without a lock between them the receipt waited for an enterprise
    already known, for ever. Whichever commits first, the receipt ends up taken in and nothing waits."""
    runtime = _runtime(pg_url, kafka_bootstrap)
    C = new_county()
    E = credit_code(C, 1)
    started, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def wait_for_e():
        with runtime.db.sessions() as s, s.begin():
            intake.record_tax_receipt(s, receipt(f"r1-{C}", E), channel="kafka", event_id=f"ev-{C}",
                                      wait_for_enterprise=True)
            if first == "waits":
                started.set()
                go_on.wait(15)

    def make_e_known():
        with runtime.db.sessions() as s, s.begin():
            intake.remember_enterprises(s, [(E, C, None)], "assessment", settlement_clock.now())
            if first == "makes_known":
                started.set()
                go_on.wait(15)

    def run(fn):
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    one, other = (wait_for_e, make_e_known) if first == "waits" else (make_e_known, wait_for_e)
    t1 = threading.Thread(target=run, args=(one,))
    t1.start()
    assert started.wait(15)
    t2 = threading.Thread(target=run, args=(other,))
    t2.start()
    time.sleep(1.0)  # the second writer is now blocked on the enterprise's lock (without it: done already)
    go_on.set()
    t1.join(30)
    t2.join(30)
    try:
        assert not errors, errors
        receipts, waiting = _rows(runtime, C)
        assert (receipts, waiting) == ([(f"r1-{C}",)], []), (
            f"the receipt must be taken in and nothing left waiting: receipts {receipts}, waiting {waiting}")
    finally:
        runtime.db.dispose()
