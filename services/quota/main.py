"""Entry point of the quota service: `python -m services.quota.main`."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import NonNegativeFloat, PositiveFloat, field_validator

from shared.api import create_app
from shared.contracts.errors import ERROR_RESPONSES
from shared.contracts import topics
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings, load_settings
from services.quota.metrics import POOL
from services.quota.api import router
from services.quota.application.reconciliation import LedgerBalances
from services.quota.background import AutoRounds, PeriodicReconciliation, RequestExpiry
from services.quota.batch import handle_many
from services.quota.handlers import authorize, bus
from services.quota.storage.tables import metadata

MIGRATIONS = Path(__file__).parent / "storage" / "migrations"
TOPICS = [topics.INTAKE_QUOTA, topics.ASSESSMENT_EVENTS, topics.LEDGER_EVENTS]


class QuotaSettings(ServiceSettings):
    ledger_url: str = "http://127.0.0.1:8001"  # the ledger's HTTP API, read for reconciliation
    ledger_token: str | None = None  # a token with ledger:read
    expiry_interval_seconds: PositiveFloat = 1.0
    auto_round_interval_seconds: NonNegativeFloat = 0.0  # 0: rounds only when asked (POST /v1/counties/{c}/rounds)
    reconcile_interval_seconds: NonNegativeFloat = 0.0  # 0: the metric is set by POST /v1/reconciliation:run only
    # the outbox relay publishes from a child process when the service is served (not in-process tests): a poll
    # of releases leaves ~3 events each, whose publishing would otherwise share the consumer's GIL
    relay_process: bool = True

    @field_validator("ledger_token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        # a Kubernetes secret made --from-file ends in a newline; a control character inside cannot be sent
        v = v.strip() if v else v
        if v and any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("the token holds a control character")
        return v or None


def build(settings: ServiceSettings | None = None) -> tuple[ServiceRuntime, FastAPI]:
    settings = settings or load_settings("quota", QuotaSettings)
    runtime: ServiceRuntime | None = None

    def authorize_intake(env, topic):  # bound late: the runtime makes the authenticator
        authorize(runtime.authenticator, env, topic)

    runtime = ServiceRuntime(settings, metadata, MIGRATIONS, topics=TOPICS, handler=bus, batch_handler=handle_many,
                             handled_types=bus.handled_types, authorize=authorize_intake)
    app = create_app("quota", authenticator=runtime.authenticator, ready_checks=runtime.ready_checks(),
                     title="CountyPool quota service",
                     description="The county pool: freed quota in as lots, reserved and allocated to admitted projects.")
    app.state.runtime = runtime
    POOL.runtime = runtime  # the pool gauges read this service's database at scrape time
    app.state.ledger_balances = LedgerBalances(getattr(settings, "ledger_url", "http://127.0.0.1:8001"),
                                               getattr(settings, "ledger_token", None))
    app.include_router(router, responses=ERROR_RESPONSES)
    runtime.background.append(RequestExpiry(runtime, getattr(settings, "expiry_interval_seconds", 1.0)))
    if getattr(settings, "auto_round_interval_seconds", 0) > 0:
        runtime.background.append(AutoRounds(runtime, settings.auto_round_interval_seconds))
    if getattr(settings, "reconcile_interval_seconds", 0) > 0:
        runtime.background.append(PeriodicReconciliation(runtime, lambda: app.state.ledger_balances,
                                                         settings.reconcile_interval_seconds))
    return runtime, app


def main() -> None:
    runtime, app = build()
    runtime.serve(app)


if __name__ == "__main__":
    main()
