import json
from datetime import datetime, timezone

import pytest

from shared.envelope import Envelope, EnvelopeError, Event, decode, new_envelope, register, upcaster


@register
class ParcelMeasured(Event):
    name = "TestParcelMeasured"
    version = 1
    topic = "test"
    aggregate_type = "parcel"
    parcel: str
    mu: str


@register
class ParcelMeasuredV2(Event):
    name = "TestParcelMeasured"
    version = 2
    topic = "test"
    aggregate_type = "parcel"
    parcel: str
    area_mu: str
    surveyor: str


@upcaster("TestParcelMeasured", 1)
def _v1_to_v2(doc: dict) -> dict:
    return {"parcel": doc["parcel"], "area_mu": doc["mu"], "surveyor": "unknown"}


def _env(**over):
    env = new_envelope(ParcelMeasuredV2(parcel="p1", area_mu="1.5000", surveyor="s"), subject="p1", source="/test",
                       correlation_id="corr-1", causation_id="cause-1")
    doc = json.loads(env.to_json())
    doc.update(over)
    return doc


def test_round_trip_keeps_every_attribute():
    doc = _env()
    env, payload = decode(json.dumps(doc).encode())
    assert env.type == "countypool.TestParcelMeasured.v2"
    assert (env.subject, env.correlationid, env.causationid, env.specversion) == ("p1", "corr-1", "cause-1", "1.0")
    assert payload == ParcelMeasuredV2(parcel="p1", area_mu="1.5000", surveyor="s")
    again, _ = decode(env.to_json())
    assert again == env


def test_old_versions_are_upcast_on_read():
    doc = _env(type="countypool.TestParcelMeasured.v1", data={"parcel": "p9", "mu": "2.0000"})
    _, payload = decode(doc)
    assert payload == ParcelMeasuredV2(parcel="p9", area_mu="2.0000", surveyor="unknown")


@pytest.mark.parametrize(
    "raw, reason, mentions",
    [
        (b"{oops", "malformed_json", "not JSON"),
        (b"[1, 2]", "invalid_envelope", "object"),
        (json.dumps(_env(specversion="0.3")).encode(), "invalid_envelope", "specversion"),
        (json.dumps(_env(type="Parcel")).encode(), "invalid_envelope", "type"),
        (json.dumps(_env(time="2026-01-01T00:00:00")).encode(), "invalid_envelope", "timezone"),
        (json.dumps({k: v for k, v in _env().items() if k != "subject"}).encode(), "invalid_envelope", "subject"),
        (json.dumps(_env(type="countypool.NoSuch.v1")).encode(), "unknown_type", "NoSuch"),
        (json.dumps(_env(type="countypool.TestParcelMeasured.v3")).encode(), "unsupported_version", "v3"),
        (json.dumps(_env(data={"parcel": "p1"})).encode(), "invalid_payload", "area_mu"),
        (json.dumps(_env(data={"parcel": "p1", "area_mu": "1", "surveyor": "s", "extra": 1})).encode(), "invalid_payload", "extra"),
    ],
)
def test_validation_errors_are_specific(raw, reason, mentions):
    with pytest.raises(EnvelopeError) as err:
        decode(raw)
    assert err.value.reason == reason
    assert mentions in str(err.value)


def test_naive_time_is_refused_when_building():
    with pytest.raises(ValueError):
        Envelope(id="x", source="/s", type="countypool.X.v1", subject="s", time=datetime(2026, 1, 1),
                 aggregatetype="a", data={})
    assert Envelope(id="x", source="/s", type="countypool.X.v1", subject="s", time=datetime(2026, 1, 1, tzinfo=timezone.utc),
                    aggregatetype="a", data={}).event_version == 1
