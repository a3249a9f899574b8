"""One error shape for every API: ``{"reason": "<machine-readable>", "message": "...", "details": ...}``."""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, details: Any = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers

    def body(self) -> dict:
        doc: dict[str, Any] = {"reason": self.reason, "message": self.message}
        if self.details is not None:
            doc["details"] = self.details
        return doc


class Unauthenticated(ApiError):
    """401: no usable credentials. Carries ``WWW-Authenticate`` (RFC 9110 §11.6.1 requires it on every 401);
    a token that was presented but refused says so with RFC 6750's ``error="invalid_token"``."""

    def __init__(self, reason: str, message: str):
        challenge = 'Bearer error="invalid_token"' if reason == "invalid_token" else "Bearer"
        super().__init__(401, reason, message, headers={"WWW-Authenticate": challenge})


class NotFound(ApiError):
    def __init__(self, reason: str, message: str):
        super().__init__(404, reason, message)


class Conflict(ApiError):
    def __init__(self, reason: str, message: str, details: Any = None):
        super().__init__(409, reason, message, details)


class Unprocessable(ApiError):
    def __init__(self, reason: str, message: str, details: Any = None):
        super().__init__(422, reason, message, details)
