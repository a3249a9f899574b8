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


class NotFound(ApiError):
    def __init__(self, reason: str, message: str):
        super().__init__(404, reason, message)


class Conflict(ApiError):
    def __init__(self, reason: str, message: str, details: Any = None):
        super().__init__(409, reason, message, details)


class Unprocessable(ApiError):
    def __init__(self, reason: str, message: str, details: Any = None):
        super().__init__(422, reason, message, details)
