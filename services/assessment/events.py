"""Writing the service's events to its outbox, one or many in one insert (a county run emits 100,000).

``emit`` takes event models (validated by pydantic as they are built). ``emit_plain`` is the bulk path: the
payloads are plain dicts already in the contract's JSON form, and each envelope is serialized by orjson in
the field order ``Envelope.to_json`` writes, so the stored bytes are the same as ``emit`` would store
(tests/unit/assessment/test_plain_events.py). The first payload of every batch is still checked against
the contract: a contract that changed under this code makes that batch take the pydantic path.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, Sequence

import orjson
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from shared.envelope import Event, new_envelope
from shared.logs import correlation_id
from shared.outbox import Outbox

log = logging.getLogger(__name__)
_TIME = TypeAdapter(datetime)


@dataclass(frozen=True)
class Actor:
    """Who caused a change and through which door (api, kafka, import); ``causation`` is the id of the
    consumed event that caused it, if any."""

    principal: str
    via: str = "api"
    causation: str | None = None


def emit(session: Session, outbox: Outbox, actor: Actor, items: list[tuple[Event, str, str | None]]) -> None:
    """items: (event, subject, event id or None). The subject is the Kafka key (the aggregate id)."""
    if not items:
        return
    cid = correlation_id.get()
    envelopes = [
        (new_envelope(ev, subject=subject, source=outbox.source, producer=outbox.service, correlation_id=cid,
                      causation_id=actor.causation, event_id=event_id), ev.topic)
        for ev, subject, event_id in items
    ]
    outbox.add_many(session, envelopes)


def emit_plain(session: Session, outbox: Outbox, actor: Actor, cls: type[Event],
               items: list[tuple[dict, str, str | None]], now: datetime) -> None:
    """items: (payload as ``cls(...).model_dump(mode="json", by_alias=True)`` would give it, subject, event
    id or None), all of event type ``cls``, recorded at ``now``. The caller guarantees every payload is
    valid for ``cls`` (built from values the domain checked); the first of the batch is checked here."""
    if not items:
        return
    if not _matches_contract(cls, items[0][0]):
        log.warning("%s: payload differs from the contract; writing this batch through pydantic", cls.__name__)
        emit(session, outbox, actor, [(cls.model_validate(d), s, i) for d, s, i in items])
        return
    outbox.add_rows(session, list(plain_rows(outbox, actor, cls, items, now)))


def plain_rows(outbox: Outbox, actor: Actor, cls: type[Event], items: Sequence[tuple[dict, str, str | None]],
               now: datetime) -> Iterator[dict]:
    """Outbox rows, as Outbox.add_rows takes them, of payloads already in their JSON form."""
    if now.tzinfo is None:
        raise ValueError("times must carry a timezone")
    at = orjson.Fragment(_TIME.dump_json(now))  # pydantic's own rendering of the time, as new_envelope's
    cid = correlation_id.get()
    type_name, aggregate = cls.type_name(), cls.aggregate_type
    source, producer, topic, causation = outbox.source, outbox.service, cls.topic, actor.causation
    dumps = orjson.dumps
    ids = new_ids(sum(1 for _, _, event_id in items if not event_id))
    for data, subject, event_id in items:
        if not subject or len(subject) > 200:
            raise ValueError("an event's subject (its aggregate id) must be 1..200 characters")
        eid = event_id or next(ids)
        env = {"specversion": "1.0", "id": eid, "source": source, "type": type_name, "subject": subject,
               "time": at, "datacontenttype": "application/json", "aggregatetype": aggregate,
               "aggregateversion": 0, "correlationid": cid or eid}
        if causation is not None:
            env["causationid"] = causation
        env["recordedat"] = at
        env["producer"] = producer
        env["data"] = data
        yield {"event_id": eid, "event_type": type_name, "topic": topic, "key": subject,
               "envelope": dumps(env).decode(), "created_at": now}


def new_ids(n: int) -> Iterator[str]:
    """``n`` random (version 4) UUIDs as strings, from one read of the OS's random source instead of one
    per id (uuid.uuid4 reads 16 bytes per call and builds an object)."""
    digits = os.urandom(16 * n).hex()
    for i in range(0, 32 * n, 32):
        h = digits[i : i + 32]
        yield f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant bits 10xx


def _matches_contract(cls: type[Event], data: dict) -> bool:
    try:
        dumped = cls.model_validate(data).model_dump(mode="json", by_alias=True)
    except ValueError:
        return False
    return dumped == data and list(dumped) == list(data)
