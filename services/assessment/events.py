"""Writing the service's events to its outbox, one or many in one insert (a county run emits 100,000)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from shared.envelope import Event, new_envelope
from shared.logs import correlation_id
from shared.outbox import Outbox


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
