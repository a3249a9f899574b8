"""The transaction a use case runs in: the session, the time it happens at, and where its events go
(the outbox of an HTTP unit of work, or the consumer's message context, which adds causation)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy.orm import Session

from shared.consumer import MessageContext
from shared.envelope import Event
from shared.unit_of_work import UnitOfWork


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Tx:
    session: Session
    now: datetime
    _emit: Callable[[Event, str], object]

    def emit(self, event: Event, subject: str) -> None:
        """Into the outbox, on the event's own topic, keyed by ``subject`` (the aggregate id)."""
        self._emit(event, subject)

    @classmethod
    def of_uow(cls, uow: UnitOfWork, now: datetime | None = None) -> "Tx":
        return cls(uow.session, now or utcnow(), lambda e, s: uow.emit(e, subject=s))

    @classmethod
    def of_message(cls, ctx: MessageContext, now: datetime | None = None) -> "Tx":
        return cls(ctx.session, now or utcnow(), lambda e, s: ctx.emit(e, subject=s))


@dataclass
class BatchTx:
    """The transaction of many messages applied at once (the consumer's batch path). Events are kept, in order,
    with the position of the message that caused them (None: several did), and written to the outbox together."""

    session: Session
    now: datetime
    emitted: list[tuple[Event, str, int | None]] = field(default_factory=list)

    def emit(self, event: Event, subject: str, cause: int | None) -> None:
        self.emitted.append((event, subject, cause))
