"""The quota consumer's batch path (IdempotentConsumer.batch_handler): a poll's messages in their order, runs of
releases and of plain ledger answers applied many at a time, every other message alone through ``handlers.bus``
in its own savepoint. Effects, events and refusals are those of the messages applied one after the other; a
refused message leaves no trace and is dead-lettered while the rest commit."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Iterator

from pydantic import TypeAdapter
from pydantic_core import to_json
from sqlalchemy.orm import Session

from shared.consumer import MessageContext, Rejected
from shared.contracts.quota import QuotaReleaseSubmitted
from shared.envelope import Event
from shared.logs import correlation_id
from services.quota.application.intake_batch import ReleaseItem, submit_releases
from services.quota.application.ledger_answers import PLAIN_ANSWERS, on_plain_answers
from services.quota.application.tx import BatchTx, utcnow
from services.quota.handlers import bus, refusal
from services.quota.intake_scopes import department_of


def handle_many(session: Session, contexts: list[MessageContext]) -> dict[str, Rejected]:
    """Returns the refused messages by event id."""
    refused: dict[str, Rejected] = {}
    releases: list[MessageContext] = []
    answers: list[MessageContext] = []

    def flush() -> None:  # before any message applied alone, so order holds
        if releases:
            refused.update(_releases(session, releases))
            releases.clear()
        if answers:  # independent of the releases: an answer follows its lot's commit, never shares its poll
            on_plain_answers(session, utcnow(), [c.event for c in answers])
            answers.clear()

    for ctx in contexts:
        name = ctx.envelope.event_name
        if name == QuotaReleaseSubmitted.name:
            releases.append(ctx)
        elif name in PLAIN_ANSWERS:
            answers.append(ctx)
        else:
            flush()
            if (exc := _one(ctx)) is not None:
                refused[ctx.envelope.id] = exc
    flush()
    return refused


def _releases(session: Session, contexts: list[MessageContext]) -> dict[str, Rejected]:
    btx = BatchTx(session, utcnow())
    items = [ReleaseItem(c.event.model_dump(mode="json"), department_of([c.envelope.source]), c.envelope.source)
             for c in contexts]
    results = submit_releases(btx, items)
    _write_events(btx, contexts)
    return {contexts[i].envelope.id: refusal(r) for i, r in enumerate(results) if isinstance(r, Exception)}


def _write_events(btx: BatchTx, contexts: list[MessageContext]) -> None:
    """The outbox rows ``MessageContext.emit`` would write, in one bulk insert: caused by their message (a
    command for many lots by none of them). The envelopes are written as text straight away (see
    ``envelope_json``), all recorded at one moment: a poll leaves ~3 events per release, and building an
    Envelope model for each, to serialize it at once, was about a fifth of the consumer's time (cProfile)."""
    if not btx.emitted:
        return
    outbox = contexts[0].outbox
    now = datetime.now(timezone.utc)
    at = _TIME.dump_json(now).decode()
    source, producer = to_json(outbox.source).decode(), to_json(outbox.service).decode()
    ids = new_ids(len(btx.emitted))
    rows = []
    for event, subject, cause in btx.emitted:
        env = contexts[cause].envelope if cause is not None else None
        eid = next(ids)
        rows.append(dict(event_id=eid, event_type=event.type_name(), topic=event.topic, key=subject,
                         envelope=envelope_json(event, subject, eid, at, source, producer,
                                                env.correlationid if env else None, env.id if env else None),
                         created_at=now))
    outbox.add_rows(btx.session, rows)


_TIME = TypeAdapter(datetime)


def envelope_json(event: Event, subject: str, event_id: str, at: str, source: str, producer: str,
                  correlation: str | None, causation: str | None) -> str:
    """``new_envelope(...).to_json()`` as text, for an event at ``at`` (a time as pydantic renders it, in JSON)
    with ``source`` and ``producer`` already in JSON: the same fields in the same order, every part rendered by
    pydantic's serializer as the model would, the payload with ``model_dump_json`` (its nulls kept, as
    ``Envelope.to_json`` keeps them inside ``data``)."""
    if not subject or len(subject) > 200:
        raise ValueError("an event's subject (its aggregate id) must be 1..200 characters")
    eid = to_json(event_id).decode()
    return "".join((
        '{"specversion":"1.0","id":', eid, ',"source":', source, ',"type":', to_json(event.type_name()).decode(),
        ',"subject":', to_json(subject).decode(), ',"time":', at,
        ',"datacontenttype":"application/json","aggregatetype":', to_json(event.aggregate_type).decode(),
        ',"aggregateversion":0,"correlationid":', to_json(correlation).decode() if correlation else eid,
        ',"causationid":' + to_json(causation).decode() if causation is not None else "",
        ',"recordedat":', at, ',"producer":', producer, ',"data":', event.model_dump_json(by_alias=True), "}",
    ))


def new_ids(n: int) -> Iterator[str]:
    """``n`` random (version 4) UUIDs as strings, from one read of the OS's random source (uuid.uuid4 reads 16
    bytes per call and builds an object)."""
    digits = os.urandom(16 * n).hex()
    for i in range(0, 32 * n, 32):
        h = digits[i:i + 32]
        yield f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant bits 10xx


def _one(ctx: MessageContext) -> Rejected | None:
    """One message as the consumer's one-by-one path applies it; anything but a refusal propagates (the
    consumer then applies the whole poll one by one, with its retries)."""
    token = correlation_id.set(ctx.envelope.correlationid)
    savepoint = ctx.session.begin_nested()
    try:
        bus(ctx)
    except Rejected as exc:
        savepoint.rollback()
        return exc
    except BaseException:
        savepoint.rollback()
        raise
    finally:
        correlation_id.reset(token)
    savepoint.commit()
    return None
