"""Review (dec01) of calendar edge cases across the services, through their real HTTP APIs on SQLite and PostgreSQL.

China time is UTC+08:00 without daylight saving; times are stored in UTC. What is probed here: revenue-sharing
agreements whose start or end falls on the 29th-31st of a month or on 29 February, agreement years and schedule steps
counted in months from such starts, guaranteed minimum years that close in February, statements of months, quarters and
years around them, finalizing at the first China moment of 1 March of a leap year (still 29 February in UTC), the
ledger's pending timeouts expiring exactly at such a boundary, assessment years at the limits the contracts state
(1990 and 2200), rectification task deadlines on 29 February and 31 December with the overdue listing as of those days,
and dates far away (2099, and 2100, which is not a leap year).

Every expected figure is computed by hand in the test (integers: floor, named remainder), never taken from the
services' code. Each service runs in-process (HTTP only; what it would publish stays in its outbox) with its clock set
by the test where a moment matters."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from services.settlement import clock as settlement_clock
from shared.china_time import CST
from tests.integration.settlement.support import FINANCE, OFFICE, new_county
from tests.support.services import ADMIN, running_service

UTC = timezone.utc


def cst(y: int, m: int, d: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(y, m, d, hour, minute, second, tzinfo=CST)


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(fen), 100)
    return f"{sign}{q}.{r:02d}"


def fen(text: str) -> int:
    neg = text.startswith("-")
    whole, frac = text.lstrip("-").split(".")
    v = int(whole) * 100 + int(frac)
    return -v if neg else v


# =====================================================================================================================
# settlement
# =====================================================================================================================

@pytest.fixture
def settlement(db_url, kafka_bootstrap):
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (runtime, api):
        yield runtime, api


class County:
    """One county of the settlement service, its facts entered over HTTP with the clock set to when they arrive."""

    def __init__(self, api, monkeypatch):
        self.api, self.mp = api, monkeypatch
        self.C = C = new_county()
        self.T, self.P = f"township:{C}101", f"park:P{C}"
        self.n = 0

    def code(self) -> str:
        self.n += 1
        return f"91{self.C}{self.n:08d}AB"

    def clock(self, when: datetime) -> None:
        self.mp.setattr(settlement_clock, "now", lambda: when)

    def policy(self) -> None:
        r = self.api.put(f"/v1/counties/{self.C}/settlement-policy", headers=OFFICE, json={
            "policy_id": "CAL-1", "compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3})
        assert r.status_code in (200, 201), r.text

    def agreement_body(self, enterprise: str, start: str, end: str, *, schedule=None, minimum: str | None = None,
                       aid: str | None = None) -> dict:
        body = {"agreement_id": aid or f"FD-{self.C}-{self.n}-{random.randint(0, 10**6)}", "county_code": self.C,
                "enterprise_credit_code": enterprise, "origin": self.T, "destination": self.P,
                "taxes": [{"tax_kind": "VAT", "local_share_bp": 5000}],
                "schedule": schedule or [{"from_year": 1, "origin_weight": 6, "destination_weight": 4}],
                "start": start, "end": end, "remainder_to": "destination"}
        if minimum is not None:
            body["guaranteed_minimum"] = minimum
        return body

    def agreement(self, enterprise: str, start: str, end: str, **kw) -> dict:
        r = self.api.post("/v1/agreements", headers=OFFICE, json=self.agreement_body(enterprise, start, end, **kw))
        assert r.status_code == 201, r.text
        return r.json()

    def receipt(self, enterprise: str, month: str, amount_fen: int) -> None:
        self.n += 1
        r = self.api.post("/v1/tax-receipts", headers=OFFICE, json={
            "receipt_id": f"R{self.n}-{self.C}", "enterprise_credit_code": enterprise, "month": month,
            "tax_kind": "VAT", "amount": yuan(amount_fen)})
        assert r.status_code == 201, r.text

    def run(self, action: str, label: str, when: datetime):
        self.api.app.state.statement_runs.now = lambda: when
        return self.api.post(f"/v1/counties/{self.C}/periods/{label}/{action}", headers=OFFICE)

    def lines(self, label: str) -> list[dict]:
        r = self.api.get(f"/v1/counties/{self.C}/periods/{label}/statement", headers=FINANCE,
                         params={"limit": 1000})
        assert r.status_code == 200, r.text
        assert r.json()["next_after_line"] is None
        return r.json()["lines"]


def _money(lines: list[dict]) -> list[tuple]:
    """(kind, payer, payee, fen, month, agreement year) of each money line, sorted."""
    return sorted((ln["kind"], ln["payer"], ln["payee"], fen(ln["amount"]), ln["month"], ln["agreement_year"])
                  for ln in lines if ln["kind"] != "statistics_share")


def _origin_share(tax_fen: int, bp: int, wo: int, wd: int) -> int:
    """Hand computation (remainder to the destination): the local part floored, the origin's weight floored."""
    local = tax_fen * bp // 10_000
    return local * wo // (wo + wd)


# -- agreement dates ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["2024-02-29", "2025-01-29", "2025-01-30", "2025-01-31", "2025-03-31"])
def test_an_agreement_starting_on_the_29th_30th_or_31st_is_refused_by_name(settlement, monkeypatch, start):
    """Agreements run in whole tax months (the README, agreements.py): a start on 29 February or a month's last days
    would give the first agreement year a partial month and shift every year boundary; the county must hear why
    (start_not_first_of_month), not get a 5xx or an agreement whose years are counted from a date no receipt has."""
    _, api = settlement
    w = County(api, monkeypatch)
    w.clock(cst(2024, 12, 1))
    r = api.post("/v1/agreements", headers=OFFICE, json=w.agreement_body(w.code(), start, "2027-12-31"))
    assert r.status_code == 422 and r.json()["reason"] == "start_not_first_of_month", r.text


@pytest.mark.parametrize("end,ok", [
    ("2024-02-29", True),    # leap year: the last day of February
    ("2028-02-28", False),   # leap year: the 28th is not the last day
    ("2027-02-28", True),    # common year
    ("2100-02-28", True),    # 2100 is not a leap year (divisible by 100, not by 400)
    ("2000-02-29", True),    # 2000 is (divisible by 400) -- but before the start: end_before_start
])
def test_an_agreement_ending_on_the_last_day_of_february(settlement, monkeypatch, end, ok):
    """An agreement ends on a month's last day: 29 February in a leap year, 28 February otherwise (2100 included,
    which is no leap year). Refusing 2100-02-28 would leave a 2100 agreement impossible to end in February; taking
    2028-02-28 would leave 29 February 2028's receipts unshared (the month would not be covered)."""
    _, api = settlement
    w = County(api, monkeypatch)
    w.clock(cst(2023, 12, 1))
    r = api.post("/v1/agreements", headers=OFFICE, json=w.agreement_body(w.code(), "2023-03-01", end))
    if end == "2000-02-29":
        assert r.status_code == 422 and r.json()["reason"] == "end_before_start", r.text
    elif ok:
        assert r.status_code == 201, r.text
        assert r.json()["versions"][0]["end"] == end
    else:
        assert r.status_code == 422 and r.json()["reason"] == "end_not_last_of_month", r.text


def test_29_february_of_a_year_that_has_none_is_refused_as_a_date(settlement, monkeypatch):
    """2100-02-29 and 2027-02-29 do not exist: the API must say so (422 invalid_request), never store or 5xx."""
    _, api = settlement
    w = County(api, monkeypatch)
    w.clock(cst(2026, 12, 1))
    for end in ("2100-02-29", "2027-02-29"):
        r = api.post("/v1/agreements", headers=OFFICE, json=w.agreement_body(w.code(), "2026-03-01", end))
        assert r.status_code == 422 and r.json()["reason"] == "invalid_request", (end, r.text)


def test_a_schedule_must_cover_every_year_to_a_leap_day_end_and_policies_start_on_a_first(settlement, monkeypatch):
    """Start 2024-03-01, end 2028-02-29: four agreement years (2024-03..2025-02, ..., 2027-03..2028-02). A schedule
    of three years leaves the fourth without a split: refused invalid_schedule; four are taken. A settlement policy
    taking effect on 29 February is refused effective_from_not_first_of_month (versions split whole months). A
    county whose last year had no split would have its last year's taxes refused at the statement, not at signing."""
    _, api = settlement
    w = County(api, monkeypatch)
    w.clock(cst(2024, 2, 1))
    three = [{"from_year": 1, "to_year": 3, "origin_weight": 6, "destination_weight": 4}]
    r = api.post("/v1/agreements", headers=OFFICE, json=w.agreement_body(w.code(), "2024-03-01", "2028-02-29",
                                                                         schedule=three))
    assert r.status_code == 422 and r.json()["reason"] == "invalid_schedule", r.text
    four = [{"from_year": 1, "to_year": 3, "origin_weight": 6, "destination_weight": 4},
            {"from_year": 4, "to_year": 4, "origin_weight": 5, "destination_weight": 5}]
    w.agreement(w.code(), "2024-03-01", "2028-02-29", schedule=four)
    p = api.put(f"/v1/counties/{w.C}/settlement-policy", headers=OFFICE, json={
        "policy_id": "CAL-2", "compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3,
        "effective_from": "2028-02-29"})
    assert p.status_code == 422 and p.json()["reason"] == "effective_from_not_first_of_month", p.text


# -- agreement years from a March start: year 1 ends in February, the minimum is checked there -----------------------

def test_agreement_years_from_march_close_in_february_with_steps_and_minimum(settlement, monkeypatch):
    """E left T for P: VAT 50 % local, 6:4 in agreement year 1, 5:5 from year 2, remainder to P, a guaranteed minimum
    of 50,000.00 a year for T. Start 2024-03-01 (a leap year), end 2026-02-28. Year 1 is 2024-03..2025-02, year 2
    2025-03..2026-02. A receipt of 2025-02 is year 1 (6:4), one of 2025-03 year 2 (5:5); year 1 closes in 2025-02,
    inside 2025-Q1, so Q1 tops T up to the minimum. A county would lose (or overpay) the split difference of a whole
    month if the step moved by one month, and its minimum if year 1 were thought to close elsewhere."""
    _, api = settlement
    w = County(api, monkeypatch)
    E = w.code()
    w.clock(cst(2024, 2, 20))
    w.policy()
    w.agreement(E, "2024-03-01", "2026-02-28", minimum="50000.00",
                schedule=[{"from_year": 1, "to_year": 1, "origin_weight": 6, "destination_weight": 4},
                          {"from_year": 2, "origin_weight": 5, "destination_weight": 5}])
    w.clock(cst(2025, 4, 2))
    w.receipt(E, "2025-02", 10_000_000)   # 100,000.00: local 5,000,000; year 1 6:4 -> T 3,000,000
    w.receipt(E, "2025-03", 10_000_001)   # local 5,000,000 (floored); year 2 5:5 -> T 2,500,000
    feb, mar = _origin_share(10_000_000, 5000, 6, 4), _origin_share(10_000_001, 5000, 5, 5)
    assert (feb, mar) == (3_000_000, 2_500_000)
    topup = 5_000_000 - feb  # year 1's minimum less what T got of year 1 (only February has receipts)
    r = w.run("draft", "2025-Q1", cst(2025, 4, 5))
    assert r.status_code == 200, r.text
    assert _money(w.lines("2025-Q1")) == sorted([
        ("revenue_share", w.P, w.T, feb, "2025-02", None),
        ("revenue_share", w.P, w.T, mar, "2025-03", None),
        ("guaranteed_minimum_topup", w.P, w.T, topup, "2025-02", 1),
    ])


def test_an_agreement_from_leap_february_has_one_year_closing_in_january(settlement, monkeypatch):
    """Start 2024-02-01 (the month with the 29th), end 2025-01-31: one agreement year, 2024-02..2025-01, whose
    minimum (12,000.00) is checked in January 2025 -- in the month statement 2025-01, not in the year statement of 2024
    (which holds February 2024 to December 2024 of that year, and no top-up). No receipts at all: T is topped up by
    the whole minimum."""
    _, api = settlement
    w = County(api, monkeypatch)
    E = w.code()
    w.clock(cst(2024, 1, 20))
    w.policy()
    w.agreement(E, "2024-02-01", "2025-01-31", minimum="12000.00")
    w.clock(cst(2024, 3, 2))
    w.receipt(E, "2024-02", 2_900)  # 29.00 for 29 February's month: local 1,450, T 6/10 = 870
    y2024 = w.run("finalize", "2024", cst(2025, 1, 2))
    assert y2024.status_code == 200, y2024.text
    assert _money(w.lines("2024")) == [("revenue_share", w.P, w.T, _origin_share(2_900, 5000, 6, 4), "2024-02", None)]
    jan = w.run("finalize", "2025-01", cst(2025, 2, 1, 0, 0, 0))
    assert jan.status_code == 200, jan.text
    assert _money(w.lines("2025-01")) == [("guaranteed_minimum_topup", w.P, w.T, 1_200_000 - 870, "2025-01", 1)]


# -- a period's end is China's: 1 March 00:00 in China is still 29 February in UTC ------------------------------------

def test_february_of_a_leap_year_finalizes_at_the_first_china_moment_of_march(settlement, monkeypatch):
    """2028-02 ends at 2028-02-29 24:00 China time = 2028-02-29T16:00Z. At 23:59:59 China time the period has not
    ended (409 period_not_ended); at 00:00:00 on 1 March China time it has, though the UTC date is still 29 February.
    A receipt for February received at 23:59:59 on the 29th is in February's statement. A county that could only
    finalize after UTC midnight would wait 8 hours; one that could finalize at UTC midnight of the 29th would settle
    February without its last day."""
    _, api = settlement
    w = County(api, monkeypatch)
    E = w.code()
    w.clock(cst(2028, 1, 20))
    w.policy()
    w.agreement(E, "2028-01-01", "2029-12-31")
    w.clock(cst(2028, 2, 29, 23, 59, 59))
    w.receipt(E, "2028-02", 1_000)  # local 500 -> T 300
    early = w.run("finalize", "2028-02", cst(2028, 2, 29, 23, 59, 59))
    assert early.status_code == 409 and early.json()["reason"] == "period_not_ended", early.text
    at_midnight = datetime(2028, 2, 29, 16, 0, 0, tzinfo=UTC)  # 2028-03-01 00:00:00 in China
    r = w.run("finalize", "2028-02", at_midnight)
    assert r.status_code == 200, r.text
    assert _money(w.lines("2028-02")) == [("revenue_share", w.P, w.T, 300, "2028-02", None)]
    # the next month opens on 1 March; drafting it on 1 March China time is allowed, 2028-Q2 is not
    a_second_later = at_midnight + timedelta(seconds=1)  # after the cut-off just taken
    mar = w.run("draft", "2028-03", a_second_later)
    assert mar.status_code == 200, mar.text
    q2 = w.run("draft", "2028-Q2", a_second_later)
    assert q2.status_code in (409, 422) and q2.json()["reason"] == "period_in_future", q2.text


@pytest.mark.parametrize("label", ["2025-Q0", "2025-Q5", "2025-13", "2025-00", "0000", "2025-2", "2025Q1"])
def test_period_labels_outside_the_calendar_are_refused(settlement, monkeypatch, label):
    """Periods are 'YYYY-MM', 'YYYY-Qn' (n 1-4) or 'YYYY': anything else is refused by name, never a 5xx or a
    statement of a period that does not exist."""
    _, api = settlement
    w = County(api, monkeypatch)
    r = w.run("draft", label, cst(2026, 1, 5))
    assert r.status_code in (404, 422), (label, r.status_code, r.text)
    if r.status_code == 422:
        assert r.json()["reason"] in ("invalid_period", "invalid_request"), r.text


def test_an_agreement_of_2099_to_2100_closes_its_year_in_february_2100(settlement, monkeypatch):
    """Far away: start 2099-03-01, end 2100-02-28 (2100 has no 29 February). One year, closing in 2100-02; the
    quarter statement 2100-Q1 shares January and February and tops T up to its minimum of 1,000.00."""
    _, api = settlement
    w = County(api, monkeypatch)
    E = w.code()
    w.clock(cst(2099, 2, 1))
    w.policy()
    w.agreement(E, "2099-03-01", "2100-02-28", minimum="1000.00")
    w.clock(cst(2100, 3, 1, 9))
    w.receipt(E, "2100-01", 7)       # local 3 (floored), T 3*6//10 = 1
    w.receipt(E, "2100-02", 33_333)  # local 16,666, T 9,999
    w.receipt(E, "2100-03", 50_000)  # after the end: shared by nobody
    jan, feb = _origin_share(7, 5000, 6, 4), _origin_share(33_333, 5000, 6, 4)
    assert (jan, feb) == (1, 9_999)
    r = w.run("draft", "2100-Q1", cst(2100, 4, 1, 0, 0, 1))
    assert r.status_code == 200, r.text
    assert r.json()["unmatched_receipts"] == 1, r.text
    assert _money(w.lines("2100-Q1")) == sorted([
        ("revenue_share", w.P, w.T, jan, "2100-01", None),
        ("revenue_share", w.P, w.T, feb, "2100-02", None),
        ("guaranteed_minimum_topup", w.P, w.T, 100_000 - jan - feb, "2100-02", 1),
    ])


def test_a_receipt_of_a_month_is_taken_from_that_month_s_first_china_moment(settlement, monkeypatch):
    """A receipt's month must have started (period_in_future otherwise), by China's calendar: at 23:59:59 on
    31 January 2028 in China (15:59:59Z) February has not started; at 00:00:00 on 1 February (16:00:00Z on 31 January)
    it has. Likewise across New Year: 2025-01 at 00:00:05 on 1 January in China (2024-12-31T16:00:05Z). A tax bureau
    sending at the start of its day would otherwise be refused for 8 hours."""
    _, api = settlement
    w = County(api, monkeypatch)
    E = w.code()
    w.clock(cst(2024, 12, 1))
    w.agreement(E, "2024-01-01", "2029-12-31")

    def send(month: str, when: datetime):
        w.clock(when)
        w.n += 1
        return api.post("/v1/tax-receipts", headers=OFFICE, json={
            "receipt_id": f"R{w.n}-{w.C}", "enterprise_credit_code": E, "month": month, "tax_kind": "VAT",
            "amount": "1.00"})

    early = send("2028-02", cst(2028, 1, 31, 23, 59, 59))
    assert early.status_code == 422 and early.json()["reason"] == "period_in_future", early.text
    assert send("2028-02", datetime(2028, 1, 31, 16, 0, 0, tzinfo=UTC)).status_code == 201
    assert send("2025-01", datetime(2024, 12, 31, 16, 0, 5, tzinfo=UTC)).status_code == 201
    late = send("2025-01", datetime(2024, 12, 31, 15, 59, 59, tzinfo=UTC))  # 23:59:59 on 31 December in China
    assert late.status_code == 422 and late.json()["reason"] == "period_in_future", late.text


# =====================================================================================================================
# assessment
# =====================================================================================================================

import services.assessment.api.routes_dispositions as disposition_routes  # noqa: E402
from tests.unit.assessment.factories import code as make_code  # noqa: E402


@pytest.fixture
def assessment(db_url, kafka_bootstrap):
    with running_service("assessment", db_url, kafka_bootstrap, background=False) as (runtime, client):
        yield runtime, client


def _a_county() -> str:
    return f"{random.randint(110000, 659999)}"


def _register(c, county: str, n: int) -> str:
    code = make_code(n, county)
    r = c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": code, "name": f"企业{n}",
                                                        "township_code": county + "101", "industry_code": "C3311"})
    assert r.status_code == 201, r.text
    return code


def test_assessment_years_1990_and_2200_are_taken_and_1989_2201_refused(assessment):
    """The contracts state years 1990 to 2200 (shared/contracts/assessment.py, the HTTP schemas, the import). Figures
    for 1990 and 2200 are recorded and read back under their year; 1989 and 2201 are refused 422 everywhere a year is
    given (figures, the policy of a year, a decision's year). A county migrating its 1990s records, or one whose
    system sends a far year, must get the same answer from each door."""
    _, c = assessment
    county = _a_county()
    code = _register(c, county, 1)
    for year in (1990, 2200):
        r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": code, "year": year, "department": "tax",
                                                          "fields": {"land": "12.5", "tax": "1830000.00"}})
        assert r.status_code == 201 and r.json()["year"] == year, r.text
        got = c.get(f"/v1/enterprises/{code}/indicators/{year}", headers=ADMIN)
        assert got.status_code == 200 and got.json()["figures"]["land"].startswith("12.5"), got.text
        assert c.get(f"/v1/policies/{county}/{year}", headers=ADMIN).status_code == 200
        assert c.get(f"/v1/dispositions/{code}/{year}", headers=ADMIN).status_code == 200
    for year in (1989, 2201):
        r = c.post("/v1/indicators", headers=ADMIN, json={"credit_code": code, "year": year, "department": "tax",
                                                          "fields": {"land": "12.5"}})
        assert r.status_code == 422, (year, r.text)
        assert c.get(f"/v1/policies/{county}/{year}", headers=ADMIN).status_code == 422
        assert c.get(f"/v1/dispositions/{code}/{year}", headers=ADMIN).status_code == 422
        assert c.get(f"/v1/enterprises/{code}/indicators/{year}", headers=ADMIN).status_code in (404, 422)
        t = c.post("/v1/tasks", headers=ADMIN, json={"credit_code": code, "disposition": "upgrade",
                                                     "deadline": "2030-01-01", "year": year})
        assert t.status_code == 422, (year, t.text)


def test_rectification_deadlines_on_29_february_and_31_december_judged_by_the_china_day(assessment, monkeypatch):
    """Deadlines 2028-02-28, 2028-02-29 (leap day), 2099-12-31 and 2100-02-28 (2100 has no 29 February). The deadline
    day itself is on time; the day after is overdue -- 29 February 2028 for the first, 1 March 2028 for the second,
    1 January 2100 for the third, 1 March 2100 for the last. Without as_of, "today" is China's: at 16:00Z on
    29 February 2028 it is already 1 March in China, so the leap-day task is overdue. A task completed on
    29 February (late for the 28th) was overdue on no day it was closed by. A county's 督查 report that missed
    or invented a day would chase the wrong enterprise."""
    _, c = assessment
    monkeypatch.setattr(disposition_routes, "now", lambda: datetime(2028, 1, 10, 2, 0, tzinfo=UTC))
    county = _a_county()
    code = _register(c, county, 1)
    deadlines = {"feb28": "2028-02-28", "feb29": "2028-02-29", "dec31": "2099-12-31", "y2100": "2100-02-28"}
    ids = {k: f"T-{county}-{k}" for k in deadlines}
    for k, d in deadlines.items():
        r = c.post("/v1/tasks", headers=ADMIN, json={"task_id": ids[k], "credit_code": code, "disposition": "upgrade",
                                                     "deadline": d, "note": "整治"})
        assert r.status_code == 201 and r.json()["deadline"] == d, r.text
    bad = c.post("/v1/tasks", headers=ADMIN, json={"credit_code": code, "disposition": "upgrade",
                                                   "deadline": "2100-02-29"})
    assert bad.status_code == 422, bad.text

    def overdue_on(day: str | None) -> set:
        params = {"county_code": county, **({"as_of": day} if day else {})}
        r = c.get("/v1/tasks/overdue", headers=ADMIN, params=params)
        assert r.status_code == 200, r.text
        assert all(t["overdue"] for t in r.json()["items"])
        return {next(k for k, v in ids.items() if v == t["id"]) for t in r.json()["items"]}

    assert overdue_on("2028-02-28") == set()
    assert overdue_on("2028-02-29") == {"feb28"}
    assert overdue_on("2028-03-01") == {"feb28", "feb29"}
    assert overdue_on("2099-12-31") == {"feb28", "feb29"}
    assert overdue_on("2100-01-01") == {"feb28", "feb29", "dec31"}
    assert overdue_on("2100-02-28") == {"feb28", "feb29", "dec31"}
    assert overdue_on("2100-03-01") == set(ids)
    # today is China's day: 16:00Z on 29 February 2028 is 00:00 on 1 March in China
    monkeypatch.setattr(disposition_routes, "now", lambda: datetime(2028, 2, 29, 15, 59, 59, tzinfo=UTC))
    assert overdue_on(None) == {"feb28"}
    monkeypatch.setattr(disposition_routes, "now", lambda: datetime(2028, 2, 29, 16, 0, 0, tzinfo=UTC))
    assert overdue_on(None) == {"feb28", "feb29"}
    # the leap-day task done on 1 March (China's today, still 29 February in UTC): late, and not overdue that day
    done = c.post(f"/v1/tasks/{ids['feb29']}/completion", headers=ADMIN, json={"on": "2028-03-01", "note": "验收"})
    assert done.status_code == 200 and done.json()["closed_on"] == "2028-03-01", done.text
    assert overdue_on("2028-03-01") == {"feb28"}
    assert overdue_on("2028-02-29") == {"feb28"}
    one = c.get(f"/v1/tasks/{ids['feb29']}", headers=ADMIN).json()
    assert one["overdue"] is False and one["status"] == "done", one


# =====================================================================================================================
# ledger
# =====================================================================================================================

L_POOL, L_REG, L_PRJ = "county:320612/pool/COD", "external:rights-register/COD", "project:PRJ-CAL/COD"


from tests.integration.test_review_time_dec01 import _cod  # noqa: E402  (a COD transfer body)


@pytest.fixture
def ledger(db_url, kafka_bootstrap):
    """The ledger, HTTP only, its clock set by the test (``clock[0]``); the test runs the expiry itself."""
    with running_service("ledger", db_url, kafka_bootstrap, background=False) as (runtime, client):
        clock = [datetime(2028, 2, 28, 15, 0, tzinfo=UTC)]
        client.app.state.ledger.clock = lambda: clock[0]
        r = client.post("/v1/accounts", headers=ADMIN, json={"accounts": [
            {"account_id": L_REG, "asset": "COD", "address": "external:rights-register"},
            {"account_id": L_POOL, "asset": "COD", "address": "county:320612/pool"},
            {"account_id": L_PRJ, "asset": "COD", "address": "project:PRJ-CAL"}]})
        assert r.json()["ok"], r.text
        assert client.post("/v1/transfers", headers=ADMIN, json={"transfers": [_cod("cal-rel", L_REG, L_POOL, "100")]}) \
            .json()["results"][0]["result"] == "ok"
        yield client, clock


def _result(client, transfers: list[dict]) -> list[str]:
    r = client.post("/v1/transfers", headers=ADMIN, json={"transfers": transfers})
    assert r.status_code == 200, r.text
    return [x["result"] for x in r.json()["results"]]


def test_a_hold_of_one_day_over_the_leap_day_ends_exactly_at_its_timeout(ledger):
    """Two holds made at 00:00 on 29 February 2028 in China (2028-02-28T16:00Z) with a timeout of 86,400 s end at
    2028-02-29T16:00:00Z = 00:00 on 1 March in China (a day of 24 hours: China has no DST). A post one microsecond
    before is taken; a post at the very moment is refused pending_transfer_expired (TigerBeetle: expired at
    expires_at), and the expiry then dates the second hold at that moment. A county whose approval lands at the
    boundary must get one defined answer, not one that depends on the database's text format of times."""
    client, clock = ledger
    clock[0] = datetime(2028, 2, 28, 16, 0, tzinfo=UTC)
    assert _result(client, [_cod("cal-h1", L_POOL, L_PRJ, "3", pending=True, timeout_seconds=86_400),
                            _cod("cal-h2", L_POOL, L_PRJ, "4", pending=True, timeout_seconds=86_400)]) == ["ok", "ok"]
    due = datetime(2028, 2, 29, 16, 0, tzinfo=UTC)
    h1 = client.get("/v1/transfers/cal-h1", headers=ADMIN).json()
    assert datetime.fromisoformat(h1["expires_at"].replace("Z", "+00:00")) == due, h1
    clock[0] = due - timedelta(microseconds=1)
    assert _result(client, [_cod("cal-p1", L_POOL, L_PRJ, "3", post_pending_id="cal-h1")]) == ["ok"]
    clock[0] = due
    assert _result(client, [_cod("cal-p2", L_POOL, L_PRJ, "4", post_pending_id="cal-h2")]) == \
        ["pending_transfer_expired"]
    client.app.state.expiry.run_once()
    h2 = client.get("/v1/transfers/cal-h2", headers=ADMIN).json()
    assert h2["status"] == "expired" and datetime.fromisoformat(h2["resolved_at"].replace("Z", "+00:00")) == due, h2
    b = client.get(f"/v1/accounts/{L_POOL}/balance", headers=ADMIN).json()
    assert (b["debits_pending"], b["balance"]) == ("0.0000", "97.0000"), b


def test_the_longest_hold_from_new_year_s_eve_2099_ends_3650_days_later(ledger):
    """The longest timeout the ledger takes is 10 * 365 * 86,400 s. From 00:00 on 1 January 2100 in China
    (2099-12-31T16:00Z) that is 3,650 days: over 2104 and 2108's leap days (2100 has none), ending at
    2109-12-29T16:00Z. One second more is refused by name. A date library slip across 2100 would end the hold a
    day early or late."""
    client, clock = ledger
    clock[0] = datetime(2099, 12, 31, 16, 0, tzinfo=UTC)
    assert _result(client, [_cod("cal-long", L_POOL, L_PRJ, "1", pending=True,
                                 timeout_seconds=10 * 365 * 86_400)]) == ["ok"]
    t = client.get("/v1/transfers/cal-long", headers=ADMIN).json()
    assert datetime.fromisoformat(t["expires_at"].replace("Z", "+00:00")) == datetime(2109, 12, 29, 16, 0, tzinfo=UTC)
    r = client.post("/v1/transfers", headers=ADMIN, json={"transfers": [
        _cod("cal-too-long", L_POOL, L_PRJ, "1", pending=True, timeout_seconds=10 * 365 * 86_400 + 1)]})
    assert r.status_code == 422 or r.json()["results"][0]["result"] != "ok", r.text
    clock[0] = datetime(2109, 12, 29, 15, 59, 59, tzinfo=UTC)
    assert client.app.state.expiry.run_once() == 0
    clock[0] = datetime(2109, 12, 29, 16, 0, tzinfo=UTC)
    assert client.app.state.expiry.run_once() == 1


# =====================================================================================================================
# quota
# =====================================================================================================================

import services.quota.application.tx as quota_tx  # noqa: E402
import services.quota.background as quota_background  # noqa: E402
from services.quota.background import RequestExpiry  # noqa: E402
from tests.integration.quota.harness import new_county as quota_county  # noqa: E402
from tests.integration.quota.test_quota_application import Pool  # noqa: E402


@pytest.fixture
def quota(db_url, kafka_bootstrap, monkeypatch):
    """Quota, HTTP only, its clock (``clock[0]``) set by the test for HTTP calls and its own request expiry."""
    clock = [datetime(2028, 2, 28, 12, 0, tzinfo=UTC)]
    monkeypatch.setattr(quota_tx, "utcnow", lambda: clock[0])
    monkeypatch.setattr(quota_background, "utcnow", lambda: clock[0])
    with running_service("quota", db_url, kafka_bootstrap, background=False) as (rt, client):
        (expiry,) = [b for b in rt.background if isinstance(b, RequestExpiry)]
        yield rt, client, clock, expiry


def _deadline(client, request_id: str) -> tuple[str, datetime]:
    r = client.get(f"/v1/requests/{request_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["state"], datetime.fromisoformat(r.json()["deadline"].replace("Z", "+00:00"))


@pytest.mark.parametrize("arrives,wait,due", [
    # one day over the leap day: 00:00 on 29 February in China -> 00:00 on 1 March in China
    (datetime(2028, 2, 28, 16, 0, tzinfo=UTC), 86_400, datetime(2028, 2, 29, 16, 0, tzinfo=UTC)),
    # one hour into New Year 2100 in China (2100-01-01 00:00 CST = 2099-12-31T16:00Z)
    (datetime(2099, 12, 31, 15, 0, tzinfo=UTC), 3_600, datetime(2099, 12, 31, 16, 0, tzinfo=UTC)),
    # 30 days from 31 January: 1 March in a leap year (29 days of February + 1)
    (datetime(2028, 1, 31, 4, 0, tzinfo=UTC), 30 * 86_400, datetime(2028, 3, 1, 4, 0, tzinfo=UTC)),
    # 30 days from 31 January 2100 (February of 28 days): 2 March
    (datetime(2100, 1, 31, 4, 0, tzinfo=UTC), 30 * 86_400, datetime(2100, 3, 2, 4, 0, tzinfo=UTC)),
])
def test_a_waiting_request_expires_exactly_at_its_wait_across_month_ends_and_new_year(quota, arrives, wait, due):
    """A request waits request_wait_seconds from its arrival (seconds, not calendar months): its deadline is shown,
    the expiry leaves it waiting one second before and expires it at the very moment (deadline <= now). A county
    whose project waits past the wait it was promised holds up other projects; one expired early loses its place."""
    rt, client, clock, expiry = quota
    C = quota_county()
    pool = Pool(rt.db, C, request_wait_seconds=wait)
    pool.now = arrives
    pool.evaluate("P1")
    clock[0] = arrives
    r = client.post("/v1/requests", headers=ADMIN, json={"request_id": f"RQ-{C}", "project_id": "P1", "county_code": C,
                                                        "lines": [{"asset": "COD", "amount": "1"}]})
    assert r.status_code == 201, r.text
    assert _deadline(client, f"RQ-{C}") == ("requested", due)
    clock[0] = due - timedelta(seconds=1)
    expiry.step()
    assert _deadline(client, f"RQ-{C}")[0] == "requested"
    clock[0] = due
    expiry.step()
    assert _deadline(client, f"RQ-{C}")[0] == "expired"


def test_the_longest_request_wait_and_reservation_timeout_a_policy_takes(quota):
    """README: a reservation timeout above 10 years less a day or a request wait above 10 years is 422
    policy_invalid -- the ledger's 10 * 365 * 86,400 s. Exactly those are taken (a county may set the longest), one
    second more is refused by name."""
    rt, client, clock, _ = quota
    C = quota_county()
    Pool(rt.db, C)  # the county is known
    ten = 10 * 365 * 86_400
    ok = client.put(f"/v1/counties/{C}/policy", headers=ADMIN,
                    json={"request_wait_seconds": ten, "reservation_timeout_seconds": ten - 86_400})
    assert ok.status_code == 200, ok.text
    for body in ({"request_wait_seconds": ten + 1}, {"reservation_timeout_seconds": ten - 86_400 + 1}):
        r = client.put(f"/v1/counties/{C}/policy", headers=ADMIN, json=body)
        assert r.status_code == 422 and r.json()["reason"] == "policy_invalid", (body, r.text)
