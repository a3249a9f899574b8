"""Events in, for the quota service: department intake (releases, reclamation acceptance, approvals),
the assessment service's facts, and the ledger's answers to our transfers. Each handler runs in the
consumer's transaction; a permanent refusal goes to the dead-letter topic with its reason."""
from __future__ import annotations

from shared.consumer import MessageContext, Rejected
from shared.contracts import topics
from shared.contracts.assessment import EnterpriseExited, EnterpriseRelocated, ProjectEvaluated
from shared.contracts.quota import ApprovalGranted, QuotaReleaseSubmitted, ReclamationAccepted
from shared.envelope import Envelope, EnvelopeError
from shared.message_bus import MessageBus
from services.quota.application import assessment_facts, intake, requests
from services.quota.application.intake import IdReused, NotKnown
from services.quota.application.ledger_answers import LEDGER_OUTCOMES, on_ledger_outcome
from services.quota.application.tx import Tx
from services.quota.domain.problems import QuotaDomainError
from services.quota.intake_scopes import department_of, intake_scope

bus = MessageBus()



def authorize(authenticator, env: Envelope, topic: str) -> None:
    """Intake: the envelope's source must belong to a principal allowed to publish this event (and asset)."""
    if topic == topics.INTAKE_QUOTA:
        authenticator.authorize_event(env, intake_scope(env.event_name, env.data))
    elif topic in topics.OWNERS and env.event_name in bus.handled_types and env.source != topics.OWNERS[topic]:
        raise EnvelopeError("unexpected_source", f"{env.event_name} on {topic} must come from {topics.OWNERS[topic]}")


def refusal(exc: Exception) -> Rejected | None:
    """The application's refusal as a dead-lettering with a machine-readable reason (None: not a refusal)."""
    if isinstance(exc, QuotaDomainError):
        return Rejected(exc.problems[0].reason if len(exc.problems) == 1 else "invalid_payload", str(exc))
    if isinstance(exc, (IdReused, NotKnown)):
        return Rejected(exc.reason, str(exc))
    return None


def _refusing(fn):
    def run(ctx: MessageContext) -> None:
        try:
            fn(ctx)
        except (QuotaDomainError, IdReused, NotKnown) as exc:
            raise refusal(exc) from None

    return run


@bus.on(QuotaReleaseSubmitted)
@_refusing
def release_submitted(ctx: MessageContext) -> None:
    intake.submit_release(Tx.of_message(ctx), ctx.event.model_dump(mode="json"),
                          department=department_of([ctx.envelope.source]), submitted_by=ctx.envelope.source)


@bus.on(ReclamationAccepted)
@_refusing
def reclamation_accepted(ctx: MessageContext) -> None:
    ev: ReclamationAccepted = ctx.event
    intake.accept_reclamation_project(Tx.of_message(ctx), ev.project_id, ev.accepted_on, ev.accepted_area,
                                      ev.document_ref)


@bus.on(ApprovalGranted)
@_refusing
def approval_granted(ctx: MessageContext) -> None:
    ev: ApprovalGranted = ctx.event
    requests.approval_granted(Tx.of_message(ctx), ev.project_id, ev.kind, ev.document_ref, ev.granted_on)


@bus.on(ProjectEvaluated)
def project_evaluated(ctx: MessageContext) -> None:
    assessment_facts.project_evaluated(Tx.of_message(ctx), ctx.event)


@bus.on(EnterpriseExited, EnterpriseRelocated)
def enterprise_left(ctx: MessageContext) -> None:
    assessment_facts.enterprise_left(Tx.of_message(ctx), ctx.event)


@bus.on(*LEDGER_OUTCOMES)
def ledger_outcome(ctx: MessageContext) -> None:
    on_ledger_outcome(Tx.of_message(ctx), ctx.event)
