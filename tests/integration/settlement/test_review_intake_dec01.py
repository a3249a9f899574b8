"""Review of what settlement takes in over Kafka, against the same facts over HTTP (tests first).

A poll is handed to the real consumer's ``_apply`` as the records Kafka would give it (as test_settlement_batch.py
does), either all together or one record per poll; what would go to the dead-letter topic is captured from the
consumer instead of read back from Kafka. The HTTP side is the real finance API (TestClient) on the same database.
"""
from __future__ import annotations

import json
import uuid
from collections import namedtuple
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

import services.settlement.main as settlement
from services.settlement import clock
from shared.contracts import topics
from shared.contracts.assessment import EnterpriseRegistered
from shared.contracts.settlement import TaxReceiptReported
from shared.envelope import new_envelope
from shared.settings import load_settings
from tests.integration.settlement.support import OFFICE, credit_code, new_county
from tests.support.services import TOKENS

Record = namedtuple("Record", "topic partition offset key value headers", defaults=((),))
TAX = "/departments/tax"
ASSESSMENT = "/countypool/assessment"


class Service:
    """The settlement service on one database: its consumer (fed records by hand) and its finance API."""

    def __init__(self, url: str, bootstrap: str):
        self.runtime, app = settlement.build(load_settings(
            "settlement", database_url=url, kafka_bootstrap_servers=bootstrap, auth_tokens_file=TOKENS,
            relay_enabled=False, consumer_enabled=False, log_json=False))
        self.runtime.migrate()
        self.api = TestClient(app)
        self.consumer = self.runtime.consumer
        self.dead: list[tuple[str, str]] = []  # (event id, dlq reason) of each dead letter
        self._offset = 0

        def capture(letters):
            for d in letters:
                self.dead.append((json.loads(d.record.value)["id"], d.reason))

        self.consumer._send_dead_letters = capture

    def record(self, topic: str, event, source: str, *, event_id: str | None = None, subject: str = "k") -> Record:
        env = new_envelope(event, subject=subject, source=source, event_id=event_id or str(uuid.uuid4()))
        self._offset += 1
        return Record(topic, 0, self._offset, subject.encode(), env.to_json())

    def poll(self, *records: Record) -> None:
        self.consumer._apply(list(records))

    def receipt(self, rid: str):
        r = self.api.get(f"/v1/tax-receipts/{rid}", headers=OFFICE)
        return r.json() if r.status_code == 200 else None

    def close(self):
        self.api.close()
        self.runtime.db.dispose()


@pytest.fixture
def service(db_url, kafka_bootstrap):
    s = Service(db_url, kafka_bootstrap)
    yield s
    s.close()


@pytest.fixture
def pg_service(pg_url, kafka_bootstrap):
    s = Service(pg_url, kafka_bootstrap)
    yield s
    s.close()


def registered(svc: Service, C: str, E: str) -> Record:
    return svc.record(topics.ASSESSMENT_EVENTS, EnterpriseRegistered(
        credit_code=E, name="某化工", county_code=C, township_code=f"{C}101", in_park=False), ASSESSMENT)


def tax(rid: str, E: str, amount: str = "1000.00", month: str = "2025-06", kind: str = "VAT", **kw) -> TaxReceiptReported:
    return TaxReceiptReported(receipt_id=rid, enterprise_credit_code=E, month=month, tax_kind=kind, amount=amount, **kw)


def post_receipt(svc: Service, rid: str, E: str, amount: str, **kw):
    return svc.api.post("/v1/tax-receipts", headers=OFFICE, json={
        "receipt_id": rid, "enterprise_credit_code": E, "month": "2025-06", "tax_kind": "VAT", "amount": amount, **kw})


# -- defects ------------------------------------------------------------------------------------------------

def test_a_kafka_correction_of_an_http_receipt_taken_by_a_replica_whose_clock_ran_ahead_is_taken(service, monkeypatch):
    """Two replicas: the HTTP one's clock 50 ms ahead of the consumer's. The correction is handled after the
    original committed (it reads it), yet it was refused correction_before_original, for good, because its own
    stamp came from the slower clock."""
    svc = service
    C = new_county()
    E = credit_code(C, 1)
    svc.poll(registered(svc, C, E))
    real = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real + timedelta(milliseconds=50))  # replica A answers HTTP
    assert post_receipt(svc, f"o-{C}", E, "100.00").status_code == 201
    monkeypatch.setattr(clock, "now", lambda: real)  # replica B consumes the intake topic
    svc.poll(svc.record(topics.INTAKE_SETTLEMENT, tax(f"c-{C}", E, amount="80.00", corrects=f"o-{C}"), TAX))
    assert svc.dead == []
    got = svc.receipt(f"c-{C}")
    assert got is not None and (got["amount"], got["replaced_amount"], got["channel"]) == ("80.00", "100.00", "kafka")
    assert svc.receipt(f"o-{C}")["corrected_by"] == f"c-{C}"
    assert got["received_at"] > svc.receipt(f"o-{C}")["received_at"], "stamped after the receipt it corrects"


def test_a_receipt_with_a_tax_kind_too_long_to_store_is_refused_over_kafka_with_a_reason_as_over_http(service):
    """A 44-character code passes check_tax_kind (and an agreement may name it), but tax_receipts.tax_kind holds 40:
    HTTP refuses it (422); over Kafka PostgreSQL broke the insert five times and it was dead-lettered
    handler_db_error, and SQLite stored what HTTP refuses."""
    svc = service
    C = new_county()
    E = credit_code(C, 1)
    svc.poll(registered(svc, C, E))
    kind = "URBAN_MAINTENANCE_AND_CONSTRUCTION_TAX_LOCAL"
    over_http = svc.api.post("/v1/tax-receipts", headers=OFFICE, json={
        "receipt_id": f"h-{C}", "enterprise_credit_code": E, "month": "2025-06", "tax_kind": kind, "amount": "1.00"})
    assert 400 <= over_http.status_code < 500, over_http.text
    # the contract now bounds it as HTTP does: sent by a producer that does not check, it is refused invalid_payload
    unchecked = TaxReceiptReported.model_construct(receipt_id=f"k-{C}", enterprise_credit_code=E, month="2025-06",
                                                   tax_kind=kind, amount="1.00", corrects=None)
    rec = svc.record(topics.INTAKE_SETTLEMENT, unchecked, TAX)
    svc.poll(rec)
    eid = json.loads(rec.value)["id"]
    assert svc.receipt(f"k-{C}") is None, "taken over Kafka, refused over HTTP"
    reasons = [reason for i, reason in svc.dead if i == eid]
    assert reasons == ["invalid_payload"], reasons


def test_an_event_republished_under_its_id_with_a_fixed_body_has_one_outcome_however_the_polls_cut(service):
    """A department's receipt is refused (negative_tax: nothing of it taken, no inbox row) and re-published with the
    amount fixed under the same event id. In a poll of its own the fixed one is taken; in the same poll as the
    refused one it was dead-lettered duplicate_id_different_body (the refused id was marked seen) and lost."""
    svc = service
    C = new_county()
    E = credit_code(C, 1)
    svc.poll(registered(svc, C, E))
    outcomes = {}
    for how in ("alone", "together"):
        eid = f"tax-{C}-{how}"
        bad = svc.record(topics.INTAKE_SETTLEMENT, tax(f"{how}-{C}", E, amount="-5.00"), TAX, event_id=eid)
        fixed = svc.record(topics.INTAKE_SETTLEMENT, tax(f"{how}-{C}", E, amount="5.00"), TAX, event_id=eid)
        svc.dead.clear()
        if how == "alone":
            svc.poll(bad)
            svc.poll(fixed)
        else:
            svc.poll(bad, fixed)
        got = svc.receipt(f"{how}-{C}")
        outcomes[how] = (sorted(reason for _, reason in svc.dead), got and got["amount"])
    assert outcomes["alone"] == (["negative_tax"], "5.00")
    assert outcomes["together"] == outcomes["alone"]


# -- guards -------------------------------------------------------------------------------------------------

def test_an_http_receipt_its_kafka_copy_and_corrections_in_one_poll_settle_one_chain(service):
    """The same receipt over HTTP and then Kafka is one receipt; a correction over Kafka in the same poll as another
    receipt and a copy of that correction replaces it once; a second, different correction of it is refused."""
    svc = service
    C = new_county()
    E = credit_code(C, 1)
    svc.poll(registered(svc, C, E))
    assert post_receipt(svc, f"r1-{C}", E, "100.00").status_code == 201
    R = topics.INTAKE_SETTLEMENT
    copy, other = svc.record(R, tax(f"r1-{C}", E, amount="100.00"), TAX), svc.record(R, tax(f"r2-{C}", E), TAX)
    fix = svc.record(R, tax(f"r1c-{C}", E, amount="70.00", corrects=f"r1-{C}"), TAX)
    fix_again = svc.record(R, tax(f"r1c-{C}", E, amount="70.00", corrects=f"r1-{C}"), TAX)
    rival = svc.record(R, tax(f"r1d-{C}", E, amount="60.00", corrects=f"r1-{C}"), TAX)
    svc.poll(copy, other, fix, fix_again, rival)
    assert [reason for _, reason in svc.dead] == ["already_corrected"]
    r1, r1c = svc.receipt(f"r1-{C}"), svc.receipt(f"r1c-{C}")
    assert (r1["channel"], r1["amount"], r1["corrected_by"]) == ("http", "100.00", f"r1c-{C}")
    assert (r1c["replaced_amount"], r1c["amount"]) == ("100.00", "70.00")
    assert svc.receipt(f"r2-{C}")["amount"] == "1000.00" and svc.receipt(f"r1d-{C}") is None
    # the HTTP side answers the Kafka-made state: a re-send is 200 unchanged, the rival 409
    again = post_receipt(svc, f"r1c-{C}", E, "70.00", corrects=f"r1-{C}")
    assert (again.status_code, again.json()["created"]) == (200, False)
    assert post_receipt(svc, f"r1e-{C}", E, "50.00", corrects=f"r1-{C}").status_code == 409
