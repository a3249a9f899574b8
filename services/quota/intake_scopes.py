"""Who may publish what into the pool, the same over HTTP and on the intake topic (shared/auth.py):
releases need ``publish:QuotaReleaseSubmitted:<ASSET>``, acceptances ``publish:ReclamationAccepted``,
approvals ``publish:ApprovalGranted:<environmental|energy|land>``. A department is known by its source
(``/departments/<name>``)."""
from __future__ import annotations

from typing import Iterable, Mapping

APPROVAL_SCOPE_QUALIFIER = {"environmental_impact": "environmental", "energy_review": "energy", "land_use": "land"}
DEPARTMENT_PREFIX = "/departments/"


def release_scope(asset: object) -> str:
    return f"publish:QuotaReleaseSubmitted:{asset}"


def approval_scope(kind: object) -> str:
    return f"publish:ApprovalGranted:{APPROVAL_SCOPE_QUALIFIER.get(str(kind), kind)}"


RECLAMATION_SCOPE = "publish:ReclamationAccepted"


def intake_scope(event_name: str, data: Mapping) -> str:
    """The scope an intake event's publisher needs."""
    if event_name == "QuotaReleaseSubmitted":
        return release_scope(data.get("asset"))
    if event_name == "ApprovalGranted":
        return approval_scope(data.get("kind"))
    return f"publish:{event_name}"


def department_of(sources: Iterable[str]) -> str | None:
    """'/departments/development-reform' -> 'development_reform' (the pool policy's department names)."""
    for s in sorted(sources):
        if s.startswith(DEPARTMENT_PREFIX):
            return s[len(DEPARTMENT_PREFIX):].strip("/").replace("-", "_")
    return None
