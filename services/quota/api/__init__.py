"""The quota service's HTTP API (/v1)."""
from fastapi import APIRouter

from services.quota.api.intake_routes import router as intake_router
from services.quota.api.query_routes import router as query_router
from services.quota.api.request_routes import router as request_router

router = APIRouter()
for _r in (intake_router, request_router, query_router):
    router.include_router(_r)
