"""Entry point of the assessment service: `python -m services.assessment.main`."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.api import create_app
from shared.contracts import topics
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings, load_settings
from services.assessment.handlers import bus
from services.assessment.storage.tables import metadata

MIGRATIONS = Path(__file__).parent / "storage" / "migrations"
TOPICS = [topics.INTAKE_ASSESSMENT]


def build(settings: ServiceSettings | None = None) -> tuple[ServiceRuntime, FastAPI]:
    settings = settings or load_settings("assessment")
    runtime = ServiceRuntime(settings, metadata, MIGRATIONS, topics=TOPICS, handler=bus, handled_types=bus.handled_types)
    app = create_app("assessment", authenticator=runtime.authenticator, ready_checks=runtime.ready_checks(),
                     title="CountyPool assessment service")
    app.state.runtime = runtime
    return runtime, app


def main() -> None:
    runtime, app = build()
    runtime.serve(app)


if __name__ == "__main__":
    main()
