"""Review of settlement's read side as a county finance system uses it (tests first): the finance API's statement,
export, position, compensation and receipt listings; paging; money as decimal strings; content hashes and ETags;
404 vs empty; China-time month boundaries; 4xx answers with a reason. HTTP reads of facts stored as intake stores them,
statements run with a chosen clock (``StatementRuns(now=...)``); on SQLite and PostgreSQL.

The county: enterprise E left township T for park P (VAT 50 %, CIT 40 % local, 6:4, remainder to the park); policy
30 % compensation, the rest 4:3:3. January 2025: VAT 333,333.33 and CIT 1.01 of E; one quota allocation of 100,000.01
from lots of E (1 unit) and E2 (2 units); finalized 2025-02-05 12:00 CST."""
from __future__ import annotations

import io
import json
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

import openpyxl
import pytest
from sqlalchemy import select

from services.settlement.domain import (
    CIT,
    VAT,
    ConsumedLot,
    QuotaAllocation,
    RevenueSharingAgreement,
    ScheduleStep,
    SettlementPolicy,
    TaxReceipt,
)
from services.settlement.domain.periods import Period
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage import tables
from services.settlement.storage.inputs import InputsRepository
from services.settlement.storage.statements import StatementsRepository
from tests.integration.settlement.support import FINANCE, credit_code, new_county
from tests.support.services import running_service
from tests.unit.settlement.settlement_factories import at

MONEY = re.compile(r"^-?(0|[1-9][0-9]*)\.[0-9]{2}$")


@pytest.fixture
def service(db_url, kafka_bootstrap):
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (runtime, api):
        yield runtime, api


def _no_floats(text: str):
    """The body as JSON, refusing any float (amounts are decimal strings)."""
    def refuse(number: str):
        raise AssertionError(f"a float in the answer: {number}")
    return json.loads(text, parse_float=refuse)


def _receipt(runtime, rid: str, enterprise: str, month: str, fen: int, received: datetime, tax: str = VAT) -> None:
    with runtime.db.sessions() as s, s.begin():
        InputsRepository(s).add_receipt(TaxReceipt(receipt_id=rid, enterprise=enterprise, month=Period.parse(month),
                                                   tax_kind=tax, amount_fen=fen, received_at=received), "http", None)


def _allocation(runtime, C: str, aid: str, on: date, due: int, lots, received: datetime, project: str = "PRJ1") -> None:
    alloc = QuotaAllocation(allocation_id=aid, project_id=project, asset="LAND", amount_units=sum(x.units for x in lots),
                            price="1.00", amount_due_fen=due, destination=f"park:P{C}", lots=tuple(lots),
                            allocated_on=on, received_at=received)
    with runtime.db.sessions() as s, s.begin():
        InputsRepository(s).add_allocation(alloc, C, aid.split(":")[0], f"ev-{aid}")


def _county(runtime) -> SimpleNamespace:
    C = new_county()
    E, E2 = credit_code(C, 1), credit_code(C, 2)
    T, P = f"township:{C}101", f"park:P{C}"
    with runtime.db.sessions() as s, s.begin():
        repo = InputsRepository(s)
        repo.add_policy(SettlementPolicy(policy_id="POL", version=1, county=C, compensation_bp=3000, township_weight=4,
                                         park_weight=3, fund_weight=3), "test", at(2025, 1, 1))
        repo.add_agreement(RevenueSharingAgreement(
            agreement_id=f"AG{C}", version=1, effective_from=date(2024, 1, 1), enterprise=E, origin=T, destination=P,
            local_shares_bp={VAT: 5000, CIT: 4000}, schedule=(ScheduleStep(1, None, 6, 4),), start=date(2024, 1, 1),
            end=date(2027, 12, 31), remainder_to=P), C, "test", at(2025, 1, 1))
    _receipt(runtime, f"vat-{C}", E, "2025-01", 33_333_333, at(2025, 2, 2))
    _receipt(runtime, f"cit-{C}", E, "2025-01", 101, at(2025, 2, 2), tax=CIT)
    _allocation(runtime, C, f"REQ{C}:LAND", date(2025, 1, 15), 10_000_001,
                [ConsumedLot(f"L1-{C}", E, T, 1), ConsumedLot(f"L2-{C}", E2, f"township:{C}102", 2)], at(2025, 1, 20))
    return SimpleNamespace(C=C, E=E, E2=E2, T=T, P=P, FUND=f"county:{C}/fund", PRJ="project:PRJ1")


def _finalize(runtime, C: str, label: str, when: datetime):
    return StatementRuns(runtime, now=lambda: when).finalize(C, label, "test")


def _statement(api, C: str, label: str, **params):
    r = api.get(f"/v1/counties/{C}/periods/{label}/statement", params=params, headers=FINANCE)
    assert r.status_code == 200, r.text
    return _no_floats(r.text)


def _all_pages(api, C: str, label: str, **params) -> tuple[list[dict], set[str]]:
    lines, hashes, after = [], set(), 0
    for _ in range(100):
        page = _statement(api, C, label, after_line=after, **params)
        hashes.add(page["content_hash"])
        lines += page["lines"]
        if page["next_after_line"] is None:
            return lines, hashes
        after = page["next_after_line"]
    raise AssertionError("paging does not end")


# -- paging and money ------------------------------------------------------------------------------------------

def test_pages_of_a_statement_give_every_line_once_and_the_figures_add_up_to_the_fen(service):
    runtime, api = service
    w = _county(runtime)
    _finalize(runtime, w.C, "2025-01", at(2025, 2, 5))
    whole = _statement(api, w.C, "2025-01", limit=1000)
    assert whole["line_count"] == len(whole["lines"]) == whole["matching_lines"] >= 6
    assert [ln["line_no"] for ln in whole["lines"]] == list(range(1, whole["line_count"] + 1))

    for limit in (1, 2, 3):
        lines, hashes = _all_pages(api, w.C, "2025-01", limit=limit)
        assert lines == whole["lines"] and hashes == {whole["content_hash"]}
    for params in ({"party": w.T}, {"party": w.PRJ}, {"kind": "compensation"}, {"agreement": f"AG{w.C}"}):
        lines, _ = _all_pages(api, w.C, "2025-01", limit=1, **params)
        expected = _statement(api, w.C, "2025-01", limit=1000, **params)
        assert lines == expected["lines"] and len(lines) == expected["matching_lines"] > 0, params

    # every amount a decimal string with exactly the fen; lines, totals and the money total agree to the fen
    money = [ln for ln in whole["lines"] if ln["kind"] != "statistics_share"]
    assert all(MONEY.match(ln["amount"]) for ln in whole["lines"])
    for t in whole["totals"]:
        assert all(MONEY.match(t[k]) for k in ("receivable", "payable", "net")), t
        assert Decimal(t["receivable"]) == sum(Decimal(ln["amount"]) for ln in money if ln["payee"] == t["party"])
        assert Decimal(t["payable"]) == sum(Decimal(ln["amount"]) for ln in money if ln["payer"] == t["party"])
        assert Decimal(t["net"]) == Decimal(t["receivable"]) - Decimal(t["payable"])
    assert sum(Decimal(t["net"]) for t in whole["totals"]) == 0
    assert Decimal(whole["money_total"]) == sum(Decimal(ln["amount"]) for ln in money)
    # the allocation's lines sum to its 100,000.01, the project's net is minus that, to the fen
    assert sum(Decimal(ln["amount"]) for ln in money if ln["payer"] == w.PRJ) == Decimal("100000.01")
    assert {t["party"]: t["net"] for t in whole["totals"]}[w.PRJ] == "-100000.01"


def test_receipt_pages_neither_skip_nor_repeat_a_receipt_while_receipts_arrive(service):
    runtime, api = service
    w = _county(runtime)
    for i in range(1, 10, 2):  # r-01, r-03, ... r-09
        _receipt(runtime, f"{w.C}-r-{i:02d}", w.E, "2025-02", 100 * i, at(2025, 3, 2))
    seen, after = [], ""
    for _ in range(20):
        r = api.get("/v1/tax-receipts", params={"enterprise": w.E, "month": "2025-02", "after": after, "limit": 2},
                    headers=FINANCE)
        assert r.status_code == 200, r.text
        doc = _no_floats(r.text)
        seen += [x["receipt_id"] for x in doc["receipts"]]
        assert all(MONEY.match(x["amount"]) for x in doc["receipts"])
        if doc["next_after"] is None:
            break
        after = doc["next_after"]
        # between pages, receipts arrive before and after the cursor
        _receipt(runtime, f"{after}a", w.E, "2025-02", 7, at(2025, 3, 3))
    assert len(seen) == len(set(seen)), seen
    assert {f"{w.C}-r-{i:02d}" for i in range(1, 10, 2)} <= set(seen)
    assert seen == sorted(seen)


def test_a_negative_net_and_a_one_fen_amount_are_decimal_strings_everywhere(service):
    runtime, api = service
    w = _county(runtime)
    _finalize(runtime, w.C, "2025-01", at(2025, 2, 5))
    page = _statement(api, w.C, "2025-01", limit=1000)
    # CIT 1.01 -> local floor(0.404) = 0.40 -> T 6/10 = 0.24: a line of 24 fen
    assert any(ln["amount"] == "0.24" and ln["tax_kind"] == "CIT" for ln in page["lines"]), page["lines"]

    pos = api.get(f"/v1/counties/{w.C}/parties/{w.P}/position", headers=FINANCE)
    assert pos.status_code == 200, pos.text
    pos = _no_floats(pos.text)
    net = {t["party"]: t["net"] for t in page["totals"]}[w.P]
    assert net.startswith("-") and pos["finalized_net"] == net == pos["periods"][0]["cumulative_finalized_net"]
    assert all(MONEY.match(pos[k]) for k in ("finalized_receivable", "finalized_payable", "finalized_net"))

    comp = api.get(f"/v1/enterprises/{w.E2}/compensation", headers=FINANCE)
    assert comp.status_code == 200, comp.text
    comp = _no_floats(comp.text)
    assert comp["draft_total"] == "0.00" and MONEY.match(comp["finalized_total"])
    assert Decimal(comp["finalized_total"]) == sum(Decimal(x["amount"]) for x in comp["lines"])

    doc = api.get(f"/v1/counties/{w.C}/periods/2025-01/statement/export", params={"format": "json"}, headers=FINANCE)
    doc = _no_floats(doc.text)
    assert doc["lines"] == page["lines"] and doc["totals"] == page["totals"]


# -- content hash, ETag ------------------------------------------------------------------------------------------

def test_not_modified_is_not_answered_for_a_statement_whose_postings_changed(service):
    """A finalized statement's page carries its ledger postings (requested / posted / rejected); its ETag was its
    content hash alone, which does not move when the ledger answers: a finance system that revalidated with
    If-None-Match was told 304 and kept "posted: 0" for good. Unchanged, it is still 304."""
    runtime, api = service
    w = _county(runtime)
    _finalize(runtime, w.C, "2025-01", at(2025, 2, 5))
    url = f"/v1/counties/{w.C}/periods/2025-01/statement"
    first = api.get(url, headers=FINANCE)
    assert first.json()["postings"] == {"requested": first.json()["line_count"], "posted": 0, "rejected": 0,
                                        "rejected_lines": []}
    etag = first.headers["etag"]

    with runtime.db.sessions() as s, s.begin():  # what the ledger's TransferPosted answers do (handlers.py)
        lp = tables.ledger_postings
        ids = [r[0] for r in s.execute(select(lp.c.transfer_id).where(lp.c.county_code == w.C)).all()]
        assert len(ids) == first.json()["line_count"]
        for transfer_id in ids:
            assert StatementsRepository(s).mark_posting(transfer_id, "posted", None, at(2025, 2, 6))
    now = api.get(url, headers=FINANCE).json()
    assert now["postings"]["posted"] == now["line_count"]

    again = api.get(url, headers={**FINANCE, "If-None-Match": etag})
    assert again.status_code == 200, "304 for a representation that changed: the postings are posted now"
    assert again.json()["postings"]["posted"] == now["line_count"]
    assert api.get(url, headers={**FINANCE, "If-None-Match": again.headers["etag"]}).status_code == 304
    export = f"{url}/export"
    etag = api.get(export, params={"format": "json"}, headers=FINANCE).headers["etag"]
    assert api.get(export, params={"format": "json"}, headers={**FINANCE, "If-None-Match": etag}).status_code == 304


def test_a_statement_rerun_over_the_same_facts_keeps_its_hash_and_a_changed_figure_changes_it(service):
    runtime, api = service
    w = _county(runtime)
    runs = StatementRuns(runtime, now=lambda: at(2025, 2, 3))
    first = runs.draft(w.C, "2025-01", "test").statement
    later = StatementRuns(runtime, now=lambda: at(2025, 2, 4)).draft(w.C, "2025-01", "test").statement
    assert later.content_hash == first.content_hash
    page = _statement(api, w.C, "2025-01")
    assert page["content_hash"] == first.content_hash and page["as_of"].startswith("2025-02-04")

    # one fen more of VAT changes a figure, and the hash with it
    _receipt(runtime, f"vat2-{w.C}", w.E, "2025-01", 1, at(2025, 2, 4, 13))
    third = StatementRuns(runtime, now=lambda: at(2025, 2, 4, 14)).draft(w.C, "2025-01", "test").statement
    assert third.content_hash != first.content_hash
    assert _statement(api, w.C, "2025-01")["content_hash"] == third.content_hash


# -- exports ---------------------------------------------------------------------------------------------------

def test_the_xlsx_summary_of_a_statement_without_lines_says_zero_lines(service):
    runtime, api = service
    w = _county(runtime)
    _finalize(runtime, w.C, "2025-01", at(2025, 2, 5))
    _finalize(runtime, w.C, "2025-02", at(2025, 3, 5))  # nothing happened in February
    page = _statement(api, w.C, "2025-02")
    assert page["line_count"] == 0 and page["money_total"] == "0.00"
    r = api.get(f"/v1/counties/{w.C}/periods/2025-02/statement/export", params={"format": "xlsx"}, headers=FINANCE)
    assert r.status_code == 200, r.text
    summary = {k: v for k, v in openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)["Summary"]
               .iter_rows(values_only=True)}
    assert summary["Money total (CNY)"] == "0.00"
    assert summary["Lines"] == "0", f"the summary sheet gives the line count as {summary['Lines']!r}"


# -- 404 vs empty, validation -------------------------------------------------------------------------------------

def test_the_receipt_listing_refuses_a_month_that_is_no_month(service):
    runtime, api = service
    w = _county(runtime)
    for month in ("2025-13", "2025-00"):
        r = api.get("/v1/tax-receipts", params={"enterprise": w.E, "month": month}, headers=FINANCE)
        assert r.status_code == 422, (month, r.status_code, r.text)
        assert r.json()["reason"] == "invalid_request"


def test_a_position_of_a_malformed_party_is_refused_not_a_zero_net(service):
    runtime, api = service
    w = _county(runtime)
    _finalize(runtime, w.C, "2025-01", at(2025, 2, 5))
    ok = api.get(f"/v1/counties/{w.C}/parties/{w.T}/position", headers=FINANCE)
    assert ok.status_code == 200 and ok.json()["finalized_net"] != "0.00"
    for typo in (f"townshp:{w.C}101", f"{w.C}101", f"township: {w.C}101"):
        r = api.get(f"/v1/counties/{w.C}/parties/{typo}/position", headers=FINANCE)
        assert r.status_code == 422, (typo, r.status_code, r.text)
        assert r.json()["reason"] == "invalid_party"
        r = api.get(f"/v1/counties/{w.C}/periods/2025-01/statement", params={"party": typo}, headers=FINANCE)
        assert (r.status_code, r.json()["reason"]) == (422, "invalid_party"), typo
    for party in (f"enterprise:{w.E}", w.PRJ, w.FUND):  # every kind of party is read
        assert api.get(f"/v1/counties/{w.C}/parties/{party}/position", headers=FINANCE).status_code == 200


def test_reads_of_what_does_not_exist_and_bad_parameters_are_4xx_with_a_reason(service):
    runtime, api = service
    w = _county(runtime)
    _finalize(runtime, w.C, "2025-01", at(2025, 2, 5))
    base = f"/v1/counties/{w.C}/periods"
    expect = [
        (f"{base}/2025-02/statement", {}, 404, "statement_not_found"),  # a period never run
        (f"/v1/counties/{new_county()}/periods/2025-01/statement", {}, 404, "statement_not_found"),
        (f"{base}/2025-02/statement/export", {}, 404, "statement_not_found"),
        (f"{base}/2025-13/statement", {}, 422, "invalid_request"),
        (f"{base}/2025-Q5/statement", {}, 422, "invalid_request"),
        ("/v1/counties/32061/periods/2025-01/statement", {}, 422, "invalid_request"),
        (f"{base}/2025-01/statement", {"limit": 0}, 422, "invalid_request"),
        (f"{base}/2025-01/statement", {"limit": 1001}, 422, "invalid_request"),
        (f"{base}/2025-01/statement", {"limit": "ten"}, 422, "invalid_request"),
        (f"{base}/2025-01/statement", {"after_line": -1}, 422, "invalid_request"),
        (f"{base}/2025-01/statement", {"kind": "bonus"}, 422, "invalid_request"),
        (f"{base}/2025-01/statement/export", {"format": "pdf"}, 422, "invalid_request"),
        (f"{base}/2025-01/statement/export", {"headers": "fr"}, 422, "invalid_request"),
        ("/v1/tax-receipts/nope-" + w.C, {}, 404, "receipt_not_found"),
        ("/v1/tax-receipts", {"limit": 0}, 422, "invalid_request"),
        ("/v1/agreements/nope-" + w.C, {}, 404, "agreement_not_found"),
        (f"/v1/enterprises/{w.E.lower()}/compensation", {}, 422, "invalid_request"),
    ]
    for url, params, status, why in expect:
        r = api.get(url, params=params, headers=FINANCE)
        assert (r.status_code, r.json().get("reason")) == (status, why), (url, params, r.text)

    # a cursor past the end is an empty last page, however far; never a 500
    for after in (10**6, 2**31, 2**63 - 1, 2**63, 10**30):
        r = api.get(f"{base}/2025-01/statement", params={"after_line": after}, headers=FINANCE)
        assert r.status_code in (200, 422), (after, r.status_code, r.text)
        if r.status_code == 200:
            assert r.json()["lines"] == [] and r.json()["next_after_line"] is None
        else:
            assert r.json()["reason"]

    # a county with nothing, a party or enterprise with nothing: empty answers, not errors
    empty = api.get(f"/v1/counties/{new_county()}/periods", headers=FINANCE)
    assert empty.status_code == 200 and empty.json()["statements"] == [] and empty.json()["last_closed"] is None


def test_an_enterprises_draft_compensation_counts_one_allocation_once(service):
    """While nothing is closed, the month and its quarter may both be drafted; each is a draft of the same money (one
    allocation). ``draft_total`` added up the lines of every draft, so the enterprise was shown twice what it is owed."""
    runtime, api = service
    w = _county(runtime)
    runs = StatementRuns(runtime, now=lambda: at(2025, 4, 5))
    jan = runs.draft(w.C, "2025-01", "test").statement
    runs.draft(w.C, "2025-Q1", "test")
    owed = sum(ln.amount_fen for ln in jan.lines if ln.payee == f"enterprise:{w.E2}")
    assert owed > 0
    r = api.get(f"/v1/enterprises/{w.E2}/compensation", params={"county": w.C}, headers=FINANCE)
    assert r.status_code == 200, r.text
    doc = _no_floats(r.text)
    assert sorted(x["period"] for x in doc["lines"]) == ["2025-01", "2025-Q1"]
    assert Decimal(doc["draft_total"]) * 100 == owed, \
        f"draft_total {doc['draft_total']} for one allocation owing {Decimal(owed) / 100:.2f}"


# -- China time ------------------------------------------------------------------------------------------------

def test_a_month_ends_at_midnight_china_time_in_what_the_statements_read(service):
    """February 2025 ends at 2025-02-28T16:00Z. Finalized at 16:30Z (00:30 on 1 March in China): allowed, its
    cut-off read back as that instant; a February receipt received at 16:20Z is in it, one received at 16:40Z is a
    late one for March."""
    runtime, api = service
    w = _county(runtime)
    _finalize(runtime, w.C, "2025-01", at(2025, 2, 5))
    utc = timezone.utc
    _receipt(runtime, f"feb-in-{w.C}", w.E, "2025-02", 1_000_00, datetime(2025, 2, 28, 16, 20, tzinfo=utc))
    with pytest.raises(Exception) as refused:  # 23:59 on 28 February in China: not over yet
        _finalize(runtime, w.C, "2025-02", datetime(2025, 2, 28, 15, 59, tzinfo=utc))
    assert getattr(refused.value, "reason", None) == "period_not_ended"
    cutoff = datetime(2025, 2, 28, 16, 30, tzinfo=utc)
    _finalize(runtime, w.C, "2025-02", cutoff)
    _receipt(runtime, f"feb-late-{w.C}", w.E, "2025-02", 2_000_00, datetime(2025, 2, 28, 16, 40, tzinfo=utc))

    feb = _statement(api, w.C, "2025-02", limit=1000)
    assert datetime.fromisoformat(feb["finalized_at"].replace("Z", "+00:00")) == cutoff
    assert (feb["period_start"], feb["period_end"]) == ("2025-02-01", "2025-02-28")
    assert [ln["sources"] for ln in feb["lines"]] == [[f"feb-in-{w.C}"]]
    periods = api.get(f"/v1/counties/{w.C}/periods", headers=FINANCE).json()
    assert (periods["last_closed"], periods["next_to_close"]) == ("2025-02", "2025-03")

    StatementRuns(runtime, now=lambda: datetime(2025, 3, 31, 16, 30, tzinfo=utc)).draft(w.C, "2025-03", "test")
    mar = _statement(api, w.C, "2025-03", limit=1000)
    assert [(ln["kind"], ln["month"], ln["sources"]) for ln in mar["lines"]] == [
        ("adjustment", "2025-02", [f"feb-late-{w.C}"])]
