"""The event envelope (CloudEvents 1.0, structured JSON) and the registry of event contracts.

Every event type is a pydantic model registered under ``(name, version)``; its CloudEvents ``type`` is
``countypool.<Name>.v<version>``. Old versions are upcast on read by registered ``v(n) -> v(n+1)``
functions, never rewritten. Decoding an unknown type, an unsupported version or an invalid payload raises
:class:`EnvelopeError` whose ``reason`` is machine-readable (it becomes the DLQ header or the HTTP 4xx body).
"""
from __future__ import annotations

import json
import os
import re
from time import time_ns
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import to_json

TYPE_PREFIX = "countypool."
# ids and names go into keys and text columns: no control characters (PostgreSQL text cannot hold NUL)
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID_MAX = 200  # ids, source, subject, correlation and causation ids
_CORRELATION_ID = re.compile(r"[^\x00-\x1f\x7f]{1,%d}" % _ID_MAX)
_TYPE_RE = re.compile(r"^countypool\.(?P<name>[A-Za-z][A-Za-z0-9]*)\.v(?P<version>[1-9][0-9]*)$")


def acceptable_correlation_id(value: str) -> bool:
    """Whether ``value`` passes the envelope's check of ``correlationid`` (so events carrying it are taken)."""
    return _CORRELATION_ID.fullmatch(value) is not None


class EnvelopeError(ValueError):
    def __init__(self, reason: str, message: str, details: Any = None):
        super().__init__(message)
        self.reason = reason
        self.details = details


class Event(BaseModel):
    """Base of every event payload. Subclasses set ``name``, ``version``, ``topic`` and ``aggregate_type``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]
    version: ClassVar[int] = 1
    topic: ClassVar[str]
    aggregate_type: ClassVar[str]

    @classmethod
    def type_name(cls) -> str:
        return f"{TYPE_PREFIX}{cls.name}.v{cls.version}"


_REGISTRY: dict[tuple[str, int], type[Event]] = {}
_LATEST: dict[str, int] = {}
_UPCASTERS: dict[tuple[str, int], Callable[[dict], dict]] = {}


_RESERVED = ("name", "version", "topic", "aggregate_type")


def register(cls: type[Event]) -> type[Event]:
    clash = [f for f in _RESERVED if f in cls.model_fields]
    if clash:
        raise RuntimeError(f"{cls.__name__}: field {clash[0]!r} would shadow the event's own attribute; rename it")
    key = (cls.name, cls.version)
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise RuntimeError(f"event {key} registered twice")
    _REGISTRY[key] = cls
    _LATEST[cls.name] = max(_LATEST.get(cls.name, 0), cls.version)
    return cls


def upcaster(name: str, from_version: int):
    """Register a function turning a v(n) payload dict into a v(n+1) payload dict."""

    def deco(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        _UPCASTERS[(name, from_version)] = fn
        return fn

    return deco


def registered_events() -> dict[tuple[str, int], type[Event]]:
    return dict(_REGISTRY)


def latest(name: str) -> type[Event]:
    return _REGISTRY[(name, _LATEST[name])]


class Envelope(BaseModel):
    """CloudEvents 1.0 attributes plus our extensions (lower-case, as the spec requires)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: str = "1.0"
    id: str = Field(min_length=1, max_length=200, pattern=_PRINTABLE)
    source: str = Field(min_length=1, max_length=200, pattern=_PRINTABLE)
    type: str
    subject: str = Field(min_length=1, max_length=200, pattern=_PRINTABLE, description="aggregate id; also the Kafka key")
    time: datetime
    datacontenttype: str = "application/json"
    aggregatetype: str = Field(min_length=1, max_length=100, pattern=_PRINTABLE)
    aggregateversion: int = Field(default=0, ge=0)
    correlationid: str | None = Field(default=None, max_length=_ID_MAX, pattern=_PRINTABLE)
    causationid: str | None = Field(default=None, max_length=_ID_MAX, pattern=_PRINTABLE)
    recordedat: datetime | None = None
    producer: str | None = Field(default=None, max_length=100, pattern=_PRINTABLE)
    data: dict[str, Any]

    @field_validator("specversion")
    @classmethod
    def _spec(cls, v: str) -> str:
        if v != "1.0":
            raise ValueError("specversion must be 1.0")
        return v

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if not _TYPE_RE.match(v):
            raise ValueError("type must look like countypool.<Name>.v<N>")
        return v

    @field_validator("time", "recordedat")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("times must carry a timezone")
        return v

    @property
    def event_name(self) -> str:
        return _TYPE_RE.match(self.type)["name"]  # type: ignore[index]

    @property
    def event_version(self) -> int:
        return int(_TYPE_RE.match(self.type)["version"])  # type: ignore[index]

    def payload(self) -> Event:
        """The typed payload, upcast to the latest registered version."""
        return parse_payload(self.event_name, self.event_version, self.data)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def new_envelope(
    event: Event,
    *,
    subject: str,
    source: str,
    producer: str | None = None,
    aggregate_version: int = 0,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> Envelope:
    now = datetime.now(timezone.utc)
    eid = event_id or new_event_id()
    if not subject or len(subject) > 200 or _CONTROL.search(subject):
        # constructed unvalidated below: what every reader's decode refuses must be refused here
        raise ValueError("an event's subject (its aggregate id) must be 1..200 characters, none a control character")
    if (time or now).tzinfo is None:
        raise ValueError("times must carry a timezone")
    # Built from a validated payload and our own attributes: construct without re-validating (hot path).
    return Envelope.model_construct(
        id=eid,
        source=source,
        type=event.type_name(),
        subject=subject,
        time=time or now,
        aggregatetype=event.aggregate_type,
        aggregateversion=aggregate_version,
        correlationid=correlation_id or eid,
        causationid=causation_id,
        recordedat=now,
        producer=producer,
        data=event.model_dump(mode="json", by_alias=True),
    )


def upcast(name: str, version: int, data: dict) -> dict:
    """A payload dict of ``name`` v``version`` brought to the latest version (unvalidated: for replay of
    events this service wrote and validated itself, and for :func:`parse_payload`)."""
    target = _LATEST.get(name, version)
    doc = data
    while version < target:
        step = _UPCASTERS.get((name, version))
        if step is None:
            raise EnvelopeError("unsupported_version", f"no upcaster for {name} v{version}")
        doc, version = step(dict(doc)), version + 1
    return doc


def parse_type(event_type: str) -> tuple[str, int]:
    """``countypool.Name.vN`` -> (Name, N)."""
    m = _TYPE_RE.match(event_type)
    if m is None:
        raise EnvelopeError("invalid_envelope", f"not a countypool event type: {event_type!r}")
    return m["name"], int(m["version"])


def parse_payload(name: str, version: int, data: dict) -> Event:
    if name not in _LATEST:
        raise EnvelopeError("unknown_type", f"unknown event type {name!r}")
    target = _LATEST[name]
    if version > target or (name, version) not in _REGISTRY and (name, version) not in _UPCASTERS:
        raise EnvelopeError(
            "unsupported_version", f"{name} v{version} is not supported (known up to v{target})"
        )
    doc, version = upcast(name, version, data), target
    try:
        return _REGISTRY[(name, version)].model_validate(doc)
    except ValidationError as exc:
        raise EnvelopeError("invalid_payload", f"{name} v{version}: {_summary(exc)}", _details(exc)) from None


def decode(raw: bytes | str | dict) -> tuple[Envelope, Event]:
    """Parse and validate a message: envelope first, then its payload against the registered contract."""
    if isinstance(raw, dict):
        doc = raw
    else:
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EnvelopeError("malformed_json", f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("invalid_envelope", "the envelope must be a JSON object")
    try:
        env = Envelope.model_validate(doc)
    except ValidationError as exc:
        raise EnvelopeError("invalid_envelope", _summary(exc), _details(exc)) from None
    return env, env.payload()


def _details(exc: ValidationError) -> list[dict]:
    return [{"field": ".".join(str(p) for p in e["loc"]), "error": e["msg"]} for e in exc.errors()]


def _summary(exc: ValidationError) -> str:
    return "; ".join(f"{d['field']}: {d['error']}" for d in _details(exc))


# -- many envelopes at once ------------------------------------------------------------------------------------
def new_event_ids(n: int) -> list[str]:
    """``n`` time-ordered UUIDs (version 7, RFC 9562), in order: the Unix time in milliseconds, a counter from
    a random start, then 48 random bits. Events written together get neighbouring ids, so their inserts into
    the outbox's unique index, and into each consumer's inbox, land on the same few pages (random version 4
    ids put each on a page of its own: every commit rewrote most of the index). One read of the system's
    random source for all of them, formatted from hex digits (a uuid.UUID object per event costs more)."""
    ms = time_ns() // 1_000_000
    t = f"{ms >> 16 & 0xFFFFFFFF:08x}-{ms & 0xFFFF:04x}-7"
    h = os.urandom(6 * n + 3).hex()
    start = int(h[:6], 16) >> 1  # below 2**23, so up to 2**23 ids count up within 24 bits
    out = []
    for i, k in enumerate(range(6, 12 * n + 6, 12)):
        c = f"{start + i:06x}"
        out.append(f"{t}{c[:3]}-8{c[3:]}-{h[k:k + 12]}")
    return out


def new_event_id() -> str:
    return new_event_ids(1)[0]


def _json_text(value: str) -> str:
    # orjson escapes strings exactly as pydantic-core's serializer (Envelope.to_json) does, in a third of the time
    return orjson.dumps(value).decode()


class EnvelopeText:
    """The JSON text ``new_envelope(event, ...).to_json()`` gives, for the many events a batch records at one
    moment, without an event and an Envelope model per event (a ledger batch, a quota poll or a county's
    evaluation writes thousands): the envelope's constant parts are rendered once, per event only its id,
    subject, type, correlation, causation and payload (already JSON). Tests hold it byte-equal to the model."""

    def __init__(self, source: str, producer: str, now: datetime):
        if now.tzinfo is None:
            raise ValueError("times must carry a timezone")
        at = to_json(now).decode()  # pydantic's rendering of a time ('...Z'), as the model writes it
        self._source = f',"source":{_json_text(source)},"type":'
        self._time = f',"time":{at},"datacontenttype":"application/json","aggregatetype":'
        self._tail = f',"recordedat":{at},"producer":{_json_text(producer)},"data":'
        self._types: dict[type, tuple[str, str]] = {}

    def __call__(self, cls: type[Event], subject: str, event_id: str, data_json: str, *,
                 correlation: str | None = None, causation: str | None = None) -> str:
        """``data_json``: the payload as the contract dumps it. Without ``correlation`` the event correlates with
        itself, as new_envelope's does."""
        if not subject or len(subject) > 200 or _CONTROL.search(subject):
            # what the model (and so every reader's decode) refuses must not be written as text either
            raise ValueError("an event's subject (its aggregate id) must be 1..200 characters, none a control character")
        names = self._types.get(cls)
        if names is None:
            names = self._types[cls] = (_json_text(cls.type_name()), _json_text(cls.aggregate_type))
        eid = _json_text(event_id)
        return "".join((
            '{"specversion":"1.0","id":', eid, self._source, names[0], ',"subject":', _json_text(subject),
            self._time, names[1], ',"aggregateversion":0,"correlationid":',
            _json_text(correlation) if correlation else eid,
            "" if causation is None else ',"causationid":' + _json_text(causation),
            self._tail, data_json, "}",
        ))
