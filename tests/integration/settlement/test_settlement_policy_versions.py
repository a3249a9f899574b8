"""A county's settlement policy has a period of validity, through the service (storage, registry, statement runs)
on SQLite and PostgreSQL: a version set for 2027 leaves a re-drafted December 2026 as it was, splits January's
allocations, and cannot take effect in a finalized period; and through the HTTP API."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.settlement.domain import (
    ConsumedLot,
    LineKind,
    ProceedsError,
    QuotaAllocation,
    SettlementHistory,
    SettlementPolicy,
    StatementError,
    compute_statement,
    finalize,
)
from services.settlement.domain.periods import Period
from services.settlement.policy_registry import record_policy
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.inputs import InputsRepository
from tests.integration.settlement.support import FINANCE, OFFICE, new_county
from tests.support.services import running_service

CST = timezone(timedelta(hours=8))
TERMS_2026 = dict(policy_id="TZBF-2026", compensation_bp=3000, township_weight=4, park_weight=3, fund_weight=3)
TERMS_2027 = dict(policy_id="TZBF-2027", compensation_bp=5000, township_weight=1, park_weight=1, fund_weight=8)


def at(y: int, m: int, d: int, hour: int = 12) -> datetime:
    return datetime(y, m, d, hour, tzinfo=CST)


def allocation(county: str, n: int, on: date, due: int) -> QuotaAllocation:
    return QuotaAllocation(
        allocation_id=f"REQ{n}-{county}:LAND", project_id=f"PRJ{n}", asset="LAND", amount_units=10, price="1.00",
        amount_due_fen=due, destination="park:P1", allocated_on=on, received_at=at(on.year, on.month, on.day, 18),
        lots=(ConsumedLot(f"L{n}a-{county}", f"E{county}1", f"township:{county}101", 7),
              ConsumedLot(f"L{n}b-{county}", None, f"township:{county}102", 3)))


def proceeds(st) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for ln in st.lines:
        if ln.kind in (LineKind.COMPENSATION, LineKind.PROCEEDS_SHARE):
            out.setdefault(ln.allocation_id, {})[ln.payee] = ln.amount_fen
    return out


def test_a_later_version_leaves_earlier_periods_and_closed_periods_alone(runtime):
    C = new_county()

    def put(now: datetime, terms: dict, effective_from: date | None = None):
        return runtime.transaction(lambda uow: record_policy(uow.session, C, **terms, effective_from=effective_from,
                                                             by="test", now=now))

    def runs(now: datetime) -> StatementRuns:
        return StatementRuns(runtime, now=lambda: now)

    nov, dec, jan = (allocation(C, 1, date(2026, 11, 20), 1_000_001), allocation(C, 2, date(2026, 12, 10), 2_000_000),
                     allocation(C, 3, date(2027, 1, 12), 3_000_003))
    v1, created = put(at(2026, 11, 1), TERMS_2026)
    assert created and (v1.version, v1.effective_from) == (1, None)  # the first version: from the beginning
    with runtime.db.sessions() as s, s.begin():
        for a in (nov, dec, jan):
            InputsRepository(s).add_allocation(a, C, a.allocation_id.split(":")[0], f"ev-{a.allocation_id}")
    november = runs(at(2026, 12, 2)).finalize(C, "2026-11", "test").statement
    december = runs(at(2027, 1, 2)).draft(C, "2026-12", "test").statement

    # the 2027 policy: not in or before finalized November
    with pytest.raises(ProceedsError) as refused:
        put(at(2027, 1, 3), TERMS_2027, date(2026, 11, 1))
    assert refused.value.reason == "effective_in_closed_period" and "2026-12-01" in str(refused.value)
    v2, created = put(at(2027, 1, 3), TERMS_2027, date(2027, 1, 1))
    assert created and (v2.version, v2.effective_from) == (2, date(2027, 1, 1))
    assert put(at(2027, 1, 4), TERMS_2027) == (v2, False)  # the same again: nothing new

    # December drafted again after the change, then finalized: what it was before the change
    again = runs(at(2027, 1, 5)).draft(C, "2026-12", "test").statement
    closed = runs(at(2027, 1, 6)).finalize(C, "2026-12", "test").statement
    for st in (again, closed):
        assert (st.content_hash, st.lines, st.policy_id, st.policy_version) == (
            december.content_hash, december.lines, "TZBF-2026", 1)
    january = runs(at(2027, 2, 3)).finalize(C, "2027-01", "test").statement
    assert (january.policy_id, january.policy_version) == ("TZBF-2027", 2)

    # the same statements in memory, with the versions as the domain sees them
    p1 = SettlementPolicy(**TERMS_2026, version=1, county=C)
    p2 = SettlementPolicy(**TERMS_2027, version=2, county=C, effective_from=date(2027, 1, 1))
    history = SettlementHistory.empty()
    for st, period_policy in ((november, p1), (closed, p1), (january, p2)):
        expected = compute_statement(C, st.period, agreements=[], policy=[p1, p2], as_of=st.as_of,
                                     allocations=[nov, dec, jan], finalized_prior=history)
        assert (st.content_hash, st.lines) == (expected.content_hash, expected.lines)
        only = compute_statement(C, st.period, agreements=[], policy=period_policy, as_of=st.as_of,
                                 allocations=[nov, dec, jan], finalized_prior=history)
        assert proceeds(st) == proceeds(only) and len(proceeds(st)) == 1
        history = history.after(finalize(expected)[0])
    # (the 2027 terms would have split December otherwise)
    by_2027 = SettlementPolicy(**TERMS_2027, version=1, county=C)
    assert proceeds(closed) != proceeds(compute_statement(C, Period.parse("2026-12"), agreements=[], policy=by_2027,
                                                          as_of=closed.as_of, allocations=[dec]))

    # a later version without effective_from takes effect in the month it is set in, never before
    v3, created = put(at(2027, 3, 15), {**TERMS_2027, "compensation_bp": 4000})
    assert created and (v3.version, v3.effective_from) == (3, date(2027, 3, 1))
    with runtime.db.sessions() as s:
        stored = [(r.version, r.effective_from) for r in InputsRepository(s).policy_rows(C)]
    assert stored == [(1, None), (2, date(2027, 1, 1)), (3, date(2027, 3, 1))]


def test_a_county_whose_first_version_came_after_an_allocation_adds_an_earlier_one(runtime):
    """Every draft of such a county was 409 policy_missing, and a version before the first was refused
    version_order: it could never settle again. A version from an earlier month now splits what came before."""
    C = new_county()
    feb, mar = allocation(C, 1, date(2025, 2, 20), 1_000_001), allocation(C, 2, date(2025, 3, 10), 2_000_000)
    first, _ = runtime.transaction(lambda uow: record_policy(uow.session, C, **TERMS_2026, effective_from=date(2025, 3, 1),
                                                             by="test", now=at(2025, 3, 1)))
    with runtime.db.sessions() as s, s.begin():
        for a in (feb, mar):
            InputsRepository(s).add_allocation(a, C, a.allocation_id.split(":")[0], f"ev-{a.allocation_id}")
    runs = StatementRuns(runtime, now=lambda: at(2025, 4, 2))
    with pytest.raises(StatementError) as refused:
        runs.draft(C, "2025-Q1", "test")
    assert refused.value.reason == "policy_missing" and "2025-03-01" in str(refused.value)

    earlier, created = runtime.transaction(lambda uow: record_policy(
        uow.session, C, **TERMS_2027, effective_from=date(2025, 2, 1), by="test", now=at(2025, 4, 2)))
    assert created and (earlier.version, earlier.effective_from) == (2, date(2025, 2, 1))
    quarter = runs.finalize(C, "2025-Q1", "test").statement
    by_month = {}
    for pol, alloc in ((SettlementPolicy(**TERMS_2027, version=2, county=C, effective_from=date(2025, 2, 1)), feb),
                       (first, mar)):
        by_month.update(proceeds(compute_statement(C, Period.parse("2025-Q1"), agreements=[], policy=pol,
                                                   as_of=quarter.as_of, allocations=[alloc])))
    assert proceeds(quarter) == by_month  # February by the version added, March by the first one
    assert proceeds(quarter)[feb.allocation_id] != proceeds(compute_statement(
        C, Period.parse("2025-Q1"), agreements=[], policy=SettlementPolicy(**TERMS_2026, version=1, county=C),
        as_of=quarter.as_of, allocations=[feb]))[feb.allocation_id]  # the other terms would have split it otherwise


def reason(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["message"]
    return r.json()["reason"]


def test_the_policy_api_takes_and_shows_the_period_of_validity(db_url, kafka_bootstrap):
    C = new_county()
    url = f"/v1/counties/{C}/settlement-policy"
    terms = {"compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3}
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (_, api):
        assert reason(api.get(f"{url}/versions", headers=FINANCE), 404) == "policy_not_found"
        first = api.put(url, headers=OFFICE, json=terms)  # an existing client: no effective_from
        assert first.status_code == 200 and (first.json()["version"], first.json()["effective_from"]) == (1, None)
        assert api.put(url, headers=OFFICE, json=terms).json()["version"] == 1
        assert api.post(f"/v1/counties/{C}/periods/2025-01/finalize", headers=OFFICE).status_code == 200

        assert reason(api.put(url, headers=OFFICE, json={**terms, "effective_from": "2025-03-15"}), 422) == \
            "effective_from_not_first_of_month"
        assert reason(api.put(url, headers=OFFICE, json={**terms, "effective_from": "2025-01-01"}), 409) == \
            "effective_in_closed_period"
        second = api.put(url, headers=OFFICE, json={**terms, "compensation_bp": 2000, "effective_from": "2025-02-01"})
        assert second.status_code == 200, second.text
        assert (second.json()["version"], second.json()["effective_from"]) == (2, "2025-02-01")
        # a version from the same month as v2 replaces it there (it was 409 version_order: see PolicyBook)
        third = api.put(url, headers=OFFICE, json={**terms, "effective_from": "2025-02-01"})
        assert (third.status_code, third.json()["version"]) == (200, 3), third.text

        got = api.get(url, headers=FINANCE).json()
        assert (got["version"], got["compensation_bp"], got["effective_from"]) == (3, 3000, "2025-02-01")
        versions = api.get(f"{url}/versions", headers=FINANCE).json()
        assert versions["county_code"] == C
        assert [(v["version"], v["compensation_bp"], v["effective_from"]) for v in versions["versions"]] == [
            (1, 3000, None), (2, 2000, "2025-02-01"), (3, 3000, "2025-02-01")]
        doc = api.get("/openapi.json").json()
        assert "effective_from" in doc["components"]["schemas"]["PolicyIn"]["properties"]
