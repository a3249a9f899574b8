"""Events in, for the settlement service: tax receipts and statistics from 税务局 (intake topic, source-checked),
quota proceeds and provenance from the quota service, the enterprise register from assessment, and the ledger's
answers to settlement's own postings. Each runs inside the consumer's unit of work; a refusal goes to the DLQ
with its reason."""
from __future__ import annotations

from sqlalchemy.orm import Session

from shared.amounts import AmountError
from shared.consumer import MessageContext, Rejected
from shared.contracts import topics
from shared.contracts.assessment import EnterpriseRegistered
from shared.contracts.ledger import TransferPosted, TransferRejected
from shared.contracts.quota import BuybackOwed, LotCreated, QuotaAllocated
from shared.contracts.settlement import StatisticsReported, TaxReceiptReported
from shared.envelope import Envelope, EnvelopeError
from shared.message_bus import MessageBus

from services.settlement import clock, intake
from services.settlement.domain import SettlementDomainError
from services.settlement.storage.statements import StatementsRepository

bus = MessageBus()
POSTING_PREFIX = "settlement:"


def _refusing(fn):
    """Domain refusals become DLQ reasons."""

    def run(ctx: MessageContext) -> None:
        try:
            fn(ctx)
        except (SettlementDomainError, AmountError) as exc:
            raise Rejected(exc.reason, str(exc)) from None

    run.__name__ = fn.__name__
    return run


@bus.on(TaxReceiptReported)
@_refusing
def on_tax_receipt(ctx: MessageContext) -> None:
    intake.record_tax_receipt(ctx.session, ctx.event, channel="kafka", event_id=ctx.envelope.id, wait_for_enterprise=True)


@bus.on(StatisticsReported)
@_refusing
def on_statistics(ctx: MessageContext) -> None:
    intake.record_statistics(ctx.session, ctx.event, channel="kafka", wait_for_enterprise=True)


@bus.on(QuotaAllocated)
@_refusing
def on_allocation(ctx: MessageContext) -> None:
    intake.record_allocation(ctx.session, ctx.event, event_id=ctx.envelope.id)


@bus.on(BuybackOwed)
@_refusing
def on_buyback(ctx: MessageContext) -> None:
    intake.record_buyback(ctx.session, ctx.event, event_id=ctx.envelope.id, occurred_at=ctx.envelope.time)


@bus.on(LotCreated)
def on_lot(ctx: MessageContext) -> None:
    intake.record_quota_facts(ctx.session, [intake.QuotaFact(ctx.event, ctx.envelope.id, ctx.envelope.time)])


@bus.on(EnterpriseRegistered)
def on_enterprise(ctx: MessageContext) -> None:
    intake.record_enterprise(ctx.session, ctx.event)


# most of the ledger's outcomes are of other services' transfers: ignored before any savepoint
@bus.on(TransferPosted, TransferRejected, when=lambda ev: ev.transfer_id.startswith(POSTING_PREFIX))
def on_ledger_outcome(ctx: MessageContext) -> None:
    ev = ctx.event
    rejected = isinstance(ev, TransferRejected)
    StatementsRepository(ctx.session).mark_posting(ev.transfer_id, "rejected" if rejected else "posted",
                                                   ev.reason if rejected else None, clock.now())


def apply_batch(session: Session, contexts: list[MessageContext]) -> dict[str, Rejected]:
    """A poll's events, in order, as one at a time would apply them: each run of lots and buy-backs (one or two
    per release) is written together, a refused buy-back leaving nothing; every other event runs its handler in
    a savepoint of its own. The consumer applies the poll one by one instead if this raises."""
    refused: dict[str, Rejected] = {}
    facts: list[intake.QuotaFact] = []

    def write_facts() -> None:
        for event_id, exc in intake.record_quota_facts(session, facts).items():
            refused[event_id] = Rejected(exc.reason, str(exc))
        facts.clear()

    for ctx in contexts:
        if type(ctx.event) in QUOTA_FACTS:
            facts.append(intake.QuotaFact(ctx.event, ctx.envelope.id, ctx.envelope.time))
            continue
        if facts:
            write_facts()
        savepoint = session.begin_nested()
        try:
            bus(ctx)
            savepoint.commit()
        except Rejected as exc:
            savepoint.rollback()
            refused[ctx.envelope.id] = exc
    if facts:
        write_facts()
    return refused


QUOTA_FACTS = (LotCreated, BuybackOwed)


def make_authorizer(authenticator):
    """Department intake must come from a source allowed to publish that event type; another service's events
    from that service (a TransferRejected of our posting from anyone but the ledger turned a posted line rejected)."""

    def authorize(env: Envelope, topic: str) -> None:
        if topic == topics.INTAKE_SETTLEMENT:
            authenticator.authorize_event(env, f"publish:{env.event_name}")
        elif topic in topics.OWNERS and env.source != topics.OWNERS[topic] and env.event_name in bus.handled_types:
            raise EnvelopeError("unexpected_source", f"{env.event_name} on {topic} must come from {topics.OWNERS[topic]}")

    return authorize
