"""One unit of work per request or message: the state change and its events commit together or not at all."""
from __future__ import annotations

from typing import Callable, TypeVar

from sqlalchemy.orm import Session

from shared.db import Database, run_with_retry
from shared.envelope import Envelope, Event
from shared.outbox import Outbox

T = TypeVar("T")


class UnitOfWork:
    def __init__(self, db: Database, outbox: Outbox):
        self.db = db
        self.outbox = outbox
        self.session: Session

    def __enter__(self) -> "UnitOfWork":
        self.session = self.db.sessions()
        self.session.begin()
        return self

    def emit(self, event: Event, *, subject: str, **kw) -> Envelope:
        return self.outbox.add(self.session, event, subject=subject, **kw)

    def commit(self) -> None:
        self.session.commit()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.session.in_transaction():
                self.session.commit()
            elif self.session.in_transaction():
                self.session.rollback()
        finally:
            self.session.close()


def transactional(db: Database, outbox: Outbox, fn: Callable[[UnitOfWork], T]) -> T:
    """Run ``fn`` in a fresh unit of work, again after a deadlock or serialization failure."""

    def once() -> T:
        with UnitOfWork(db, outbox) as uow:
            return fn(uow)

    return run_with_retry(db.service, once)
