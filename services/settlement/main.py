"""Entry point of the settlement service: `python -m services.settlement.main`."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.settlement.metrics import STATEMENTS
from services.settlement.api import errors as api_errors
from services.settlement.api.routes_inputs import router as inputs_router
from services.settlement.api.routes_statements import router as statements_router
from services.settlement.handlers import apply_batch, bus, make_authorizer
from services.settlement.statement_runs import StatementRuns
from services.settlement.storage.tables import metadata
from shared.api import create_app
from shared.contracts.errors import ERROR_RESPONSES
from shared.contracts import topics
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings, load_settings

MIGRATIONS = Path(__file__).parent / "storage" / "migrations"
# Tax receipts from departments; quota proceeds and provenance; the enterprise register (who may have receipts);
# the ledger's answers to our postings.
TOPICS = [topics.INTAKE_SETTLEMENT, topics.QUOTA_EVENTS, topics.ASSESSMENT_EVENTS, topics.LEDGER_EVENTS]
DESCRIPTION = """Unified county settlement (统一结算) of shared tax revenue (税收分成), quota proceeds and compensation
(腾退补偿). Statements are exact to the fen, every line cites the events behind it, party nets sum to zero, a
finalized statement never changes (corrections become adjustments in the next open period) and its money is
posted to the ledger. Reads need `finance:read`; running and finalizing need `settlement:admin`."""


def build(settings: ServiceSettings | None = None) -> tuple[ServiceRuntime, FastAPI]:
    settings = settings or load_settings("settlement")
    box: dict = {}
    runtime = ServiceRuntime(settings, metadata, MIGRATIONS, topics=TOPICS, handler=bus, handled_types=bus.handled_types,
                             batch_handler=apply_batch, authorize=lambda env, topic: box["authorize"](env, topic))
    box["authorize"] = make_authorizer(runtime.authenticator)
    app = create_app("settlement", authenticator=runtime.authenticator, ready_checks=runtime.ready_checks(),
                     title="CountyPool settlement", description=DESCRIPTION)
    app.state.runtime = runtime
    STATEMENTS.runtime = runtime  # statement gauges read this service's database at scrape time
    app.state.statement_runs = StatementRuns(runtime)
    api_errors.install(app)
    app.include_router(inputs_router, responses=ERROR_RESPONSES)
    app.include_router(statements_router, responses=ERROR_RESPONSES)
    return runtime, app


def main() -> None:
    runtime, app = build()
    runtime.serve(app)


if __name__ == "__main__":
    main()
