"""The ledger's answers to our transfers (on countypool.ledger.events) move lots and requests on.

Events about transfers we never asked for (other services') are ignored. For a linked reservation chain
the ledger refuses every member: the culprit with its reason, the others with ``linked_event_failed``;
only the culprit's answer closes the request, so the recorded reason is the real one."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from shared.contracts.ledger import (
    TransferExpired, TransferPending, TransferPosted, TransferRejected, TransferVoided,
)
from shared.envelope import Event
from shared.metrics import when_committed
from services.quota.application.ledger_commands import send_moves
from services.quota.application.saga import carry_out, unless_withdrawn
from services.quota.application.tx import Tx
from services.quota.domain.ledger_moves import repost_moves
from services.quota.domain.requests import (
    on_ledger_expired, on_ledger_refused, on_ledger_reserved, on_ledger_voided,
)
from services.quota.metrics import LEDGER_REFUSALS
from services.quota.storage import intake_store, request_store, transfer_store
from services.quota.storage.counties import lock_county

log = logging.getLogger(__name__)
LEDGER_OUTCOMES = (TransferPending, TransferPosted, TransferRejected, TransferVoided, TransferExpired)


# A transfer in one of these states has had the ledger's last word on it.
_FINAL = frozenset({"posted", "voided", "expired", "rejected"})


def on_ledger_outcome(tx: Tx, event: Event) -> str:
    """Returns what it did, for logs and tests."""
    row = transfer_store.transfer_row(tx.session, event.transfer_id)
    if row is None:
        return _foreign(tx, event)
    if row.state in _FINAL and isinstance(event, (TransferPending, TransferExpired, TransferRejected)):
        # a copy of an earlier answer (a ledger restored from a backup answers again): taken, it set a voided or
        # posted hold back to pending and asked the ledger for a void it refused
        return "repeat"
    if isinstance(event, TransferPending):
        transfer_store.set_answer(tx.session, row.transfer_id, "pending", tx.now)
        return _saga(tx, row, lambda req: on_ledger_reserved(req, row.transfer_id, tx.now))
    if isinstance(event, TransferPosted):
        transfer_store.set_answer(tx.session, row.transfer_id, "posted", tx.now)
        if event.pending_id:
            transfer_store.set_answer(tx.session, event.pending_id, "posted", tx.now)
        if row.purpose == "intake":
            intake_store.set_lot_ledger_state(tx.session, row.lot_id, "booked")
        return "posted"
    if isinstance(event, TransferVoided):
        transfer_store.set_answer(tx.session, row.transfer_id, "voided", tx.now)
        if event.pending_id:
            transfer_store.set_answer(tx.session, event.pending_id, "voided", tx.now)
        return "voided"
    if isinstance(event, TransferExpired):
        transfer_store.set_answer(tx.session, row.transfer_id, "expired", tx.now)
        return _saga(tx, row, lambda req: on_ledger_expired(req, row.transfer_id, tx.now))
    if isinstance(event, TransferRejected):
        return _refused(tx, row, event.reason)
    return "ignored"


def foreign_void_of_ours(event: Event) -> bool:
    """A TransferVoided of someone else's void (not one of our ``quota/`` ids) naming one of our reservations as its
    pending transfer. A string test, so the batch path can send these few to ``on_ledger_outcome`` (a saga step)
    without a lookup for the many plain answers."""
    return (isinstance(event, TransferVoided) and event.pending_id.startswith("quota/reserve/")
            and not event.transfer_id.startswith("quota/"))


def _foreign(tx: Tx, event: Event) -> str:
    """A transfer we did not ask for. Its void of our reservation still releases what the request held: before, the
    answer was ignored and the request stayed reserved while the ledger had returned the quota to the pool."""
    if not foreign_void_of_ours(event):
        return "not_ours"
    row = transfer_store.transfer_row(tx.session, event.pending_id)
    if row is None or row.purpose != "reserve":
        return "not_ours"
    log.warning("the ledger voided our reservation %s by %s, not at our asking", row.transfer_id, event.transfer_id)
    transfer_store.set_answer(tx.session, row.transfer_id, "voided", tx.now)
    return _saga(tx, row, lambda req: on_ledger_voided(req, row.transfer_id, tx.now))


def _refused(tx: Tx, row, reason: str) -> str:
    transfer_store.set_answer(tx.session, row.transfer_id, "rejected", tx.now, reason)
    when_committed(tx.session, LEDGER_REFUSALS.labels(row.purpose, reason).inc)  # not for a batch retried
    if row.purpose == "intake":
        log.error("the ledger refused the intake of lot %s: %s", row.lot_id, reason)
        intake_store.set_lot_ledger_state(tx.session, row.lot_id, "refused")
        return "intake_refused"
    if row.purpose == "reserve":
        if reason == "linked_event_failed":
            return "chain_member_refused"  # the culprit's own answer closes the request
        return _saga(tx, row, lambda req: on_ledger_refused(req, row.transfer_id, reason, tx.now))
    if row.purpose == "post":
        if reason in LATE_POST and row.transfer_id.startswith("quota/post/") and row.request_id is not None:
            # Allocated here, but the post reached the ledger after its hold expired (or beside a line that did):
            # the allocation stands, so the ledger is made to agree.
            log.warning("the ledger refused to post %s (%s): posting the allocation again as %s", row.transfer_id,
                        reason, f"quota/repost/{row.request_id}/{row.asset}")
            send_moves(tx, repost_moves(row.request_id, row.asset, row.debit_account, row.credit_account, row.amount),
                       county_code=row.county_code, request_id=row.request_id)
            return "reposted"
        # a repost refused too, or another refusal: reconciliation reports the difference for an operator
        log.error("the ledger refused to post %s: %s", row.transfer_id, reason)
    return "refused"


# a post refused because its reservation expired, or someone (an operator, through the ledger's API) voided it
# after the allocation was made here, or linked to one that was (a request's lines post as one chain)
LATE_POST = frozenset({"pending_transfer_expired", "pending_transfer_already_voided", "linked_event_failed"})


def _saga(tx: Tx, row, step) -> str:
    if row.request_id is None:
        return "no_request"
    cp = lock_county(tx.session, row.county_code, tx.now)
    req = request_store.load_request(tx.session, row.request_id)
    if req is None:
        return "no_request"
    tr = carry_out(tx, cp.policy, unless_withdrawn(tx, req, step(req)))
    return tr.reason


# Answers that only record themselves (no saga step, no lock): many are applied with a few statements.
PLAIN_ANSWERS = {TransferPosted.name: "posted", TransferVoided.name: "voided"}


def on_plain_answers(session: Session, now: datetime, events: list[TransferPosted | TransferVoided]) -> None:
    """``on_ledger_outcome`` of many TransferPosted / TransferVoided, in order (the last word on a transfer
    wins, as one after the other would), with one lookup and one update per table and state."""
    states = {PLAIN_ANSWERS[e.name] for e in events}
    if len(states) == 1 and not any(e.pending_id for e in events):
        # the usual poll (intake answers, all TransferPosted): each of ours gets this state, so the lookup and
        # the update are one statement (returning what the lookup would have read)
        s = states.pop()
        rows = transfer_store.set_answers_returning(session, sorted({e.transfer_id for e in events}), s, now)
        if s == "posted":
            intake_store.set_lots_ledger_state(
                session, sorted({r.lot_id for r in rows if r.purpose == "intake"}), "booked")
        return
    rows = transfer_store.transfer_rows(session, [e.transfer_id for e in events])
    state: dict[str, str] = {}
    booked: list[str] = []
    for e in events:
        row = rows.get(e.transfer_id)
        if row is None:
            continue  # not ours
        s = PLAIN_ANSWERS[e.name]
        state[row.transfer_id] = s
        if e.pending_id:
            state[e.pending_id] = s
        if s == "posted" and row.purpose == "intake":
            booked.append(row.lot_id)
    for s in sorted(set(state.values())):
        transfer_store.set_answers(session, sorted(t for t, v in state.items() if v == s), s, now)
    intake_store.set_lots_ledger_state(session, sorted(set(booked)), "booked")
