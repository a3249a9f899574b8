"""Department intake on ``countypool.intake.assessment``: EnterpriseReported and IndicatorsReported, through
the same register functions as the API. A message whose source may not publish it, or whose data is bad
(credit code, figures, unregistered enterprise, figures conflicting with another department), is refused
and goes to the dead-letter topic with its reason."""
from __future__ import annotations

from datetime import datetime, timezone

from services.assessment.domain.credit_code import credit_code_problem, normalize_credit_code
from services.assessment.events import Actor
from services.assessment.fields import BadFigures, parse_figures, part_from_figures
from services.assessment.register import make_enterprise, record_parts, register_enterprises, unsaid
from shared.auth import Authenticator
from shared.consumer import Authorizer, MessageContext, Rejected
from shared.contracts import topics
from shared.contracts.assessment import EnterpriseReported, IndicatorsReported
from shared.envelope import Envelope
from shared.message_bus import MessageBus

bus = MessageBus()


def intake_authorizer(auth: Authenticator, intake_topic: str = topics.INTAKE_ASSESSMENT) -> Authorizer:
    """The envelope's source must belong to a principal with publish:<Event> (for figures,
    publish:IndicatorsReported:<department> is enough: the tax bureau may send only its own part)."""

    def check(env: Envelope, topic: str) -> None:
        if topic != intake_topic:
            return
        scope = f"publish:{env.event_name}"
        department = env.data.get("department") if env.event_name == IndicatorsReported.name else None
        if isinstance(department, str) and department:
            scope += f":{department}"
        auth.authorize_event(env, scope)

    return check


def _actor(ctx: MessageContext) -> Actor:
    return Actor(principal=ctx.envelope.source, via="kafka", causation=ctx.envelope.id)


def _checked_code(code: str) -> str:
    code = normalize_credit_code(code)  # as HTTP and the import take it: upper case, full width made half
    problem = credit_code_problem(code)
    if problem:
        raise Rejected("invalid_credit_code", f"credit_code: {problem.message} ({problem.reason})")
    return code


@bus.on(EnterpriseReported)
def on_enterprise_reported(ctx: MessageContext) -> None:
    ev: EnterpriseReported = ctx.event
    code = _checked_code(ev.credit_code)
    try:
        e = make_enterprise(code, ev.name_, ev.township_code, ev.in_park, ev.park_id, ev.industry_code,
                            list(ev.flags), ev.scale)
    except ValueError as exc:
        raise Rejected("invalid_enterprise", str(exc)) from None
    register_enterprises(ctx.session, ctx.outbox, [e], _actor(ctx), datetime.now(timezone.utc),
                         keep=unsaid(ev.model_fields_set))


@bus.on(IndicatorsReported)
def on_indicators_reported(ctx: MessageContext) -> None:
    ev: IndicatorsReported = ctx.event
    code = _checked_code(ev.credit_code)
    try:
        part = part_from_figures(code, ev.year, ev.department, parse_figures(ev.fields))
    except BadFigures as exc:
        raise Rejected(exc.reason, str(exc)) from None
    [outcome] = record_parts(ctx.session, ctx.outbox, [part], _actor(ctx), datetime.now(timezone.utc))
    if outcome.result == "refused":
        raise Rejected(outcome.reason or "refused", outcome.message or "")
