"""Which run is a county-year's current one: the request time that makes a run current whatever the clocks
(evaluations.requested_at), and the EvaluationRunMadeCurrent contract."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from services.assessment.evaluations import requested_at
from shared.contracts.assessment import EvaluationRunMadeCurrent
from shared.envelope import decode, new_envelope

NOW = datetime(2024, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
US = timedelta(microseconds=1)


def row(run_id: str, at: datetime):
    return SimpleNamespace(run_id=run_id, last_requested_at=at)


def test_a_county_years_first_run_is_requested_now():
    assert requested_at(NOW, None, "r-a") == NOW


def test_another_run_becomes_current_now_or_just_after_the_current_one():
    assert requested_at(NOW, row("r-b", NOW - timedelta(hours=1)), "r-a") == NOW
    # the clock behind the current run's last request, or equal to it (ties go to the lower run id): just after it
    assert requested_at(NOW, row("r-b", NOW + timedelta(hours=1)), "r-a") == NOW + timedelta(hours=1) + US
    assert requested_at(NOW, row("r-b", NOW), "r-a") == NOW + US


def test_the_current_run_requested_again_never_moves_back():
    assert requested_at(NOW, row("r-a", NOW - timedelta(hours=1)), "r-a") == NOW
    assert requested_at(NOW, row("r-a", NOW + timedelta(hours=1)), "r-a") == NOW + timedelta(hours=1)


def test_sqlites_naive_datetimes_are_utc():
    naive = (NOW + timedelta(seconds=5)).replace(tzinfo=None)
    assert requested_at(NOW, row("r-b", naive), "r-a") == NOW + timedelta(seconds=5) + US


def made_current(**kw) -> EvaluationRunMadeCurrent:
    args = dict(run_id="320623-2023-abc", county_code="320623", year=2023, content_hash="c" * 64, policy_version=1,
                policy_hash="h" * 64, enterprise_count=4, class_counts={"规上": {"A": 1, "B": 1, "T": 1}, "规下": {"A": 1}},
                previous_run_id=None, why="created")
    return EvaluationRunMadeCurrent(**(args | kw))


def test_the_event_round_trips_in_its_envelope():
    ev = made_current(previous_run_id="320623-2023-def", why="reinstated")
    env = new_envelope(ev, subject="320623/2023", source="/countypool/assessment")
    assert env.aggregatetype == "county-year" and env.type == "countypool.EvaluationRunMadeCurrent.v1"
    _, back = decode(env.to_json())
    assert back == ev


@pytest.mark.parametrize("bad", [{"why": "requested"}, {"previous_run_id": 1}, {"extra": "x"}])
def test_the_event_refuses_what_its_contract_does_not_say(bad):
    with pytest.raises(ValidationError):
        made_current(**bad)


def test_previous_run_id_is_always_present():
    args = made_current().model_dump()
    del args["previous_run_id"]
    with pytest.raises(ValidationError):
        EvaluationRunMadeCurrent(**args)
