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

from services.assessment.storage.bulk_rows import insert_tuples
from shared.bulk import is_pg
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
    if len(items) > outbox.SMALL and not is_pg(session):
        # SQLite: the rows as tuples straight into the driver (Outbox.add_rows would give them to SQLAlchemy's
        # executemany, which builds and processes a parameter dict per row: a quarter of an import's writing)
        insert_tuples(session, outbox.table, ROW_COLUMNS, list(plain_tuples(outbox, actor, cls, items, now)))
        return
    outbox.add_rows(session, list(plain_rows(outbox, actor, cls, items, now)))


ROW_COLUMNS = ("event_id", "event_type", "topic", "key", "envelope", "created_at")  # plain_tuples' order


def plain_rows(outbox: Outbox, actor: Actor, cls: type[Event], items: Sequence[tuple[dict, str, str | None]],
               now: datetime) -> Iterator[dict]:
    """Outbox rows, as Outbox.add_rows takes them, of payloads already in their JSON form."""
    for row in plain_tuples(outbox, actor, cls, items, now):
        yield dict(zip(ROW_COLUMNS, row))


def plain_tuples(outbox: Outbox, actor: Actor, cls: type[Event], items: Sequence[tuple[dict, str, str | None]],
                 now: datetime) -> Iterator[tuple]:
    """plain_rows as tuples in ROW_COLUMNS order. The envelope's constant parts are written once: per event
    only its id, subject and data are serialized (by orjson, as the whole envelope would be)."""
    if now.tzinfo is None:
        raise ValueError("times must carry a timezone")
    at = _TIME.dump_json(now).decode()  # pydantic's own rendering of the time, as new_envelope's
    cid = correlation_id.get()
    type_name, aggregate = cls.type_name(), cls.aggregate_type
    source, producer, topic, causation = outbox.source, outbox.service, cls.topic, actor.causation
    dumps = orjson.dumps
    # the envelope in Envelope.to_json's field order: {"specversion", "id", "source", "type", "subject", "time",
    # "datacontenttype", "aggregatetype", "aggregateversion", "correlationid", ["causationid",] "recordedat",
    # "producer", "data"}
    head = '{"specversion":"1.0","id":'
    middle = f',"source":{_json(source)},"type":{_json(type_name)},"subject":'
    after_subject = (f',"time":{at},"datacontenttype":"application/json","aggregatetype":{_json(aggregate)},'
                     f'"aggregateversion":0,"correlationid":')
    tail = ((f',"causationid":{_json(causation)}' if causation is not None else "")
            + f',"recordedat":{at},"producer":{_json(producer)},"data":')
    fixed_cid = None if not cid else _json(cid)
    ids = new_ids(sum(1 for _, _, event_id in items if not event_id))
    for data, subject, event_id in items:
        if not subject or len(subject) > 200:
            raise ValueError("an event's subject (its aggregate id) must be 1..200 characters")
        eid = event_id or next(ids)
        eid_json = _json(eid) if event_id else f'"{eid}"'  # a generated id is hex digits and dashes
        envelope = (head + eid_json + middle + dumps(subject).decode() + after_subject + (fixed_cid or eid_json)
                    + tail + dumps(data).decode() + "}")
        yield (eid, type_name, topic, subject, envelope, now)


def _json(value: str) -> str:
    return orjson.dumps(value).decode()


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
