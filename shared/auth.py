"""Who may do what, the same for every service and for department intake topics.

A bearer token is either an API key listed in a tokens file (JSON: ``{"<token>": {"principal": ...,
"scopes": [...], "sources": [...]}}``) or a JWT signed with ``COUNTYPOOL_AUTH_JWT_SECRET`` (HS256) with claims
``sub``, ``scopes`` and optionally ``sources``. Scopes:

- ``admin`` — everything;
- ``<service>:read`` / ``<service>:write`` — e.g. ``ledger:write``;
- ``quota:admin`` / ``assessment:admin`` — what the county itself decides: its pool policy; its evaluation policy
  and its decisions on dispositions;
- ``finance:read`` — read settlement statements and positions; ``settlement:admin`` — run and finalize;
- ``publish:<EventName>[:<qualifier>]`` — a department's right to publish one kind of event, e.g.
  ``publish:QuotaReleaseSubmitted:COD`` (only COD releases) or ``publish:TaxReceiptReported``.

Events on intake topics are checked the same way: the envelope's ``source`` must belong to a principal
whose scopes allow the event type. A source is only declared, so with ``COUNTYPOOL_INTAKE_SIGNATURES=require`` a
message must also carry the header ``countypool-signature: sha256=<hex HMAC-SHA256 of the message value, keyed
with an API key of the source's principal>`` (``signature_of``): one department cannot then publish as another,
whatever the topic's ACLs let it write. ``verify`` checks the header where there is one; ``off`` (the default)
ignores it.

A JWT must carry ``exp`` (checked to the second) and a non-empty string ``sub``; ``scopes`` and ``sources``, when
present, are lists of strings — a token whose claims are malformed is not valid (401), never half-read. ``nbf`` and
``iat`` are allowed ``CLOCK_SKEW_SECONDS`` of the issuer's clock being ahead. The tokens file is checked when it is
read (duplicate or blank tokens, scopes or sources that are not lists of strings, a source claimed by two
principals are errors), and a JWT secret shorter than 32 bytes (RFC 7518 §3.2) is refused at start-up. The file is
read again when it changes (looked at every ``TOKENS_RECHECK_SECONDS``), so a leaked key is revoked without a
restart; a changed file that fails those checks is logged and the keys read before stay in force. With
``COUNTYPOOL_AUTH_JWT_AUDIENCE`` / ``COUNTYPOOL_AUTH_JWT_ISSUER`` set, a JWT must carry that ``aud`` / ``iss``; without
them a JWT that names an audience is refused (it was meant for someone else).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.envelope import Envelope, EnvelopeError
from shared.errors import ApiError, Unauthenticated

# How far ahead of ours the issuer's clock may be for ``nbf`` / ``iat``; ``exp`` gets no such grace.
CLOCK_SKEW_SECONDS = 30
# HS256 keys below the hash's size are guessable (RFC 7518 §3.2); ``from_settings`` refuses them.
MIN_JWT_SECRET_BYTES = 32
# How often the tokens file is looked at (one stat) for a change
TOKENS_RECHECK_SECONDS = 5.0
SIGNATURE_HEADER = "countypool-signature"
SIGNATURE_MODES = ("off", "verify", "require")

log = logging.getLogger(__name__)


class AuthConfigError(ValueError):
    """The tokens file or the JWT secret is unusable. Messages never quote a token or the secret."""


def _string_list(value: object) -> frozenset[str] | None:
    """A list of strings as a frozenset, or None when ``value`` is anything else (a bare string would be read as
    its characters)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return frozenset(value)


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
    def __init__(self, tokens: dict[str, Principal] | None = None, jwt_secret: str | None = None, *,
                 audience: str | None = None, issuer: str | None = None, intake_signatures: str = "off"):
        if intake_signatures not in SIGNATURE_MODES:
            raise AuthConfigError(f"COUNTYPOOL_INTAKE_SIGNATURES={intake_signatures!r}: one of {', '.join(SIGNATURE_MODES)}")
        self.intake_signatures = intake_signatures
        self._by_digest, self._by_source, self._keys_by_source = self._index(tokens or {})
        self._jwt_secret = jwt_secret
        self._audience, self._issuer = audience or None, issuer or None
        self._tokens_file: Path | None = None  # set by from_settings: the file to read again when it changes
        self._stamp: tuple | None = None
        self._checked_at = 0.0
        self._reload_lock = threading.Lock()

    @classmethod
    def _index(cls, tokens: dict[str, Principal]) -> tuple[dict[bytes, Principal], dict[str, Principal],
                                                          dict[str, tuple[bytes, ...]]]:
        for t in tokens:
            if not isinstance(t, str) or not t.strip() or t != t.strip():
                # "" would match an empty credential; surrounding blanks can never be presented (they are stripped)
                raise AuthConfigError("an API key must be a non-empty string without surrounding whitespace")
        by_source: dict[str, Principal] = {}
        for p in tokens.values():
            for s in p.sources:
                if (other := by_source.get(s)) is not None and other != p:
                    # the intake check would silently hand the source to whichever came last
                    raise AuthConfigError(f"source {s!r} is claimed by both {other.id!r} and {p.id!r}")
                by_source[s] = p
        # the keys that may sign a source's messages: every API key of its principal (old and new while rotating)
        keys_by_source = {s: tuple(t.encode() for t, q in tokens.items() if q == p) for s, p in by_source.items()}
        # Keys are compared by digest so a timing leak tells nothing about the token.
        return {cls._digest(t): p for t, p in tokens.items()}, by_source, keys_by_source

    @staticmethod
    def _digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    @classmethod
    def from_settings(cls, tokens_file: Path | None, jwt_secret: str | None, *, audience: str | None = None,
                      issuer: str | None = None, intake_signatures: str = "off") -> "Authenticator":
        if jwt_secret is not None and jwt_secret != "" and len(jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise AuthConfigError(f"COUNTYPOOL_AUTH_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes "
                                  "(e.g. openssl rand -hex 32); unset it to accept no JWTs")
        if not tokens_file:
            return cls({}, jwt_secret, audience=audience, issuer=issuer, intake_signatures=intake_signatures)
        stamp = _stamp(Path(tokens_file))
        auth = cls(_read_tokens(Path(tokens_file)), jwt_secret, audience=audience, issuer=issuer,
                   intake_signatures=intake_signatures)
        auth._tokens_file, auth._stamp, auth._checked_at = Path(tokens_file), stamp, time.monotonic()
        return auth

    def _refresh(self) -> None:
        """Take the tokens file again if it changed since it was read (at most one stat per recheck period)."""
        if self._tokens_file is None or time.monotonic() - self._checked_at < TOKENS_RECHECK_SECONDS:
            return
        with self._reload_lock:
            if time.monotonic() - self._checked_at < TOKENS_RECHECK_SECONDS:
                return
            self._checked_at = time.monotonic()
            try:
                stamp = _stamp(self._tokens_file)
                if stamp == self._stamp:
                    return
                indexed = self._index(_read_tokens(self._tokens_file))
            except (OSError, ValueError) as exc:  # AuthConfigError and JSON errors are ValueErrors
                # a half-written or broken file must not lock every caller out: the keys in force stay
                log.error("tokens file %s not taken (the keys read before stay in force): %s", self._tokens_file, exc)
                return
            self._by_digest, self._by_source, self._keys_by_source = indexed  # one assignment each: old or new
            self._stamp = stamp
            log.warning("tokens file %s read again: %d keys", self._tokens_file, len(indexed[0]))

    def authenticate(self, token: str) -> Principal | None:
        self._refresh()
        digest = self._digest(token)
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        if self._jwt_secret and token.count(".") == 2:
            return self._from_jwt(token)
        return None

    def _from_jwt(self, token: str) -> Principal | None:
        try:
            # the leeway is for nbf / iat minted by a clock slightly ahead of ours; exp is checked strictly below
            required = ["sub", "exp"] + (["aud"] if self._audience else []) + (["iss"] if self._issuer else [])
            claims = jwt.decode(token, self._jwt_secret, algorithms=["HS256"], leeway=CLOCK_SKEW_SECONDS,
                                audience=self._audience, issuer=self._issuer, options={"require": required})
        except jwt.PyJWTError:
            return None
        if int(claims["exp"]) <= time.time():  # PyJWT has checked exp is a number
            return None
        sub = claims["sub"]
        scopes, sources = _string_list(claims.get("scopes", [])), _string_list(claims.get("sources", []))
        if not isinstance(sub, str) or not sub or scopes is None or sources is None:
            return None
        return Principal(sub, scopes, sources)

    def principal_for_source(self, source: str) -> Principal | None:
        self._refresh()
        return self._by_source.get(source)

    def check_signature(self, source: str, value: bytes, headers) -> None:
        """An intake message's signature (see the module's doc), per ``intake_signatures``; ``headers`` as Kafka
        gives them, (name, bytes) pairs. Raises EnvelopeError ``signature_missing`` / ``signature_invalid``."""
        if self.intake_signatures == "off":
            return
        given = [v for k, v in headers or () if k == SIGNATURE_HEADER]
        if not given:
            if self.intake_signatures == "require":
                raise EnvelopeError("signature_missing", f"intake messages must carry a {SIGNATURE_HEADER} header")
            return
        self._refresh()
        keys = self._keys_by_source.get(source, ())
        presented = given[-1].decode("ascii", "replace") if isinstance(given[-1], bytes) else str(given[-1])
        if len(given) > 1 or not any(hmac.compare_digest(signature_of(k, value), presented) for k in keys):
            raise EnvelopeError("signature_invalid", f"the {SIGNATURE_HEADER} header is not the signature of source "
                                                     f"{source!r} for this message")

    def authorize_event(self, env: Envelope, scope: str) -> Principal:
        """For intake topics: the declared source must belong to a principal allowed ``scope``."""
        principal = self.principal_for_source(env.source)
        if principal is None:
            raise EnvelopeError("unknown_source", f"source {env.source!r} is not a registered publisher")
        if not principal.allows(scope):
            raise EnvelopeError("source_not_allowed", f"{principal.id} may not publish {scope}")
        return principal


def signature_of(key: str | bytes, value: bytes) -> str:
    """The ``countypool-signature`` header of an intake message: HMAC-SHA256 of its value with an API key."""
    return "sha256=" + hmac.new(key.encode() if isinstance(key, str) else key, value, hashlib.sha256).hexdigest()


def _stamp(path: Path) -> tuple:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def _read_tokens(tokens_file: Path) -> dict[str, Principal]:
    doc = json.loads(tokens_file.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    if not isinstance(doc, dict):
        raise AuthConfigError(f"{tokens_file}: must be a JSON object of token -> principal")
    tokens: dict[str, Principal] = {}
    for n, (token, spec) in enumerate(doc.items(), 1):
        where = f"{tokens_file}: entry {n}"  # never the token itself: this ends up in logs
        if not isinstance(spec, dict) or not isinstance(spec.get("principal"), str) or not spec["principal"]:
            raise AuthConfigError(f"{where}: needs a non-empty string 'principal'")
        scopes, sources = _string_list(spec.get("scopes", [])), _string_list(spec.get("sources", []))
        if scopes is None or sources is None:
            raise AuthConfigError(f"{where} ({spec['principal']}): 'scopes' and 'sources' must be lists of strings")
        tokens[token] = Principal(spec["principal"], scopes, sources)
    return tokens


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        # json.loads would keep the last silently: two principals meant to differ would share one key
        raise AuthConfigError("the tokens file lists a token (or a field of one) twice")
    return doc


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
        raise Unauthenticated("missing_token", "this endpoint needs a bearer token")
    p = auth.authenticate(creds.credentials)
    if p is None:
        raise Unauthenticated("invalid_token", "the bearer token is not valid")
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
