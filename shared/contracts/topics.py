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
