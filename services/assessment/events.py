"""Writing the service's events to its outbox, one or many in one insert (a county run emits 100,000).

``emit`` takes event models (validated by pydantic as they are built). ``emit_plain`` is the bulk path: the
payloads are plain dicts already in the contract's JSON form, and each envelope is serialized by orjson in
the field order ``Envelope.to_json`` writes, so the stored bytes are the same as ``emit`` would store
(tests/unit/assessment/test_plain_events.py). The first payload of every batch is still checked against
the contract: a contract that changed under this code makes that batch take the pydantic path.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, Sequence

import orjson
from sqlalchemy.orm import Session

from shared.envelope import EnvelopeText, Event, new_envelope, new_event_ids
from shared.logs import correlation_id
from shared.outbox import Outbox

log = logging.getLogger(__name__)


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
    outbox.add_tuples(session, list(plain_rows(outbox, actor, cls, items, now)))


def plain_rows(outbox: Outbox, actor: Actor, cls: type[Event], items: Sequence[tuple[dict, str, str | None]],
               now: datetime) -> Iterator[tuple]:
    """Outbox rows of payloads already in their JSON form, as Outbox.add_tuples takes them (Outbox.ROW_COLUMNS),
    the envelopes written by shared.envelope.EnvelopeText (per event only its id, subject and payload are
    serialized, the payload by orjson)."""
    text = EnvelopeText(outbox.source, outbox.service, now)
    cid = correlation_id.get()
    type_name, topic, causation = cls.type_name(), cls.topic, actor.causation
    dumps = orjson.dumps
    ids = iter(new_event_ids(sum(1 for _, _, event_id in items if not event_id)))
    for data, subject, event_id in items:
        eid = event_id or next(ids)
        yield (eid, type_name, topic, subject,
               text(cls, subject, eid, dumps(data).decode(), correlation=cid, causation=causation), now)


def _matches_contract(cls: type[Event], data: dict) -> bool:
    try:
        dumped = cls.model_validate(data).model_dump(mode="json", by_alias=True)
    except ValueError:
        return False
    return dumped == data and list(dumped) == list(data)
