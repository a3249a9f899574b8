"""Transaction-scoped locks on things that have no row to lock yet (a county-year's first policy, its current run).
PostgreSQL: an advisory lock on a 64-bit hash of the name (a collision only makes two names wait for each other);
SQLite runs one writer at a time."""
from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session


def hold(s: Session, name: str) -> None:
    """Hold the lock called ``name`` until the transaction ends."""
    if s.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.blake2b(f"countypool-assessment-{name}".encode(), digest_size=8).digest(),
                             "big", signed=True)
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
