"""The consumer's decoding of a message (shared.consumer.decode_message): the envelope validated straight from
the bytes, with exactly ``shared.envelope.decode``'s result and refusals."""
from __future__ import annotations

import json

import pytest

from shared.consumer import decode_message, payload_digest
from shared.envelope import EnvelopeError, Event, decode, new_envelope, register


@register
class GaugeRead(Event):
    name = "TestGaugeRead"
    version = 1
    topic = "test"
    aggregate_type = "gauge"
    gauge: str
    reading: int
    note: str | None = None


def _good(**extra) -> bytes:
    return new_envelope(GaugeRead(gauge="g-1", reading=7, note="水位"), subject="g-1", source="/test", **extra).to_json()


def _doc() -> dict:
    return json.loads(_good())


def _raw(doc) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def test_a_good_message_decodes_as_decode_does():
    raw = _good(correlation_id="c-1", causation_id="e-0")
    env, ev = decode_message(raw)
    env2, ev2 = decode(raw)
    assert env == env2 and ev == ev2
    assert payload_digest(env) == payload_digest(env2)


BAD = {
    "not json": b"{not json",
    "truncated": b'{"specversion": "1.0", "id": "x", "type": "countypool.',
    "not utf-8": b'{"id": "\xff\xfe"}',
    "an array": b"[1, 2]",
    "a number": b"42",
    "empty": b"",
    "NaN literal": b'{"specversion": "1.0", "id": NaN}',
}


def _mutated(change) -> bytes:
    doc = _doc()
    change(doc)
    return _raw(doc)


BAD.update({
    "unknown type": _mutated(lambda d: d.update(type="countypool.NoSuchThing.v1")),
    "version from the future": _mutated(lambda d: d.update(type="countypool.TestGaugeRead.v9")),
    "bad type string": _mutated(lambda d: d.update(type="gauge-read")),
    "payload of the wrong shape": _mutated(lambda d: d["data"].update(reading="many")),
    "extra payload field": _mutated(lambda d: d["data"].update(colour="red")),
    "extra envelope field": _mutated(lambda d: d.update(colour="red")),
    "naive time": _mutated(lambda d: d.update(time="2024-01-01T00:00:00")),
    "no id": _mutated(lambda d: d.pop("id")),
    "data not an object": _mutated(lambda d: d.update(data=[1])),
    "id too long": _mutated(lambda d: d.update(id="x" * 201)),
})


@pytest.mark.parametrize("raw", list(BAD.values()), ids=list(BAD))
def test_a_refusal_has_decodes_reason_and_message(raw):
    with pytest.raises(EnvelopeError) as expected:
        decode(raw)
    with pytest.raises(EnvelopeError) as got:
        decode_message(raw)
    assert (got.value.reason, str(got.value)) == (expected.value.reason, str(expected.value))


def test_a_message_without_a_value_is_malformed():
    with pytest.raises(EnvelopeError) as got:
        decode_message(None)
    assert got.value.reason == "malformed_json"


def test_lenient_inputs_decode_can_take_are_taken_the_same():
    """What json.loads accepts and the JSON parser might not (a BOM, duplicate keys, spacing) gives the same
    envelope either way: the fast path falls back to decode, or agrees with it."""
    doc = _doc()
    for raw in (b"\xef\xbb\xbf" + _raw(doc), _raw(doc).replace(b'"gauge":', b'"gauge":"x","gauge":', 1),
                json.dumps(doc, indent=2).encode()):
        try:
            expected = decode(raw)
        except EnvelopeError as exc:
            with pytest.raises(EnvelopeError) as got:
                decode_message(raw)
            assert got.value.reason == exc.reason
            continue
        assert decode_message(raw) == expected
