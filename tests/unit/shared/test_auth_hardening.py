"""Security review of shared/auth.py and shared/api.py: malformed JWT claims, clock skew, WWW-Authenticate, the
tokens file's checks, weak JWT secrets, the caller's correlation id reaching events, metric label cardinality,
and the scope rules (regression guards for the prefix rule and the pinned algorithm)."""
import base64
import hashlib
import hmac
import json
import os
import re
import time

import jwt
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from pydantic import BaseModel

from shared.api import create_app
from shared.auth import CLOCK_SKEW_SECONDS, Authenticator, AuthConfigError, Principal, require
from shared.envelope import decode, new_envelope
from shared.logs import correlation_id
from tests.unit.shared.test_envelope import ParcelMeasuredV2

SECRET = "k" * 32
TOKENS = {
    "tok-admin": Principal("admin", frozenset({"admin"})),
    "tok-reader": Principal("reader", frozenset({"ledger:read"})),
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Body(BaseModel):
    x: int


@pytest.fixture
def client():
    app = create_app("authtest", authenticator=Authenticator(TOKENS, jwt_secret=SECRET), ready_checks={}, title="t")

    @app.post("/things")
    def write(p: Principal = Depends(require("ledger:write"))):
        return {"by": p.id}

    @app.post("/body")
    def write_body(body: Body, p: Principal = Depends(require("ledger:write"))):
        return {"by": p.id}

    @app.post("/event")
    def event(p: Principal = Depends(require("ledger:write"))):
        # what a handler writes to its outbox: an envelope correlated with the request
        env = new_envelope(ParcelMeasuredV2(parcel="p", area_mu="1", surveyor="s"), subject="p", source="/t",
                           correlation_id=correlation_id.get())
        decode(env.to_json())  # what every consumer does first; raises EnvelopeError -> 422
        return {"correlation": env.correlationid}

    return TestClient(app, raise_server_exceptions=False)


def _jwt(claims: dict, key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode({"sub": "svc", "exp": int(time.time()) + 60, **claims}, key, algorithm=alg)


def _signed_raw(payload: bytes, header: dict | None = None, key: str = SECRET) -> str:
    """A token with a payload PyJWT's encoder would not write (e.g. a number JSON cannot hold)."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    signing_input = f"{b64(json.dumps(header or {'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(payload)}"
    sig = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# -- JWT claims ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("claims", [
    {"scopes": None},
    {"scopes": 5},
    {"scopes": [["admin"]]},
    {"scopes": ["ledger:write"], "sources": [{}]},
    {"scopes": ["ledger:write"], "sources": "/departments/tax"},
    {"scopes": "ledger:write"},  # a bare string was read as its characters
    {"scopes": {"ledger:write": True}},  # an object was read as its keys
    {"sub": "", "scopes": ["ledger:write"]},
], ids=["scopes-null", "scopes-int", "scopes-nested", "sources-nested", "sources-str", "scopes-str", "scopes-object",
        "sub-empty"])
def test_a_signed_token_with_malformed_claims_is_401_not_500(client, claims):
    token = _jwt(claims)
    for path, kwargs in (("/things", {}), ("/body", {"content": b"{not json"})):
        r = client.post(path, headers=_bearer(token), **kwargs)
        assert (r.status_code, r.json()["reason"]) == (401, "invalid_token"), (path, r.status_code, r.text)
    assert Authenticator(jwt_secret=SECRET).authenticate(token) is None


def test_a_token_minted_by_a_clock_a_little_ahead_is_accepted(client):
    now = int(time.time())
    ahead = _jwt({"scopes": ["ledger:write"], "iat": now + 5, "nbf": now + 5})
    assert client.post("/things", headers=_bearer(ahead)).json() == {"by": "svc"}


def test_not_before_beyond_the_skew_and_expiry_stay_strict(client):
    now = int(time.time())
    for claims in ({"nbf": now + CLOCK_SKEW_SECONDS + 60}, {"iat": now + CLOCK_SKEW_SECONDS + 60},
                   {"exp": now - 1}, {"exp": None}):
        token = _jwt({"scopes": ["admin"], **claims})
        r = client.post("/things", headers=_bearer(token))
        assert (r.status_code, r.json()["reason"]) == (401, "invalid_token"), claims
    no_exp = jwt.encode({"sub": "svc", "scopes": ["admin"]}, SECRET, algorithm="HS256")
    assert client.post("/things", headers=_bearer(no_exp)).status_code == 401
    huge = _signed_raw(b'{"sub":"svc","scopes":["admin"],"exp":1e400}')
    assert client.post("/things", headers=_bearer(huge)).status_code == 401


def test_only_hs256_with_the_secret_is_accepted(client):
    """Regression guards: alg none, another HMAC, another key."""
    claims = {"sub": "svc", "scopes": ["admin"], "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    hs384 = jwt.encode(claims, SECRET + SECRET, algorithm="HS384")
    other_key = jwt.encode(claims, "x" * 32, algorithm="HS256")
    for token in (unsigned, hs384, other_key):
        assert client.post("/things", headers=_bearer(token)).status_code == 401


# -- 401 responses ------------------------------------------------------------------------------------------

def test_every_401_carries_www_authenticate(client):
    cases = [
        ("/things", {}, {}, "Bearer"),
        ("/things", _bearer("nope"), {}, 'Bearer error="invalid_token"'),
        ("/things", {"Authorization": "Basic abc"}, {}, "Bearer"),
        # the body is refused before dependencies run: api._unauthenticated answers
        ("/body", {}, {"content": b"{not json"}, "Bearer"),
        ("/body", _bearer("nope"), {"content": b"{not json"}, 'Bearer error="invalid_token"'),
    ]
    for path, headers, kwargs, challenge in cases:
        r = client.post(path, headers=headers, **kwargs)
        assert r.status_code == 401, (path, headers)
        assert r.headers.get("www-authenticate") == challenge, (path, headers, dict(r.headers))
    r = client.post("/things", headers=_bearer("tok-reader"))
    assert r.status_code == 403 and r.json()["reason"] == "insufficient_scope"


# -- the tokens file and the secret ------------------------------------------------------------------------

def _file(tmp_path, text: str):
    f = tmp_path / "tokens.json"
    f.write_text(text)
    return f


@pytest.mark.parametrize("text", [
    # a duplicate token: json.loads kept the last one silently
    '{"tok-a": {"principal": "a", "scopes": ["admin"]}, "tok-a": {"principal": "b", "scopes": ["ledger:read"]}}',
    '{"": {"principal": "a", "scopes": ["admin"]}}',
    '{" ": {"principal": "a", "scopes": ["admin"]}}',
    '{" tok-a": {"principal": "a", "scopes": ["admin"]}}',
    '{"tok-a": {"principal": "a", "scopes": "ledger:read"}}',
    '{"tok-a": {"principal": "a", "scopes": ["ledger:read"], "sources": "/departments/tax"}}',
    '{"tok-a": {"principal": "", "scopes": ["ledger:read"]}}',
    '{"tok-a": {"scopes": ["ledger:read"]}}',
    '{"tok-a": ["ledger:read"]}',
    '["tok-a"]',
    # two principals claiming one intake source: the last silently won it
    '{"tok-a": {"principal": "a", "scopes": ["publish:X"], "sources": ["/departments/x"]},'
    ' "tok-b": {"principal": "b", "scopes": ["publish:Y"], "sources": ["/departments/x"]}}',
], ids=["duplicate", "empty", "blank", "padded", "scopes-str", "sources-str", "principal-empty", "principal-missing",
        "spec-list", "not-object", "source-twice"])
def test_a_bad_tokens_file_is_refused_without_quoting_tokens(tmp_path, text):
    with pytest.raises(AuthConfigError) as e:
        Authenticator.from_settings(_file(tmp_path, text), None)
    assert "tok-a" not in str(e.value) and "tok-b" not in str(e.value)


def test_two_keys_of_one_principal_may_share_its_sources(tmp_path):
    """Key rotation: the old and the new key of one department, listed the same."""
    spec = {"principal": "tax", "scopes": ["publish:TaxReceiptReported"], "sources": ["/departments/tax"]}
    auth = Authenticator.from_settings(_file(tmp_path, json.dumps({"old-key": spec, "new-key": spec})), None)
    assert auth.authenticate("old-key").id == auth.authenticate("new-key").id == "tax"
    assert auth.principal_for_source("/departments/tax").id == "tax"


def test_the_dev_tokens_file_still_loads():
    from tests.support.services import TOKENS

    auth = Authenticator.from_settings(TOKENS, None)
    assert auth.authenticate("dev-admin-token").id == "county-admin"


@pytest.mark.parametrize("secret", ["CHANGE-ME", " ", "s3cret", "k" * 31])
def test_a_guessable_jwt_secret_is_refused_at_start(secret):
    with pytest.raises(AuthConfigError) as e:
        Authenticator.from_settings(None, secret)
    assert secret not in str(e.value) or secret == " "
    # the k8s example's placeholder would otherwise let anyone mint an admin token
    forged = jwt.encode({"sub": "x", "scopes": ["admin"], "exp": int(time.time()) + 60}, "CHANGE-ME", algorithm="HS256")
    assert Authenticator.from_settings(None, None).authenticate(forged) is None


def test_an_empty_secret_means_no_jwts_and_a_long_one_is_used():
    # an HMAC over the empty key is computable by anyone: it must not switch JWTs on
    token = _signed_raw(json.dumps({"sub": "x", "scopes": ["admin"], "exp": int(time.time()) + 60}).encode(), key="")
    assert Authenticator.from_settings(None, "").authenticate(token) is None
    assert Authenticator(jwt_secret="").authenticate(token) is None
    assert Authenticator.from_settings(None, SECRET).authenticate(_jwt({"scopes": ["admin"]})).id == "svc"


# -- correlation id and metrics ------------------------------------------------------------------------------

def test_the_callers_correlation_id_is_kept_when_events_can_carry_it(client):
    r = client.post("/event", headers={**_bearer("tok-admin"), "x-correlation-id": "req-42"})
    assert r.status_code == 200 and r.json() == {"correlation": "req-42"}
    assert r.headers["x-correlation-id"] == "req-42"


@pytest.mark.parametrize("cid", ["x" * 201, "a\tb", "a\x7fb", ""], ids=["too-long", "tab", "del", "empty"])
def test_a_correlation_id_events_cannot_carry_is_replaced(client, cid):
    """Each event the request writes carries the id: one consumers refuse (invalid_envelope) would send every
    such event to the dead letters — quota's ledger commands, for instance, would never reach the ledger."""
    r = client.post("/event", headers={**_bearer("tok-admin"), "x-correlation-id": cid})
    assert r.status_code == 200, r.text
    assert UUID.fullmatch(r.json()["correlation"]) and r.headers["x-correlation-id"] == r.json()["correlation"]


def test_metric_labels_take_no_arbitrary_method(client):
    for i in range(3):
        client.request(f"BREW{i}", "/nowhere")
    body = client.get("/metrics").text
    assert 'method="BREW' not in body
    assert 'countypool_http_requests_total{method="OTHER",route="unmatched",service="authtest",status="404"} 3.0' in body


# -- scope rules (regression guards) ---------------------------------------------------------------------------

def test_a_publish_scope_covers_only_its_own_event_and_qualifiers():
    p = Principal("p", frozenset({"publish:Quota", "publish:QuotaReleaseSubmitted:COD", "settlement:admin"}))
    assert p.allows("publish:QuotaReleaseSubmitted:COD")
    assert p.allows("publish:Quota:X")
    for needed in ("publish:QuotaReleaseSubmitted", "publish:QuotaReleaseSubmitted:LAND",
                   "publish:QuotaReleaseSubmitted:COD:x", "publish:QuotaReleaseSubmittedX:COD",
                   "publish:Quota", "admin", "ledger:write", "publish:QuotaReleaseSubmitted:cod"):
        assert p.allows(needed) == (needed == "publish:Quota"), needed


def test_jwt_audience_and_issuer_when_configured():
    """A token minted with the same secret for another system (its own aud/iss) is refused; ours passes."""
    auth = Authenticator.from_settings(None, SECRET, audience="countypool", issuer="county-idp")
    ok = {"aud": "countypool", "iss": "county-idp", "scopes": ["admin"]}
    assert auth.authenticate(_jwt(ok)).id == "svc"
    assert auth.authenticate(_jwt({**ok, "aud": "tax-portal"})) is None
    assert auth.authenticate(_jwt({**ok, "aud": ["tax-portal", "countypool"]})).id == "svc"
    assert auth.authenticate(_jwt({**ok, "iss": "someone-else"})) is None
    assert auth.authenticate(_jwt({k: v for k, v in ok.items() if k != "aud"})) is None
    assert auth.authenticate(_jwt({k: v for k, v in ok.items() if k != "iss"})) is None


def test_jwt_with_an_audience_is_refused_when_none_is_configured():
    auth = Authenticator.from_settings(None, SECRET)
    assert auth.authenticate(_jwt({"scopes": ["admin"]})).id == "svc"
    assert auth.authenticate(_jwt({"aud": "tax-portal", "scopes": ["admin"]})) is None


def test_audience_and_issuer_come_from_the_environment(monkeypatch):
    from shared.settings import ServiceSettings

    monkeypatch.setenv("COUNTYPOOL_AUTH_JWT_AUDIENCE", "countypool")
    monkeypatch.setenv("COUNTYPOOL_AUTH_JWT_ISSUER", "county-idp")
    s = ServiceSettings(service="ledger")
    assert (s.auth_jwt_audience, s.auth_jwt_issuer) == ("countypool", "county-idp")
    monkeypatch.setenv("COUNTYPOOL_AUTH_JWT_AUDIENCE", "")
    assert ServiceSettings(service="ledger").auth_jwt_audience is None


def test_tokens_file_is_read_again_when_it_changes(tmp_path, monkeypatch, caplog):
    """A leaked key is revoked by editing the file, without a restart; a broken edit keeps the keys in force."""
    import shared.auth as auth_module

    monkeypatch.setattr(auth_module, "TOKENS_RECHECK_SECONDS", 0.0)
    spec = {"principal": "ecology", "scopes": ["quota:write"], "sources": ["/departments/ecology"]}
    f = _file(tmp_path, json.dumps({"old-key": spec}))
    auth = Authenticator.from_settings(f, None)
    assert auth.authenticate("old-key").id == "ecology"

    f.write_text(json.dumps({"new-key": {**spec, "sources": ["/departments/ecology-2"]}}), encoding="utf-8")
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a distinct mtime even on a coarse clock
    assert auth.authenticate("old-key") is None
    assert auth.authenticate("new-key").id == "ecology"
    assert auth.principal_for_source("/departments/ecology") is None
    assert auth.principal_for_source("/departments/ecology-2").id == "ecology"

    f.write_text('{"half-written": ', encoding="utf-8")
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    with caplog.at_level("ERROR", logger="shared.auth"):
        assert auth.authenticate("new-key").id == "ecology"
    assert "keys read before stay in force" in caplog.text
    assert "new-key" not in caplog.text  # never a token in the logs


def test_tokens_file_is_not_read_again_within_the_recheck_period(tmp_path, monkeypatch):
    import shared.auth as auth_module

    monkeypatch.setattr(auth_module, "TOKENS_RECHECK_SECONDS", 3600.0)
    spec = {"principal": "ecology", "scopes": ["quota:write"]}
    f = _file(tmp_path, json.dumps({"old-key": spec}))
    auth = Authenticator.from_settings(f, None)
    f.write_text(json.dumps({"new-key": spec}), encoding="utf-8")
    assert auth.authenticate("old-key").id == "ecology"  # one stat per period, not one per request


def _signing_auth(mode: str) -> Authenticator:
    eco = Principal("ecology", frozenset({"publish:QuotaReleaseSubmitted"}), frozenset({"/departments/ecology"}))
    nr = Principal("natural-resources", frozenset({"publish:QuotaReleaseSubmitted"}),
                   frozenset({"/departments/natural-resources"}))
    return Authenticator({"eco-old": eco, "eco-new": eco, "nr-key": nr}, intake_signatures=mode)


def test_intake_signatures_bind_a_message_to_its_declared_source():
    from shared.auth import SIGNATURE_HEADER, signature_of
    from shared.envelope import EnvelopeError

    auth = _signing_auth("require")
    value = b'{"type":"countypool.QuotaReleaseSubmitted.v1","source":"/departments/ecology"}'
    for key in ("eco-old", "eco-new"):  # either key of the principal while it rotates them
        auth.check_signature("/departments/ecology", value, [(SIGNATURE_HEADER, signature_of(key, value).encode())])
    refusals = {
        "signature_missing": [],
        "signature_invalid": [(SIGNATURE_HEADER, signature_of("nr-key", value).encode())],  # another department
    }
    for reason, headers in refusals.items():
        with pytest.raises(EnvelopeError) as caught:
            auth.check_signature("/departments/ecology", value, headers)
        assert caught.value.reason == reason
    tampered = value.replace(b"ecology", b"ecologx")
    with pytest.raises(EnvelopeError, match="not the signature"):
        auth.check_signature("/departments/ecology", tampered, [(SIGNATURE_HEADER, signature_of("eco-old", value).encode())])
    with pytest.raises(EnvelopeError, match="not the signature"):  # an unknown source has no key
        auth.check_signature("/departments/nobody", value, [(SIGNATURE_HEADER, signature_of("eco-old", value).encode())])


def test_intake_signature_modes():
    from shared.auth import SIGNATURE_HEADER, signature_of
    from shared.envelope import EnvelopeError

    value, wrong = b"{}", [(SIGNATURE_HEADER, b"sha256=00")]
    _signing_auth("off").check_signature("/departments/ecology", value, wrong)  # ignored
    _signing_auth("verify").check_signature("/departments/ecology", value, [])  # unsigned passes
    with pytest.raises(EnvelopeError):
        _signing_auth("verify").check_signature("/departments/ecology", value, wrong)  # but a wrong one does not
    _signing_auth("verify").check_signature("/departments/ecology", value,
                                            [(SIGNATURE_HEADER, signature_of("eco-new", value).encode())])
    with pytest.raises(AuthConfigError, match="COUNTYPOOL_INTAKE_SIGNATURES"):
        _signing_auth("sometimes")
