"""Review of 60334af (a policy version may take effect before versions recorded earlier), on SQLite and PostgreSQL:
what a county's finance office relies on once versions are no longer recorded in the order they take effect.

- a late allocation dated in a finalized month before the earliest version: the county drafted nothing again
  (policy_missing) and the version that would split it was refused (effective_in_closed_period), though it
  changes no finalized statement — the very dead end the commit meant to end;
- "the policy" is the latest-dated version, not the last recorded: re-sending the terms of a back-dated version
  without ``effective_from`` ("from this month") changed nothing, and GET answered that back-dated version as the
  county's policy."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest

from services.settlement.domain import ProceedsError, StatementError
from services.settlement.domain.proceeds import proceeds_parts
from services.settlement.policy_registry import record_policy
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.inputs import InputsRepository
from services.settlement.storage.statements import StatementsRepository
from tests.integration.settlement.support import FINANCE, OFFICE, new_county
from tests.integration.settlement.test_settlement_policy_versions import TERMS_2026, TERMS_2027, allocation, proceeds
from tests.support.services import running_service

CST = timezone(timedelta(hours=8))


def at(y: int, m: int, d: int, hour: int = 12) -> datetime:
    return datetime(y, m, d, hour, tzinfo=CST)


def _put(runtime, county: str, now: datetime, terms: dict, effective_from: date | None = None):
    return runtime.transaction(lambda uow: record_policy(uow.session, county, **terms, effective_from=effective_from,
                                                         by="test", now=now))


def _add(runtime, county: str, *allocs) -> None:
    with runtime.db.sessions() as s, s.begin():
        for a in allocs:
            InputsRepository(s).add_allocation(a, county, a.allocation_id.split(":")[0], f"ev-{a.allocation_id}")


def test_a_late_allocation_before_the_earliest_version_in_a_finalized_month_can_be_settled(runtime):
    C = new_county()
    v1, _ = _put(runtime, C, at(2025, 3, 1), TERMS_2026, date(2025, 3, 1))
    _add(runtime, C, allocation(C, 1, date(2025, 3, 10), 2_000_000))
    march = StatementRuns(runtime, now=lambda: at(2025, 4, 2)).finalize(C, "2025-03", "test").statement
    late = allocation(C, 2, date(2025, 2, 20), 1_000_001)
    late = replace(late, received_at=at(2025, 4, 5))  # arrives after March closed
    _add(runtime, C, late)

    runs = StatementRuns(runtime, now=lambda: at(2025, 5, 2))
    with pytest.raises(StatementError) as refused:
        runs.draft(C, "2025-04", "test")
    assert refused.value.reason == "policy_missing"

    # a version for March (in force, finalized) stays refused; one for February only, where none was, is not
    with pytest.raises(ProceedsError) as closed:
        _put(runtime, C, at(2025, 5, 2), TERMS_2027, date(2025, 3, 1))
    assert closed.value.reason == "effective_in_closed_period"
    v2, created = _put(runtime, C, at(2025, 5, 2), TERMS_2027, date(2025, 2, 1))
    assert created and (v2.version, v2.effective_from) == (2, date(2025, 2, 1))
    with pytest.raises(ProceedsError) as closed:  # February now has a version: replacing it is a change
        _put(runtime, C, at(2025, 5, 2), TERMS_2026, date(2025, 2, 1))
    assert closed.value.reason == "effective_in_closed_period"

    april = runs.finalize(C, "2025-04", "test").statement
    assert april.policy_version == 1  # in force on April's last day
    assert set(proceeds(april)) == {late.allocation_id}  # the late February allocation, split by v2's terms
    enterprise_parts, share_parts = proceeds_parts(late, v2)
    expected = {**{f"enterprise:{who}": amount for who, amount, _ in enterprise_parts if amount},
                **{who: amount for who, amount, _ in share_parts if amount}}
    assert proceeds(april)[late.allocation_id] == expected

    # March, finalized before v2, is what it was
    with runtime.db.sessions() as s:
        header = StatementsRepository(s).header(C, "2025-03")
    assert (header.content_hash, header.policy_version) == (march.content_hash, v1.version)


def test_re_sending_a_back_dated_versions_terms_sets_them_from_this_month(runtime):
    C = new_county()
    _put(runtime, C, at(2025, 3, 1), TERMS_2026, date(2025, 3, 1))
    v2, _ = _put(runtime, C, at(2025, 4, 2), TERMS_2027, date(2025, 2, 1))  # back-dated: February only
    with pytest.raises(StatementError) as refused:
        StatementRuns(runtime, now=lambda: at(2025, 4, 2)).draft(C, "2025-01", "test")
    assert refused.value.reason == "policy_missing" and "2025-02-01" in str(refused.value)  # the earliest, not v1's

    assert _put(runtime, C, at(2025, 4, 2), TERMS_2027, date(2025, 2, 1)) == (v2, False)  # a retry: nothing new
    # TERMS_2027 "from this month" (June): March's v1 is in force now, so this is a change
    v3, created = _put(runtime, C, at(2025, 6, 3), TERMS_2027)
    assert created and (v3.version, v3.effective_from) == (3, date(2025, 6, 1))
    assert _put(runtime, C, at(2025, 6, 4), TERMS_2027) == (v3, False)

    june = allocation(C, 1, date(2025, 6, 10), 1_000_001)
    _add(runtime, C, june)
    draft = StatementRuns(runtime, now=lambda: at(2025, 7, 2)).draft(C, "2025-06", "test").statement
    assert draft.policy_version == 3


def test_get_settlement_policy_answers_the_latest_dated_version(db_url, kafka_bootstrap):
    C = new_county()
    url = f"/v1/counties/{C}/settlement-policy"
    terms = {"compensation_bp": 3000, "township_weight": 4, "park_weight": 3, "fund_weight": 3}
    with running_service("settlement", db_url, kafka_bootstrap, background=False) as (_, api):
        assert api.put(url, headers=OFFICE, json={**terms, "effective_from": "2025-03-01"}).status_code == 200
        back = api.put(url, headers=OFFICE, json={**terms, "compensation_bp": 2000, "effective_from": "2025-02-01"})
        assert (back.status_code, back.json()["version"]) == (200, 2), back.text
        got = api.get(url, headers=FINANCE).json()  # v2 splits February only; v1 from March on
        assert (got["version"], got["compensation_bp"], got["effective_from"]) == (1, 3000, "2025-03-01")
        doc = api.get("/openapi.json").json()
        assert "latest effective_from" in doc["paths"]["/v1/counties/{county}/settlement-policy"]["get"]["summary"]
