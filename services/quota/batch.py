"""The quota consumer's batch path (IdempotentConsumer.batch_handler): a poll's messages in their order, runs of
releases and of plain ledger answers applied many at a time, every other message alone through ``handlers.bus``
in its own savepoint. Effects, events and refusals are those of the messages applied one after the other; a
refused message leaves no trace and is dead-lettered while the rest commit."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.orm import Session

from shared.consumer import MessageContext, Rejected
from shared.contracts.quota import QuotaReleaseSubmitted
from shared.envelope import EnvelopeText, new_event_ids
from shared.logs import correlation_id
from services.quota.application.intake_batch import ReleaseItem, submit_releases
from services.quota.application.ledger_answers import PLAIN_ANSWERS, foreign_void_of_ours, on_plain_answers
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
        elif name in PLAIN_ANSWERS and not foreign_void_of_ours(ctx.event):  # that one moves a request: alone
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
    command for many lots by none of them). The envelopes are written as text (shared.envelope.EnvelopeText),
    all recorded at one moment: a poll leaves ~3 events per release, and building an Envelope model for each,
    to serialize it at once, was about a fifth of the consumer's time (cProfile)."""
    if not btx.emitted:
        return
    outbox = contexts[0].outbox
    now = datetime.now(timezone.utc)
    text = EnvelopeText(outbox.source, outbox.service, now)
    rows = []
    names: dict[type, str] = {}  # a class's type name, formatted once per poll rather than once per event
    for (event, subject, cause), eid in zip(btx.emitted, new_event_ids(len(btx.emitted))):
        env = contexts[cause].envelope if cause is not None else None
        cls = type(event)
        if (type_name := names.get(cls)) is None:
            type_name = names[cls] = cls.type_name()
        rows.append((eid, type_name, event.topic, subject,  # Outbox.ROW_COLUMNS
                     text(cls, subject, eid, event.model_dump_json(by_alias=True),
                          correlation=env.correlationid if env else None, causation=env.id if env else None),
                     now))
    outbox.add_tuples(btx.session, rows)


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
