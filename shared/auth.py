"""Who may do what, the same for every service and for department intake topics.

A bearer token is either an API key listed in a tokens file (JSON: ``{"<token>": {"principal": ...,
"scopes": [...], "sources": [...]}}``) or a JWT signed with ``COUNTYPOOL_AUTH_JWT_SECRET`` (HS256) with claims
``sub``, ``scopes`` and optionally ``sources``. Scopes:

- ``admin`` — everything;
- ``<service>:read`` / ``<service>:write`` — e.g. ``ledger:write``;
- ``finance:read`` — read settlement statements and positions; ``settlement:admin`` — run and finalize;
- ``publish:<EventName>[:<qualifier>]`` — a department's right to publish one kind of event, e.g.
  ``publish:QuotaReleaseSubmitted:COD`` (only COD releases) or ``publish:TaxReceiptReported``.

Events on intake topics are checked the same way: the envelope's ``source`` must belong to a principal
whose scopes allow the event type.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.envelope import Envelope, EnvelopeError
from shared.errors import ApiError


@dataclass(frozen=True)
class Principal:
    id: str
    scopes: frozenset[str]
    sources: frozenset[str] = field(default_factory=frozenset)

    def allows(self, scope: str) -> bool:
        if "admin" in self.scopes or scope in self.scopes:
            return True
        # publish:Name covers publish:Name:<qualifier>
        parts = scope.split(":")
        return len(parts) == 3 and f"{parts[0]}:{parts[1]}" in self.scopes


class Authenticator:
    def __init__(self, tokens: dict[str, Principal] | None = None, jwt_secret: str | None = None):
        # Keys are compared by digest so a timing leak tells nothing about the token.
        self._by_digest = {self._digest(t): p for t, p in (tokens or {}).items()}
        self._jwt_secret = jwt_secret
        self._by_source: dict[str, Principal] = {}
        for p in (tokens or {}).values():
            for s in p.sources:
                self._by_source[s] = p

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    @classmethod
    def from_settings(cls, tokens_file: Path | None, jwt_secret: str | None) -> "Authenticator":
        tokens: dict[str, Principal] = {}
        if tokens_file:
            doc = json.loads(Path(tokens_file).read_text(encoding="utf-8"))
            for token, spec in doc.items():
                tokens[token] = Principal(spec["principal"], frozenset(spec.get("scopes", [])), frozenset(spec.get("sources", [])))
        return cls(tokens, jwt_secret)

    def authenticate(self, token: str) -> Principal | None:
        digest = self._digest(token)
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        if self._jwt_secret and token.count(".") == 2:
            try:
                claims = jwt.decode(token, self._jwt_secret, algorithms=["HS256"], options={"require": ["sub", "exp"]})
            except jwt.PyJWTError:
                return None
            return Principal(str(claims["sub"]), frozenset(claims.get("scopes", [])), frozenset(claims.get("sources", [])))
        return None

    def principal_for_source(self, source: str) -> Principal | None:
        return self._by_source.get(source)

    def authorize_event(self, env: Envelope, scope: str) -> Principal:
        """For intake topics: the declared source must belong to a principal allowed ``scope``."""
        principal = self.principal_for_source(env.source)
        if principal is None:
            raise EnvelopeError("unknown_source", f"source {env.source!r} is not a registered publisher")
        if not principal.allows(scope):
            raise EnvelopeError("source_not_allowed", f"{principal.id} may not publish {scope}")
        return principal


_current: Authenticator | None = None
_lock = threading.Lock()


def install(authenticator: Authenticator) -> None:
    global _current
    with _lock:
        _current = authenticator


def current() -> Authenticator:
    if _current is None:
        raise RuntimeError("no authenticator installed")
    return _current


_bearer = HTTPBearer(auto_error=False)


def principal(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    auth: Authenticator = request.app.state.authenticator
    if creds is None or not creds.credentials:
        raise ApiError(401, "missing_token", "this endpoint needs a bearer token")
    p = auth.authenticate(creds.credentials)
    if p is None:
        raise ApiError(401, "invalid_token", "the bearer token is not valid")
    request.state.principal = p
    return p


def require(*scopes: str):
    """Dependency: the caller must hold at least one of ``scopes`` (admin holds all)."""

    def check(p: Principal = Depends(principal)) -> Principal:
        if not any(p.allows(s) for s in scopes):
            raise ApiError(403, "insufficient_scope", f"needs one of: {', '.join(scopes)}")
        return p

    return check


def require_each(p: Principal, scopes: Iterable[str]) -> None:
    """For bodies whose items need different scopes (e.g. releases of several assets)."""
    for s in scopes:
        if not p.allows(s):
            raise ApiError(403, "insufficient_scope", f"{p.id} lacks {s}")
