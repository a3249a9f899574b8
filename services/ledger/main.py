"""Entry point of the ledger service: `python -m services.ledger.main`."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import PositiveFloat, PositiveInt

from services.ledger.api.routes import router
from services.ledger.auditor import JournalAuditor
from services.ledger.group_commit import GroupCommit
from services.ledger.handlers import LedgerApp, build_bus
from services.ledger.metrics import LedgerMetrics
from services.ledger.storage.tables import metadata
from shared.api import create_app
from shared.contracts.errors import ERROR_RESPONSES
from shared.contracts import topics
from shared.envelope import EnvelopeError
from shared.periodic import Periodic
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings, load_settings

MIGRATIONS = Path(__file__).parent / "storage" / "migrations"
TOPICS = [topics.LEDGER_COMMANDS]


class LedgerSettings(ServiceSettings):
    expiry_interval_seconds: PositiveFloat = 1.0
    audit_interval_seconds: PositiveFloat = 60.0
    # the auditor's runs are incremental; this often it verifies the whole journal again (an older entry
    # rewritten with its hash kept is found then, or at start-up)
    audit_full_interval_seconds: PositiveFloat = 86_400.0
    # who may send transfer commands over Kafka (departments never do: they publish domain events)
    command_sources: list[str] = ["/countypool/quota", "/countypool/settlement"]
    consumer_max_message_bytes: PositiveInt = 1024 * 1024  # a command may carry thousands of transfers
    # the outbox relay publishes from a child process when the service is served (not in-process tests): a
    # batch of 1,000 transfers is 1,000 outcome events, whose publishing would otherwise share the API's GIL
    relay_process: bool = True


def command_source_check(allowed: list[str]):
    def check(env, topic: str) -> None:
        if topic == topics.LEDGER_COMMANDS and env.source not in allowed:
            raise EnvelopeError("unexpected_source", f"{env.source!r} may not send ledger commands")

    return check


def build(settings: ServiceSettings | None = None) -> tuple[ServiceRuntime, FastAPI]:
    settings = settings or load_settings("ledger", LedgerSettings)
    bus_box: dict = {}

    def handler(ctx):
        return bus_box["bus"](ctx)

    def batch(session, contexts):
        return bus_box["many"](session, contexts)

    runtime = ServiceRuntime(settings, metadata, MIGRATIONS, topics=TOPICS, handler=handler,
                             handled_types={"TransfersRequested"}, batch_handler=batch,
                             authorize=command_source_check(getattr(settings, "command_sources", [])))
    ledger = LedgerApp(runtime.outbox)
    bus_box["bus"], bus_box["many"] = build_bus(ledger)
    app = create_app("ledger", authenticator=runtime.authenticator, ready_checks=runtime.ready_checks(),
                     title="CountyPool ledger", description="Double-entry book of record for every quota and every fen.")
    app.state.runtime = runtime
    app.state.ledger = ledger
    app.state.group_commit = GroupCommit(lambda reqs, correlations: runtime.transaction(
        lambda uow: ledger.submit(uow.session, reqs, correlations=correlations)).outcome)
    app.include_router(router, responses=ERROR_RESPONSES)
    LedgerMetrics(runtime).install()
    expiry = PendingExpiry(runtime, ledger, getattr(settings, "expiry_interval_seconds", 1.0))
    app.state.expiry = expiry
    app.state.auditor = JournalAuditor(runtime, getattr(settings, "audit_interval_seconds", 60.0),
                                       getattr(settings, "audit_full_interval_seconds", 86_400.0))
    runtime.background += [expiry, app.state.auditor]
    return runtime, app


class PendingExpiry(Periodic):
    """The ledger expires pending transfers itself when their timeout passes."""

    name = "ledger-expiry"

    def __init__(self, runtime: ServiceRuntime, ledger: LedgerApp, interval: float):
        super().__init__(interval)
        self.runtime = runtime
        self.ledger = ledger

    def run_once(self) -> int:
        return self.runtime.transaction(lambda uow: self.ledger.expire_due(uow.session))

    step = run_once


def main() -> None:
    runtime, app = build()
    runtime.serve(app)


if __name__ == "__main__":
    main()
