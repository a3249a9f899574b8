"""The ledger's outcome events as outbox rows, serialized straight to JSON.

A batch of up to 10,000 transfers says one TransferPosted/Pending/Voided/Expired/Rejected per transfer. Building
an event model and an Envelope model per transfer and dumping them was the largest single cost of a batch;
here the payload is a dict dumped by orjson into shared.envelope.EnvelopeText, which gives the same bytes as
``new_envelope(event, ...).to_json()`` (pydantic-core and orjson escape strings alike; a unit test holds the
two equal). The pydantic contracts in shared/contracts/ledger.py stay the schema: figures on this path are the
ledger's own, already checked; anything built from a caller's input (rejections, accounts) is validated by
its model first.
"""
from __future__ import annotations

from datetime import datetime

import orjson
from pydantic_core import to_jsonable_python

from shared.contracts import topics
from shared.envelope import Envelope, EnvelopeText, Event
from shared.logs import correlation_id


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
    """Outbox rows of one transaction's events (tuples in Outbox.ROW_COLUMNS order, as Outbox.add_tuples takes
    them), all recorded at ``now``."""

    def __init__(self, source: str, producer: str, now: datetime, causation: str | None,
                 correlation: str | None = None):
        self.source = source
        self.producer = producer
        self.now = now
        self.causation = causation
        # the request's or message's correlation id; an event without one correlates with itself
        self.correlation = correlation if correlation is not None else correlation_id.get()
        self.times = TimeText()
        self._text = EnvelopeText(source, producer, now)
        self.rows: list[tuple] = []

    def add(self, cls: type[Event], data: dict, subject: str, event_id: str, *,
            correlation: str | None = None, causation: str | None = None) -> None:
        """One event of type ``cls`` whose payload's JSON form is ``data`` (in the contract's field order);
        ``correlation``/``causation`` those of the request it answers when several were merged (else the rows')."""
        text = self._text(cls, subject, event_id, orjson.dumps(data).decode(),
                          correlation=correlation or self.correlation, causation=causation or self.causation)
        self.rows.append((event_id, cls.type_name(), topics.LEDGER_EVENTS, subject, text, self.now))

    def add_envelope(self, env: Envelope) -> None:
        """An event built (and validated) as a model: rare ones, such as rejections and opened accounts."""
        self.rows.append((env.id, env.type, topics.LEDGER_EVENTS, env.subject, env.to_json().decode(), env.recordedat))
