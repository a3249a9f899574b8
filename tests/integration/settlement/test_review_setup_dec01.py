"""Review of settlement's setup as the county finance office does it (tests first): registering agreements and their
amendments over HTTP, and what the county can still do with what was accepted. Every term the API takes must either
be refused where it enters (4xx with a machine-readable reason, nothing stored) or be one the county can settle,
read, amend and finalize afterwards: an agreement that is stored and then stops the county's drafts or
finalizations, or can never be read or amended, is the defect.

HTTP only (relay and consumer stopped), on SQLite and PostgreSQL; helpers from test_settlement_refusals."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.integration.settlement.support import FINANCE, OFFICE, TAX, credit_code, new_county
from tests.integration.settlement.test_settlement_refusals import agreement
from tests.support.services import running_service

POLICY = {"compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3}


@pytest.fixture
def county(db_url, kafka_bootstrap):
    """(api, county code) with the county's settlement policy set."""
    C = new_county()
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (_, api):
        assert api.put(f"/v1/counties/{C}/settlement-policy", headers=OFFICE, json=POLICY).status_code == 200
        yield api, C


def _terms(C: str, E: str, **over) -> dict:
    """An amendment's body: the agreement's terms without id and county."""
    doc = {k: v for k, v in agreement(C, E).items() if k not in ("agreement_id", "county_code")}
    doc.update(over)
    return doc


def _receipt(api, rid: str, E: str, month: str, amount: str):
    r = api.post("/v1/tax-receipts", headers=TAX, json={"receipt_id": rid, "enterprise_credit_code": E, "month": month,
                                                        "tax_kind": "VAT", "amount": amount})
    assert r.status_code == 201, r.text
    return r


def _refused(r, aid: str, api) -> None:
    """A refusal as the API promises one: 4xx, a reason and a message, and nothing stored."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    assert body.get("reason") and body.get("message"), body
    assert api.get(f"/v1/agreements/{quote(aid, safe='')}", headers=FINANCE).status_code == 404


def _call(fn, *args, **kwargs):
    """A request whose server-side exception (SQLite path: a raw ValidationError) becomes a 500 answer to assert on."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - TestClient re-raises the app's unhandled exception
        return type("Crash", (), {"status_code": 500, "text": f"{type(exc).__name__}: {exc}"})()


# -- defects -------------------------------------------------------------------------------------------------------

def test_an_agreement_id_with_a_slash_is_refused_or_can_be_read_and_amended(county):
    """``agreement_id`` is an Identifier and the domain's id pattern allows '/' (county documents are numbered like
    FD/2026/001), so POST /v1/agreements stores it; but GET /v1/agreements/{id} and POST .../{id}/versions take the
    id as one path segment, so that agreement answers the generic 404 ``not_found`` for ever (even URL-encoded): it can
    never be read by id or amended, and its id stays taken. Either the id is refused where it enters, or it works."""
    api, C = county
    E = credit_code(C, 1)
    aid = f"FD/{C}/1"
    created = api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E, agreement_id=aid))
    if created.status_code != 201:
        _refused(created, aid, api)
        return
    read = api.get(f"/v1/agreements/{quote(aid, safe='')}", headers=FINANCE)
    assert read.status_code == 200, f"agreement {aid} was stored but cannot be read by its id: {read.status_code} {read.text}"
    amended = api.post(f"/v1/agreements/{quote(aid, safe='')}/versions", headers=OFFICE,
                       json=_terms(C, E, effective_from="2025-06-01",
                                   schedule=[{"from_year": 1, "origin_weight": 5, "destination_weight": 5}]))
    assert amended.status_code == 201, f"agreement {aid} was stored but cannot be amended: {amended.status_code} {amended.text}"


def test_a_guaranteed_minimum_past_a_trillion_yuan_is_refused_or_the_county_still_drafts(county):
    """A receipt, report, allocation or buy-back above one trillion yuan is refused ``amount_implausible`` because,
    once recorded, such a figure adds up past what a statement's sums hold (BIGINT) and stops every draft of the
    county (domain/limits.py). An agreement's guaranteed minimum is checked only against BIGINT itself: a minimum of
    92,233,720,368,547,758.07 yuan a year (digits pasted twice) is stored, and when its year closes its top-up plus any
    other money line of the period overflow the statement's total: drafting the period is refused 422 invalid_value
    'bigint out of range' (PostgreSQL) / 'Python int too large to convert to SQLite INTEGER'."""
    api, C = county
    E1, E2 = credit_code(C, 1), credit_code(C, 2)
    typo = api.post("/v1/agreements", headers=OFFICE, json=agreement(
        C, E1, agreement_id=f"MIN-{C}", guaranteed_minimum="92233720368547758.07"))
    ordinary = api.post("/v1/agreements", headers=OFFICE, json=agreement(
        C, E2, agreement_id=f"ORD-{C}", origin=f"township:{C}102"))
    assert ordinary.status_code == 201, ordinary.text
    _receipt(api, f"r-{C}", E2, "2025-12", "100.00")
    if typo.status_code != 201:
        _refused(typo, f"MIN-{C}", api)
        assert typo.status_code == 422
    # year 1 of MIN closes in December 2025, with the ordinary agreement's share in the same statement
    for period in ("2025-12", "2025-Q4"):
        draft = _call(api.post, f"/v1/counties/{C}/periods/{period}/draft", headers=OFFICE)
        assert draft.status_code == 200, (
            f"the county cannot draft {period} since a guaranteed minimum of 92,233,720,368,547,758.07 yuan was "
            f"accepted: {draft.status_code} {draft.text}")


def test_a_party_too_long_for_a_ledger_account_is_refused_or_the_period_still_finalizes(county):
    """A park id has no length limit but the column's 200 characters, yet every party becomes a ledger account
    ``<party>/CNY`` and the ledger's contract takes account ids of at most 200 (TransferSpec, AccountSpec). A
    destination ``park:`` + 195 characters is stored; its statement drafts; finalizing it fails — a raw pydantic
    ValidationError from ledger_postings._transfer (500, SQLite) or 422 invalid_value 'value too long for type
    character varying(200)' (PostgreSQL) — so January can never be closed, nor any period after it, and no amendment
    can take January from version 1 (it would have to take effect on its effective_from: version_order)."""
    api, C = county
    E = credit_code(C, 1)
    aid = f"LONG-{C}"
    r = api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E, agreement_id=aid, destination="park:" + "P" * 195))
    if r.status_code != 201:
        _refused(r, aid, api)
        return
    _receipt(api, f"r-{C}", E, "2025-01", "100.00")
    assert api.post(f"/v1/counties/{C}/periods/2025-01/draft", headers=OFFICE).status_code == 200
    fin = _call(api.post, f"/v1/counties/{C}/periods/2025-01/finalize", headers=OFFICE)
    assert fin.status_code == 200, f"accepted destination park of 195 characters blocks finalization: {fin.status_code} {fin.text}"


def test_a_first_version_taking_effect_after_its_own_end_is_refused(county):
    """Version 1 with ``effective_from`` after ``end`` (a year typed wrong) is stored: it governs no month at all
    (AgreementBook gives it no segment), so the enterprise's shared tax is silently counted as unmatched, and it
    cannot be corrected: an amendment from the agreement's start is refused version_order (not after 2027-01-01), a
    new POST with the same id agreement_exists. It must be refused where it enters, with a reason, nothing stored."""
    api, C = county
    E = credit_code(C, 1)
    aid = f"LATE-{C}"
    r = api.post("/v1/agreements", headers=OFFICE, json=agreement(
        C, E, agreement_id=aid, start="2025-01-01", end="2026-12-31", effective_from="2027-01-01"))
    assert 400 <= r.status_code < 500, (
        f"an agreement that takes effect after it ended was stored: {r.status_code} {r.text[:200]}")
    _refused(r, aid, api)


# -- guards: setup refusals and odd input that hold up (not covered elsewhere) ---------------------------------------

def test_bad_agreement_terms_are_refused_with_a_reason_and_nothing_stored(county):
    """Schedules with a gap, an overlap, 0:0 weights or too few years; 0:0 statistics weights; a local share out of
    0..10000; a lower-case or duplicate tax kind; end before start; an end past what a date holds (9999-12-31);
    statistics weights too big for the column; a remainder that is no party; an amendment naming another enterprise
    or taking effect before version 1. Each is a 4xx with a reason, and the agreement (or the amendment) is not there."""
    api, C = county
    E = credit_code(C, 1)
    step = lambda a, b, o=6, d=4: {"from_year": a, "to_year": b, "origin_weight": o, "destination_weight": d}  # noqa: E731
    bad = {
        "schedule_gap": dict(schedule=[step(1, 1), step(3, None)]),
        "schedule_overlap": dict(schedule=[step(1, 2), step(2, None)]),
        "schedule_zero": dict(schedule=[step(1, None, 0, 0)]),
        "schedule_short": dict(schedule=[step(1, 1)]),
        "statistics_zero": dict(statistics_split={"origin_weight": 0, "destination_weight": 0}),
        "statistics_huge": dict(statistics_split={"origin_weight": 2**63, "destination_weight": 1}),
        "share_high": dict(taxes=[{"tax_kind": "VAT", "local_share_bp": 10001}]),
        "share_negative": dict(taxes=[{"tax_kind": "VAT", "local_share_bp": -1}]),
        "tax_lower": dict(taxes=[{"tax_kind": "vat", "local_share_bp": 5000}]),
        "tax_chinese": dict(taxes=[{"tax_kind": "增值税", "local_share_bp": 5000}]),
        "tax_twice": dict(taxes=[{"tax_kind": "VAT", "local_share_bp": 5000}, {"tax_kind": "VAT", "local_share_bp": 4000}]),
        "end_before_start": dict(start="2026-01-01", end="2025-12-31"),
        "end_at_date_max": dict(end="9999-12-31"),
        "remainder_nobody": dict(remainder_to="county"),
        "minimum_by_origin": dict(guaranteed_minimum="1.00", minimum_payer=f"township:{C}101"),
        "minimum_negative": dict(guaranteed_minimum="-1.00"),
    }
    for i, (name, over) in enumerate(bad.items()):
        aid = f"BAD{i}-{C}"
        r = _call(api.post, "/v1/agreements", headers=OFFICE, json=agreement(C, E, agreement_id=aid, **over))
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        _refused(r, aid, api)

    aid = f"FD-{C}-1"
    assert api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E, agreement_id=aid)).status_code == 201
    for name, body in {
        "other_enterprise": _terms(C, credit_code(C, 2), effective_from="2025-06-01"),
        "before_version_1": _terms(C, E, effective_from="2024-12-01"),
        "not_first_of_month": _terms(C, E, effective_from="2025-06-15"),
    }.items():
        r = api.post(f"/v1/agreements/{aid}/versions", headers=OFFICE, json=body)
        assert 400 <= r.status_code < 500 and r.json().get("reason"), (name, r.status_code, r.text)
    versions = api.get(f"/v1/agreements/{aid}", headers=FINANCE).json()["versions"]
    assert [v["version"] for v in versions] == [1]


def test_odd_ids_periods_and_filters_are_4xx_with_a_reason_never_5xx(county):
    """NUL bytes, unicode and 10,000-character ids in paths and filters, and years 0000 / 0001 in periods: each a
    4xx with a reason or an empty answer, never a 500 (PostgreSQL refuses NUL in text)."""
    api, C = county
    E = credit_code(C, 1)
    assert api.post("/v1/agreements", headers=OFFICE, json=agreement(C, E)).status_code == 201
    _receipt(api, f"r-{C}", E, "2025-01", "100.00")
    assert api.post(f"/v1/counties/{C}/periods/2025-01/draft", headers=OFFICE).status_code == 200
    for v in ("\x00", "a\x00b", "协议", "x" * 10_000):
        for method, url, kw in (
            ("get", f"/v1/counties/{C}/periods/2025-01/statement", {"params": {"agreement": v}}),
            ("get", "/v1/agreements", {"params": {"enterprise": v, "after": v}}),
            ("get", f"/v1/agreements/{quote(v, safe='')}", {}),
            ("post", f"/v1/agreements/{quote(v, safe='')}/versions", {"json": _terms(C, E, effective_from="2025-06-01")}),
            ("get", "/v1/tax-receipts", {"params": {"enterprise": v, "after": v}}),
        ):
            r = _call(getattr(api, method), url, headers=OFFICE, **kw)
            assert r.status_code < 500, (url, repr(v[:10]), r.status_code, r.text)
            assert r.status_code == 200 or r.json().get("reason"), (url, r.text)
    for period in ("0000", "0000-01", "0000-Q1"):
        r = api.post(f"/v1/counties/{C}/periods/{period}/draft", headers=OFFICE)
        assert (r.status_code, r.json()["reason"]) == (422, "invalid_period"), (period, r.text)
        assert api.get(f"/v1/counties/{C}/periods/{period}/statement", headers=FINANCE).status_code == 404
