"""Kafka topics. Each service publishes its own events to one topic; departments publish to intake topics."""
LEDGER_EVENTS = "countypool.ledger.events"
LEDGER_COMMANDS = "countypool.ledger.commands"
QUOTA_EVENTS = "countypool.quota.events"
ASSESSMENT_EVENTS = "countypool.assessment.events"
SETTLEMENT_EVENTS = "countypool.settlement.events"

INTAKE_QUOTA = "countypool.intake.quota"  # department releases, approvals, reclamation acceptance
INTAKE_ASSESSMENT = "countypool.intake.assessment"  # enterprise register and indicator data
INTAKE_SETTLEMENT = "countypool.intake.settlement"  # tax receipts

ALL = [
    LEDGER_EVENTS, LEDGER_COMMANDS, QUOTA_EVENTS, ASSESSMENT_EVENTS, SETTLEMENT_EVENTS,
    INTAKE_QUOTA, INTAKE_ASSESSMENT, INTAKE_SETTLEMENT,
]


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


# A service's events topic carries only what that service published (its outbox's envelope source): a consumer
# refuses another source there (dead letter ``unexpected_source``), so a department able to write to the topic
# cannot pass as the service, e.g. answer for the ledger.
OWNERS = {
    LEDGER_EVENTS: "/countypool/ledger", QUOTA_EVENTS: "/countypool/quota",
    ASSESSMENT_EVENTS: "/countypool/assessment", SETTLEMENT_EVENTS: "/countypool/settlement",
}

