"""Review of time around China's calendar (UTC+08:00) against UTC storage: year boundaries, days that end at
16:00 UTC, reports "as of" a day. HTTP on the real services, on SQLite and PostgreSQL.

What the existing suite already holds (not repeated here): settlement months ending at 16:00Z in what statements read
(tests/integration/settlement/test_review_reads.py), the cut-off races, the ledger's as_of in any offset and on a
server in Asia/Shanghai, replay on a China-time host, a project without a year taking the county's year, a task
judged overdue by the county's day."""
from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

import services.assessment.api.routes_dispositions as disposition_routes
import services.assessment.api.routes_projects as project_routes
from tests.support.services import ADMIN, running_service
from tests.unit.assessment.factories import code as make_code

UTC = timezone.utc


@pytest.fixture
def assessment(db_url, kafka_bootstrap):
    """The assessment service, HTTP only (what it would publish stays in its outbox)."""
    with running_service("assessment", db_url, kafka_bootstrap, background=False) as (runtime, client):
        yield runtime, client


def _county() -> str:
    return f"{random.randint(110000, 659999)}"


def _project(county: str, project_id: str) -> dict:
    """10 亩, exactly the default thresholds (2.5 million investment and 150,000 tax per 亩): admitted. No year:
    the service takes the county's."""
    return {"project_id": project_id, "applicant_credit_code": make_code(1, county), "county_code": county,
            "park_id": "P-A", "land": "10", "investment": "25000000.00", "expected_yearly_tax": "1500000.00",
            "energy_need": "120.5", "emission_needs": {"COD": "0.8"}, "industry_code": "C3311"}


# -- year boundary: an idempotent retry ---------------------------------------------------------------------------

def test_a_project_request_retried_across_midnight_of_new_year_gets_the_stored_answer(assessment, monkeypatch):
    """A county's system sends a project at 23:59:59 on 31 December (China), its answer is lost, and the very same
    body is sent again two seconds later — 00:00:01 on 1 January. The README: "A write that carries an id of the
    caller's ... the same body again is answered as already done (200)". The service derives the year the body left
    out from its clock and hashes that year into the request's digest, so the retry, whose derived year is the next
    one, is refused 409 project_id_reused ("evaluated with another request; use a new id"): the county must now
    invent a new project id for the same project, and the project it already announced (ProjectEvaluated, year
    2024) is orphaned."""
    _, c = assessment
    county = _county()
    body = _project(county, f"PRJ-ny-{county}")
    monkeypatch.setattr(project_routes, "now", lambda: datetime(2024, 12, 31, 15, 59, 59, tzinfo=UTC))  # 23:59:59 CST
    first = c.post("/v1/projects", headers=ADMIN, json=body)
    assert (first.status_code, first.json()["year"], first.json()["admitted"]) == (201, 2024, True), first.text

    monkeypatch.setattr(project_routes, "now", lambda: datetime(2024, 12, 31, 16, 0, 1, tzinfo=UTC))  # 00:00:01 CST
    retry = c.post("/v1/projects", headers=ADMIN, json=body)
    assert retry.status_code == 200, f"the same body again, two seconds later across the New Year: {retry.text}"
    assert (retry.json()["year"], retry.json()["admitted"]) == (2024, True)


def test_a_project_retried_within_the_china_day_after_utc_midnight_gets_the_stored_answer(assessment, monkeypatch):
    """Guard: the same body at 07:59 and 08:01 on 1 January in China (23:59 / 00:01 UTC, where the UTC year changes)
    is one China day and one county year: the stored answer (200), year 2025 both times."""
    _, c = assessment
    county = _county()
    body = _project(county, f"PRJ-utc-{county}")
    monkeypatch.setattr(project_routes, "now", lambda: datetime(2024, 12, 31, 23, 59, tzinfo=UTC))
    first = c.post("/v1/projects", headers=ADMIN, json=body)
    assert (first.status_code, first.json()["year"]) == (201, 2025), first.text
    monkeypatch.setattr(project_routes, "now", lambda: datetime(2025, 1, 1, 0, 1, tzinfo=UTC))
    again = c.post("/v1/projects", headers=ADMIN, json=body)
    assert (again.status_code, again.json()["year"]) == (200, 2025), again.text


# -- a report "as of" a past day ----------------------------------------------------------------------------------

def _register(c, county: str, n: int) -> str:
    code = make_code(n, county)
    r = c.post("/v1/enterprises", headers=ADMIN, json={"credit_code": code, "name": f"企业{n}",
                                                        "township_code": county + "101", "industry_code": "C3311"})
    assert r.status_code == 201, r.text
    return code


def test_tasks_overdue_as_of_a_past_day_include_those_completed_late_afterwards(assessment, monkeypatch):
    """GET /v1/tasks/overdue?as_of=D: "Open tasks past their deadline (as of today, or as_of)". Task A is due on
    31 January 2024 and completed, late, on 20 February; task B is due the same day and still open. As of
    10 February both were open and past their deadline — the county's 督查 asks exactly this at month end ("which
    tasks were overdue on 10 February / at the end of January?"). The list judges today's status instead of the
    task's status on D: A, overdue for three weeks, vanishes from every past report once it is closed."""
    _, c = assessment
    monkeypatch.setattr(disposition_routes, "now", lambda: datetime(2024, 3, 1, 2, 0, tzinfo=UTC))  # 1 March, CST
    county = _county()
    code = _register(c, county, 1)
    ids = {k: f"T-{county}-{k}" for k in ("late", "open")}
    for tid in ids.values():
        r = c.post("/v1/tasks", headers=ADMIN, json={"task_id": tid, "credit_code": code, "disposition": "upgrade",
                                                     "deadline": "2024-01-31", "note": "更换燃煤锅炉"})
        assert r.status_code == 201, r.text
    done = c.post(f"/v1/tasks/{ids['late']}/completion", headers=ADMIN, json={"on": "2024-02-20", "note": "验收通过"})
    assert (done.status_code, done.json()["closed_on"]) == (200, "2024-02-20"), done.text

    def overdue_on(day: str) -> dict:
        items = c.get("/v1/tasks/overdue", headers=ADMIN, params={"county_code": county, "as_of": day}).json()["items"]
        return {t["id"]: t["overdue"] for t in items}

    # as of 25 February A was already done: only B (guard: holds today)
    assert overdue_on("2024-02-25") == {ids["open"]: True}
    # the deadline day itself is on time for both (guard)
    assert overdue_on("2024-01-31") == {}
    # as of 10 February neither was closed: both overdue
    assert overdue_on("2024-02-10") == {ids["late"]: True, ids["open"]: True}, \
        "task completed on 2024-02-20 was open and 10 days past its deadline on 2024-02-10"


# -- the ledger: a hold whose timeout ends at a month's end ---------------------------------------------------------

POOL, REG, PRJ = "county:320612/pool/COD", "external:rights-register/COD", "project:PRJ-T/COD"


def _cod(tid: str, dr: str, cr: str, amount: str, **kw) -> dict:
    return {"transfer_id": tid, "debit_account": dr, "credit_account": cr, "asset": "COD", "amount": amount,
            "code": "test", **kw}


@pytest.fixture
def ledger(db_url, kafka_bootstrap):
    """The ledger, HTTP only, its clock set by the test (``clock[0]``); no expiry thread: the test runs it."""
    with running_service("ledger", db_url, kafka_bootstrap, background=False) as (runtime, client):
        clock = [datetime(2025, 3, 31, 15, 0, tzinfo=UTC)]
        client.app.state.ledger.clock = lambda: clock[0]
        yield client, clock


def test_a_balance_as_of_a_moment_is_the_journal_as_the_ledger_had_recorded_it_by_then(ledger):
    """A quota reservation (pending COD 4 of the pool's 10) made at 23:30 on 31 March (China) with a 30-minute
    timeout ends at 00:00 on 1 April China time = 2025-03-31T16:00:00Z; the ledger was down until 02:00 and expired
    it then, dated at its timeout (resolved_at 16:00Z). A balance as of a moment is the journal as the ledger had
    recorded it by then (README): as of 00:30 the hold still counts — the same figures as at that journal position —
    and from 02:00 on it does not. (A review read the README's "never counts against an account", said of what a
    batch is judged against, as a promise about as_of reads; the README now says which it is.)"""
    client, clock = ledger
    r = client.post("/v1/accounts", headers=ADMIN, json={"accounts": [
        {"account_id": REG, "asset": "COD", "address": "external:rights-register"},
        {"account_id": POOL, "asset": "COD", "address": "county:320612/pool"},
        {"account_id": PRJ, "asset": "COD", "address": "project:PRJ-T"}]})
    assert r.json()["ok"], r.text
    clock[0] = datetime(2025, 3, 31, 15, 0, 1, tzinfo=UTC)
    assert client.post("/v1/transfers", headers=ADMIN, json={"transfers": [_cod("rel", REG, POOL, "10")]}) \
        .json()["results"][0]["result"] == "ok"
    clock[0] = datetime(2025, 3, 31, 15, 30, tzinfo=UTC)  # 23:30 on 31 March in China
    res = client.post("/v1/transfers", headers=ADMIN, json={"transfers": [
        _cod("hold", POOL, PRJ, "4", pending=True, timeout_seconds=1800)]})
    assert res.json()["results"][0]["result"] == "ok", res.text

    clock[0] = datetime(2025, 3, 31, 18, 0, tzinfo=UTC)  # 02:00 on 1 April: the ledger is back, expiry runs
    assert client.app.state.expiry.run_once() == 1
    hold = client.get("/v1/transfers/hold", headers=ADMIN).json()
    assert hold["status"] == "expired"
    ended = datetime.fromisoformat(hold["resolved_at"].replace("Z", "+00:00"))
    assert ended == datetime(2025, 3, 31, 16, 0, tzinfo=UTC), hold  # the ledger's own word: ended at 00:00 CST

    def as_of(moment: str) -> dict:
        b = client.get(f"/v1/accounts/{POOL}/balance", headers=ADMIN, params={"as_of": moment})
        assert b.status_code == 200, b.text
        return {k: b.json()[k] for k in ("debits_pending", "available", "balance")}

    # guards: 23:59:59 on 31 March is one instant in either spelling, and the hold was held then
    assert as_of("2025-03-31T23:59:59+08:00") == as_of("2025-03-31T15:59:59Z") == {
        "debits_pending": "4.0000", "available": "6.0000", "balance": "10.0000"}
    # and at 00:30 on 1 April: the journal as recorded by then (the expiry was recorded at 02:00), which is exactly
    # the balance at that journal position; from 02:00 on nothing is held
    b = client.get(f"/v1/accounts/{POOL}/balance", headers=ADMIN, params={"as_of": "2025-04-01T00:30:00+08:00"}).json()
    at_seq = client.get(f"/v1/accounts/{POOL}/balance", headers=ADMIN, params={"at_seq": b["as_of_seq"]}).json()
    assert (b["debits_pending"], b["available"]) == ("4.0000", "6.0000") and at_seq == b
    assert as_of("2025-04-01T02:00:00+08:00") == {"debits_pending": "0.0000", "available": "10.0000",
                                                  "balance": "10.0000"}
