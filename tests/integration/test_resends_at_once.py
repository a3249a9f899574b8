"""One write sent several times at the same moment (a client's retry racing its first attempt, two gateways
forwarding one message) on PostgreSQL, where each transaction can read "no such id" before any inserts.

Settlement's tax receipts and assessment's first registrations failed: the loser's insert broke the unique key
and it was answered 409 ``concurrent_change`` ("read it and retry"), though it asked for exactly what was stored
(or, for a different receipt, without the reason naming the clash). Every service's unit of work now runs again
when another writer took its key (``shared.db.run_with_retry``); the new run reads the row and answers as for
any re-send. The ledger (transfers, accounts) and quota (releases) already held, by locks of their own; they are
here so that they keep holding."""
from __future__ import annotations

import random

import pytest

from services.assessment.domain.credit_code import make_credit_code
from services.settlement.intake import record_enterprise
from shared.contracts.assessment import EnterpriseRegistered
from tests.integration.settlement.support import FINANCE, TAX, credit_code, new_county
from tests.support.concurrency import together
from tests.support.services import ADMIN, auth, running_service

ECOLOGY = auth("dev-ecology-token")

COPIES = 6


@pytest.fixture
def settlement(pg_url, kafka_bootstrap):
    with running_service("settlement", pg_url, kafka_bootstrap, background=False) as (runtime, c):
        yield runtime, c


def _client_of(name: str):
    """A fixture: the HTTP client of a ``name`` service on PostgreSQL (relay and consumer stopped)."""
    @pytest.fixture
    def client(pg_url, kafka_bootstrap):
        with running_service(name, pg_url, kafka_bootstrap, background=False) as (_, c):
            yield c
    return client


assessment, quota, ledger = _client_of("assessment"), _client_of("quota"), _client_of("ledger")


def known_enterprise(runtime, county: str, n: int) -> str:
    """An enterprise settlement knows, as its consumer records the register's event."""
    code = credit_code(county, n)
    runtime.transaction(lambda uow: record_enterprise(uow.session, EnterpriseRegistered(
        credit_code=code, name="企业", county_code=county, township_code=f"{county}101", in_park=False)))
    return code


def test_an_identical_tax_receipt_sent_at_once_is_recorded_once_and_each_copy_answered(settlement):
    runtime, settlement = settlement
    county = new_county()
    for n in range(8):
        body = {"receipt_id": f"at-once-{county}-{n}", "enterprise_credit_code": known_enterprise(runtime, county, n),
                "month": "2025-01", "tax_kind": "VAT", "amount": "1000.00"}
        answers = together([lambda: settlement.post("/v1/tax-receipts", headers=TAX, json=body)] * COPIES)
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * (COPIES - 1) + [201], [(r.status_code, r.text) for r in answers]
        assert len({r.json()["received_at"] for r in answers}) == 1  # each answer is the one stored row


def test_different_receipts_under_one_id_at_once_one_stored_the_others_named_conflicts(settlement):
    runtime, settlement = settlement
    county = new_county()
    for n in range(8):
        calls = [lambda amount=amount: settlement.post("/v1/tax-receipts", headers=TAX, json={
            "receipt_id": f"clash-{county}-{n}", "enterprise_credit_code": known_enterprise(runtime, county, n), "month": "2025-01",
            "tax_kind": "VAT", "amount": f"{amount}.00"}) for amount in range(1000, 1000 + COPIES)]
        answers = together(calls)
        stored = [r for r in answers if r.status_code == 201]
        refused = [r.json()["reason"] for r in answers if r.status_code != 201]
        assert len(stored) == 1 and refused == ["receipt_id_conflict"] * (COPIES - 1), [r.text for r in answers]
        got = settlement.get(f"/v1/tax-receipts/clash-{county}-{n}", headers=FINANCE).json()
        assert got["amount"] == stored[0].json()["amount"]


def test_an_enterprise_first_registered_by_several_at_once_is_registered_once(assessment):
    county = f"{random.randint(110000, 659999)}"
    for n in range(8):
        code = make_credit_code(f"91{county}{random.randint(0, 10**9 - 1):09d}")
        entry = {"credit_code": code, "name": "企业", "industry_code": "C3311", "township_code": f"{county}101"}
        answers = together([lambda: assessment.post("/v1/enterprises", headers=ADMIN, json=entry)] * COPIES)
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * (COPIES - 1) + [201], [(r.status_code, r.text) for r in answers]
        got = assessment.get(f"/v1/enterprises/{code}", headers=ADMIN).json()
        assert got["revision"] == 1, got  # the copies changed nothing


def test_a_release_sent_at_once_is_stored_once_and_each_copy_answered(quota):
    county = f"{random.randint(110000, 659999)}"
    for n in range(8):
        body = dict(release_id=f"R-at-once-{county}-{n}", enterprise_credit_code=make_credit_code(f"91{county}{n:09d}"),
                    township_code=f"{county}100", county_code=county, asset="COD", amount="10", reason="closure",
                    basis="free", document_ref="通环收〔2024〕1号", released_on="2024-02-01")
        answers = together([lambda: quota.post("/v1/releases", headers=ECOLOGY, json=body)] * COPIES)
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * (COPIES - 1) + [201], [(r.status_code, r.text) for r in answers]
        assert all(r.json() == answers[0].json() for r in answers), [r.json() for r in answers]


def test_a_transfer_sent_at_once_has_one_effect_and_each_copy_is_told_so(ledger):
    county = f"{random.randint(110000, 659999)}"
    pool, mint = f"county:{county}/pool/COD", "external:rights-register/COD"
    r = ledger.post("/v1/accounts", headers=ADMIN, json={"accounts": [
        {"account_id": mint, "asset": "COD", "address": "external:rights-register"},
        {"account_id": pool, "asset": "COD", "address": f"county:{county}/pool"}]})
    assert r.json()["ok"], r.text
    for n in range(8):
        batch = {"transfers": [{"transfer_id": f"at-once-{county}-{n}", "debit_account": mint, "credit_account": pool,
                                "asset": "COD", "amount": "1.5", "code": "test"}]}
        answers = together([lambda: ledger.post("/v1/transfers", headers=ADMIN, json=batch)] * COPIES)
        results = sorted(r.json()["results"][0]["result"] if r.status_code == 200 else r.text for r in answers)
        assert results == ["exists"] * (COPIES - 1) + ["ok"], results
    balance = ledger.get(f"/v1/accounts/{pool}/balance", headers=ADMIN).json()
    assert balance["credits_posted"] == "12.0000", balance


def test_an_account_opened_by_several_at_once_is_opened_once(ledger):
    county = f"{random.randint(110000, 659999)}"
    for n in range(8):
        accounts = {"accounts": [{"account_id": f"township:{county}{n:03d}/COD", "asset": "COD",
                                  "address": f"township:{county}{n:03d}"}]}
        answers = together([lambda: ledger.post("/v1/accounts", headers=ADMIN, json=accounts)] * COPIES)
        results = sorted(r.json()["results"][0]["result"] if r.status_code == 200 else r.text for r in answers)
        assert results == ["exists"] * (COPIES - 1) + ["ok"], results
