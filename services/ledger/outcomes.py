"""The ledger's outcome events as outbox rows, serialized straight to JSON.

A batch of up to 10,000 transfers says one TransferPosted/Pending/Voided/Expired/Rejected per transfer. Building
an event model and an Envelope model per transfer and dumping them was the largest single cost of a batch;
here the envelope is a dict in the Envelope's field order, dumped by orjson, which gives the same bytes as
``new_envelope(event, ...).to_json()`` (pydantic-core and orjson escape strings alike; a unit test holds the
two equal). The pydantic contracts in shared/contracts/ledger.py stay the schema: figures on this path are the
ledger's own, already checked; anything built from a caller's input (rejections, accounts) is validated by
its model first.
"""
from __future__ import annotations

import os
from datetime import datetime

import orjson
from pydantic_core import to_jsonable_python

from shared.contracts import topics
from shared.envelope import Envelope, Event
from shared.logs import correlation_id


_VARIANT = "89ab89ab89ab89ab"  # RFC 4122 variant: the 17th hex digit's two high bits are 10


def event_ids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs in the text form ``str(uuid.uuid4())`` has, from one read of the system's
    random source instead of one per event (each read releases the GIL, and getting it back waits on busy
    threads), formatted from the hex digits directly (a uuid.UUID object per event costs more)."""
    h = os.urandom(16 * n).hex()
    v = _VARIANT
    return [f"{h[k:k + 8]}-{h[k + 8:k + 12]}-4{h[k + 13:k + 16]}-{v[int(h[k + 16], 16)]}{h[k + 17:k + 20]}-{h[k + 20:k + 32]}"
            for k in range(0, 32 * n, 32)]


_TYPES: dict[type, str] = {}


def _type_name(cls: type[Event]) -> str:
    name = _TYPES.get(cls)
    if name is None:
        name = _TYPES[cls] = cls.type_name()
    return name


class TimeText:
    """JSON text of datetimes, as pydantic writes them ('...Z'); a batch's events share a few: each once."""

    __slots__ = ("_seen",)

    def __init__(self):
        self._seen: dict[datetime, str] = {}

    def __call__(self, d: datetime | None) -> str | None:
        if d is None:
            return None
        s = self._seen.get(d)
        if s is None:
            s = self._seen[d] = to_jsonable_python(d)
        return s


class OutboxRows:
    """Outbox rows (dicts of the outbox table's columns) of one transaction's events, all recorded at ``now``."""

    def __init__(self, source: str, producer: str, now: datetime, causation: str | None,
                 correlation: str | None = None):
        self.source = source
        self.producer = producer
        self.now = now
        self.causation = causation
        # the request's or message's correlation id; an event without one correlates with itself
        self.correlation = correlation if correlation is not None else correlation_id.get()
        self.times = TimeText()
        self._now_text = self.times(now)
        self.rows: list[dict] = []

    def add(self, cls: type[Event], data: dict, subject: str, event_id: str, *,
            correlation: str | None = None) -> None:
        """One event of type ``cls`` whose payload's JSON form is ``data`` (in the contract's field order)."""
        if not subject or len(subject) > 200:
            raise ValueError("an event's subject (its aggregate id) must be 1..200 characters")
        now = self._now_text
        env = {"specversion": "1.0", "id": event_id, "source": self.source, "type": _type_name(cls),
               "subject": subject, "time": now, "datacontenttype": "application/json",
               "aggregatetype": cls.aggregate_type, "aggregateversion": 0,
               "correlationid": correlation or self.correlation or event_id}
        if self.causation is not None:
            env["causationid"] = self.causation
        env["recordedat"] = now
        env["producer"] = self.producer
        env["data"] = data
        self.rows.append({"event_id": event_id, "event_type": env["type"], "topic": topics.LEDGER_EVENTS,
                          "key": subject, "envelope": orjson.dumps(env).decode(), "created_at": self.now})

    def add_envelope(self, env: Envelope) -> None:
        """An event built (and validated) as a model: rare ones, such as rejections and opened accounts."""
        self.rows.append({"event_id": env.id, "event_type": env.type, "topic": topics.LEDGER_EVENTS,
                          "key": env.subject, "envelope": env.to_json().decode(), "created_at": env.recordedat})
