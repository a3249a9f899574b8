"""Review of settlement as a county finance auditor (tests first): the guaranteed minimum of an agreement that an
amendment extends, topped up once, where its year ends, by whoever tops it up then; receipts past a trillion yuan,
refused at the door (recorded, they added up past what the database holds and every draft failed). Agreements and
receipts through the finance API, or stored as intake stores them where the clock matters (``StatementRuns(now=...)``);
on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from services.settlement.domain import VAT, TaxReceipt
from services.settlement.domain.periods import Period
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.inputs import InputsRepository
from tests.integration.settlement.support import FINANCE, OFFICE, TAX, credit_code, new_county
from tests.support.services import running_service
from tests.integration.settlement.test_review_reads import _no_floats
from tests.unit.settlement.settlement_factories import at


@pytest.fixture
def service(db_url, kafka_bootstrap):
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (runtime, api):
        yield runtime, api


def _policy(api, C: str, **over):
    body = dict(policy_id="POL", compensation_bp=3000, township_weight=4, park_weight=3, fund_weight=3)
    body.update(over)
    r = api.put(f"/v1/counties/{C}/settlement-policy", json=body, headers=OFFICE)
    assert r.status_code in (200, 201), r.text
    return r


def _agreement(api, C: str, agreement_id: str, E: str, **over):
    body = dict(agreement_id=agreement_id, county_code=C, enterprise_credit_code=E, origin=f"township:{C}101",
                destination=f"park:P{C}", taxes=[{"tax_kind": "VAT", "local_share_bp": 5000}],
                schedule=[{"from_year": 1, "to_year": None, "origin_weight": 6, "destination_weight": 4}],
                start="2024-01-01", end="2028-12-31", remainder_to="destination")
    body.update(over)
    r = api.post("/v1/agreements", json=body, headers=OFFICE)
    assert r.status_code == 201, r.text
    return r.json()


def _receipt_http(api, rid: str, E: str, month: str, amount: str, tax: str = "VAT", corrects: str | None = None):
    body = dict(receipt_id=rid, enterprise_credit_code=E, month=month, tax_kind=tax, amount=amount)
    if corrects:
        body["corrects"] = corrects
    return api.post("/v1/tax-receipts", json=body, headers=TAX)


# -- very large amounts ------------------------------------------------------------------------------------------

def test_a_receipt_past_a_trillion_yuan_is_refused_and_receipts_up_to_it_settle_exactly(service):
    """Three receipts of 6e16 yuan each (6e18 fen, each below MAX_UNITS) were recorded (201), and their sums went past
    a BIGINT: every draft of the county failed (503 "retry" on SQLite, 422 on PostgreSQL) until they were corrected.
    A figure above one trillion yuan is a typo: refused at the door (422 ``amount_implausible``, nothing stored);
    receipts of exactly that much are recorded and settled to the fen."""
    runtime, api = service
    C = new_county()
    E = credit_code(C, 1)
    _policy(api, C)
    _agreement(api, C, f"AG{C}", E, taxes=[{"tax_kind": "VAT", "local_share_bp": 10000}],
               schedule=[{"from_year": 1, "to_year": None, "origin_weight": 1, "destination_weight": 0}])
    r = _receipt_http(api, f"typo-{C}", E, "2025-01", "60000000000000000.00")
    assert r.status_code == 422 and r.json()["reason"] == "amount_implausible", r.text
    assert api.get(f"/v1/tax-receipts/typo-{C}", headers=FINANCE).status_code == 404
    r = _receipt_http(api, f"over-{C}", E, "2025-01", "1000000000000.01")  # one fen past the ceiling
    assert r.status_code == 422 and r.json()["reason"] == "amount_implausible", r.text

    ceiling = "1000000000000.00"  # 10^14 fen
    for rid, month in ((f"big1-{C}", "2025-01"), (f"big2-{C}", "2025-01"), (f"big3-{C}", "2025-02")):
        r = _receipt_http(api, rid, E, month, ceiling)
        assert r.status_code == 201, r.text
    r = api.post(f"/v1/counties/{C}/periods/2025-02/draft", headers=OFFICE)
    assert r.status_code == 200, r.text
    page = _no_floats(api.get(f"/v1/counties/{C}/periods/2025-02/statement", params={"limit": 1000},
                              headers=FINANCE).text)
    assert sum(Decimal(ln["amount"]) for ln in page["lines"]) == Decimal(ceiling) * 3


# -- guaranteed minimum of an agreement extended by an amendment -------------------------------------------------

def _store_receipt(runtime, rid: str, E: str, month: str, fen: int, received: datetime, tax: str = VAT) -> None:
    with runtime.db.sessions() as s, s.begin():
        InputsRepository(s).add_receipt(TaxReceipt(receipt_id=rid, enterprise=E, month=Period.parse(month), tax_kind=tax,
                                                   amount_fen=fen, received_at=received), "http", None)


def _topup_nets(statements) -> dict[str, int]:
    """Per party, what the top-up lines (and their adjustments) of these statements moved: + received, - paid."""
    out: dict[str, int] = {}
    for st in statements:
        for ln in st.lines:
            if ln.kind.value == "guaranteed_minimum_topup" or (ln.adjusts is not None and
                                                               ln.adjusts.value == "guaranteed_minimum_topup"):
                out[ln.payee] = out.get(ln.payee, 0) + ln.amount_fen
                out[ln.payer] = out.get(ln.payer, 0) - ln.amount_fen
    return {k: v for k, v in out.items() if v}


def test_an_amendment_extending_an_agreement_tops_up_the_year_once_where_the_year_ends(service):
    """Version 1 runs January to June 2025 with a minimum of 10,000.00 a year, topped up by the destination; before
    any period is finalized, version 2 (from July, same start) extends it to the end of 2026 with the county fund
    topping up. Agreement year 1 is then January-December 2025 and closes in 2025-Q4 — by the version in force then
    (``_closing``), as the README says the top-up is settled "in the statement whose period holds the last month of
    an agreement year". VAT of March and September, 10,000.00 each: local 5,000.00, origin 6/10 = 3,000.00 each, so
    year 1's shortfall is 10,000.00 - 6,000.00 = 4,000.00, owed by the fund.

    Seen: 2025-Q2 tops up year 1 as if it closed in June under version 1's own end (7,000.00 paid by the park), and
    2025-Q4 'corrects' that with a negative top-up under version 2: the origin pays the county fund 3,000.00. The
    fund, which owed 4,000.00, ends up receiving 3,000.00; the park, which owed nothing, paid 7,000.00."""
    runtime, api = service
    C = new_county()
    E = credit_code(C, 1)
    T, P, FUND = f"township:{C}101", f"park:P{C}", f"county:{C}/fund"
    _policy(api, C)
    terms = dict(enterprise_credit_code=E, origin=T, destination=P,
                 taxes=[{"tax_kind": "VAT", "local_share_bp": 5000}],
                 schedule=[{"from_year": 1, "to_year": None, "origin_weight": 6, "destination_weight": 4}],
                 start="2025-01-01", guaranteed_minimum="10000.00", remainder_to="destination")
    _agreement(api, C, f"AG{C}", E, **terms, end="2025-06-30")
    r = api.post(f"/v1/agreements/AG{C}/versions", headers=OFFICE,
                 json=dict(terms, end="2026-12-31", effective_from="2025-07-01", minimum_payer=FUND))
    assert r.status_code == 201, r.text
    _store_receipt(runtime, f"mar-{C}", E, "2025-03", 1_000_000, at(2025, 4, 2))
    _store_receipt(runtime, f"sep-{C}", E, "2025-09", 1_000_000, at(2025, 10, 2))

    finalized = {}
    for label, cut in (("2025-Q1", at(2025, 4, 5)), ("2025-Q2", at(2025, 7, 5)), ("2025-Q3", at(2025, 10, 5)),
                       ("2025-Q4", at(2026, 1, 5))):
        finalized[label] = StatementRuns(runtime, now=lambda cut=cut: cut).finalize(C, label, "test").statement

    revenue = [(ln.month, ln.payer, ln.payee, ln.amount_fen) for st in finalized.values() for ln in st.lines
               if ln.kind.value == "revenue_share"]
    assert revenue == [("2025-03", P, T, 300_000), ("2025-09", P, T, 300_000)]
    # year 1 has not ended in June: the agreement, as amended before Q2 was finalized, runs on
    assert _topup_nets([finalized["2025-Q2"]]) == {}, [ln for ln in finalized["2025-Q2"].lines]
    # the year's shortfall, once, from the party that tops it up when the year ends
    assert _topup_nets(finalized.values()) == {T: 400_000, FUND: -400_000}


def test_an_amendment_after_the_short_year_was_topped_up_hands_that_top_up_back_to_its_payer(service):
    """As above, but version 1 (January-June 2025, the park topping up) is finalized through Q2 first: its short year
    closed in June and the park paid the origin 7,000.00. Then an amendment from July extends the agreement to 2026
    with the county fund topping up: year 1 runs on to December and closes in Q4. The park's 7,000.00 goes back to
    it (an adjustment), and the fund owes the year's whole shortfall, 4,000.00 — not 4,000.00 less what the park
    paid (which sent the origin's 3,000.00 to the fund and left the park 7,000.00 out)."""
    runtime, api = service
    C = new_county()
    E = credit_code(C, 1)
    T, P, FUND = f"township:{C}101", f"park:P{C}", f"county:{C}/fund"
    _policy(api, C)
    terms = dict(enterprise_credit_code=E, origin=T, destination=P,
                 taxes=[{"tax_kind": "VAT", "local_share_bp": 5000}],
                 schedule=[{"from_year": 1, "to_year": None, "origin_weight": 6, "destination_weight": 4}],
                 start="2025-01-01", guaranteed_minimum="10000.00", remainder_to="destination")
    _agreement(api, C, f"AG{C}", E, **terms, end="2025-06-30")
    _store_receipt(runtime, f"mar-{C}", E, "2025-03", 1_000_000, at(2025, 4, 2))
    finalized = {}
    for label, cut in (("2025-Q1", at(2025, 4, 5)), ("2025-Q2", at(2025, 7, 5))):
        finalized[label] = StatementRuns(runtime, now=lambda cut=cut: cut).finalize(C, label, "test").statement
    assert _topup_nets([finalized["2025-Q2"]]) == {T: 700_000, P: -700_000}  # the short year, as it stood then

    r = api.post(f"/v1/agreements/AG{C}/versions", headers=OFFICE,
                 json=dict(terms, end="2026-12-31", effective_from="2025-07-01", minimum_payer=FUND))
    assert r.status_code == 201, r.text
    _store_receipt(runtime, f"sep-{C}", E, "2025-09", 1_000_000, at(2025, 10, 2))
    for label, cut in (("2025-Q3", at(2025, 10, 5)), ("2025-Q4", at(2026, 1, 5))):
        finalized[label] = StatementRuns(runtime, now=lambda cut=cut: cut).finalize(C, label, "test").statement
    assert _topup_nets([finalized["2025-Q3"]]) == {}
    assert _topup_nets([finalized["2025-Q4"]]) == {P: 700_000, T: -700_000 + 400_000, FUND: -400_000}
    assert _topup_nets(finalized.values()) == {T: 400_000, FUND: -400_000}
