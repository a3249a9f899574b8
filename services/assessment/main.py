"""Entry point of the assessment service: `python -m services.assessment.main`."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.assessment.api import routes_evaluations, routes_imports, routes_policies, routes_projects, routes_register
from services.assessment.api import routes_dispositions
from services.assessment.handlers import bus, intake_authorizer
from services.assessment.storage.tables import metadata
from shared.api import create_app
from shared.contracts.errors import ERROR_RESPONSES
from shared.contracts import topics
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings, load_settings

MIGRATIONS = Path(__file__).parent / "storage" / "migrations"


class AssessmentSettings(ServiceSettings):
    # where departments publish (COUNTYPOOL_ASSESSMENT_INTAKE_TOPIC): a test, or a second instance for
    # another county, uses its own (with its own COUNTYPOOL_ASSESSMENT_GROUP_ID)
    intake_topic: str = topics.INTAKE_ASSESSMENT


def build(settings: ServiceSettings | None = None) -> tuple[ServiceRuntime, FastAPI]:
    settings = settings or load_settings("assessment", AssessmentSettings)
    intake = getattr(settings, "intake_topic", topics.INTAKE_ASSESSMENT)
    # the authenticator is made by the runtime, the source check needs it: bind it once both exist
    check: dict = {}
    runtime = ServiceRuntime(settings, metadata, MIGRATIONS, topics=[intake], handler=bus, handled_types=bus.handled_types,
                             authorize=lambda env, topic: check["intake"](env, topic), intake_topics={intake})
    check["intake"] = intake_authorizer(runtime.authenticator, intake)
    app = create_app("assessment", authenticator=runtime.authenticator, ready_checks=runtime.ready_checks(),
                     title="CountyPool assessment service",
                     description="亩均效益评价: the enterprise register and its yearly figures, versioned policies, "
                                 "evaluation runs, dispositions and rectification tasks, cluster ranking, project admission.")
    app.state.runtime = runtime
    for r in (routes_register, routes_policies, routes_evaluations, routes_dispositions, routes_projects, routes_imports):
        app.include_router(r.router, responses=ERROR_RESPONSES)
    return runtime, app


def main() -> None:
    runtime, app = build()
    runtime.serve(app)


if __name__ == "__main__":
    main()
