"""Locks that keep every fact in exactly one statement (PostgreSQL advisory locks; on SQLite, ``BEGIN IMMEDIATE``
already serializes writers, so these only make sure that transaction has begun before the clock is read).

The cut-off problem: finalizing takes ``as_of = now`` and settles every fact received by then; a fact whose
transaction took ``received_at`` just before but commits just after would be invisible to the finalization and,
being older than the cut-off, ignored by the next period too — lost. So every intake holds the *shared* cut-off
lock and reads the clock only after getting it; finalizing holds it *exclusively* and reads the clock after
getting it. A finalization therefore waits for in-flight intakes, and intakes arriving meanwhile wait for it and
get a ``received_at`` after its cut-off.

Runs of one county (draft or finalize) also hold a per-county lock, so two runs never write the same statement.
Recording an agreement version holds that county lock too (its closed-period check must not race a finalization)
and a per-enterprise lock (its overlap check must not race another agreement of the same enterprise, in any
county): ``agreement_registry``. The same per-enterprise lock keeps an intake input from waiting for an enterprise
another writer is making known at that moment (``intake._known_after_lock``).
"""
from __future__ import annotations

import zlib

from sqlalchemy import text
from sqlalchemy.orm import Session

_CUTOFF_KEY = zlib.crc32(b"countypool-settlement-cutoff")


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def hold_intake(session: Session) -> None:
    """Shared: many intakes at once, none while a cut-off is being taken."""
    if _is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": _CUTOFF_KEY})
    else:
        _begin_now(session)


def hold_cutoff(session: Session) -> None:
    """Exclusive: waits for intakes in flight, holds new ones back until this transaction ends."""
    if _is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CUTOFF_KEY})
    else:
        _begin_now(session)


def _begin_now(session: Session) -> None:
    # SQLite: the session starts its transaction (BEGIN IMMEDIATE: the one writer lock) at its first statement.
    # Make that happen here, before the caller reads the clock, not later at its first real query.
    session.execute(text("SELECT 1"))


def hold_county(session: Session, county: str) -> None:
    if _is_postgres(session):
        key = zlib.crc32(f"countypool-settlement-county-{county}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        _begin_now(session)


def hold_enterprise(session: Session, credit_code: str) -> None:
    """Agreement versions of one enterprise are recorded one at a time, whatever their county (see
    ``agreement_registry``: two overlapping agreements checked side by side would each pass)."""
    if _is_postgres(session):
        key = zlib.crc32(f"countypool-settlement-enterprise-{credit_code}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        _begin_now(session)
