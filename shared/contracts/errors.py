"""The body of every refused HTTP call (shared/errors.py, shared/api.py write it), as the OpenAPI documents show it.

Without it FastAPI documented its own 422 body, ``{"detail": [{"loc", "msg", "type"}]}``, which no service sends,
and no other refusal at all: a client generated from the documents read no ``reason``."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    reason: str = Field(description="machine-readable reason", examples=["invalid_request", "not_found",
                                                                         "insufficient_scope"])
    message: str = Field(description="for people")
    details: Any = Field(default=None, description="what and where, when the reason has more to say (e.g. "
                                                   "invalid_request: [{field, error}], at most 50)")
    error_count: int | None = Field(default=None, description="invalid_request with more than 50 errors: how many")


# for include_router(..., responses=ERROR_RESPONSES): every refusal of a /v1 route (401, 403, 404, 409, 413, 415, 422,
# a route's own 4xx) is documented with the body it carries
ERROR_RESPONSES: dict = {"4XX": {"model": ErrorBody, "description": "refused: {reason, message, details?}"}}
