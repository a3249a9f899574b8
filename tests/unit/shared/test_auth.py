import json
import time

import jwt
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from shared.api import create_app
from shared.auth import Authenticator, Principal, require
from shared.envelope import EnvelopeError, new_envelope
from tests.unit.shared.test_envelope import ParcelMeasuredV2

TOKENS = {
    "tok-admin": Principal("admin", frozenset({"admin"})),
    "tok-reader": Principal("reader", frozenset({"ledger:read"})),
    "tok-ecology": Principal("ecology", frozenset({"publish:QuotaReleaseSubmitted:COD"}), frozenset({"/departments/ecology"})),
}


@pytest.fixture
def client():
    auth = Authenticator(TOKENS, jwt_secret="s3cret")
    app = create_app("test", authenticator=auth, ready_checks={"always": lambda: True}, title="t")

    @app.post("/things")
    def write(p: Principal = Depends(require("ledger:write"))):
        return {"by": p.id}

    @app.get("/things")
    def read(p: Principal = Depends(require("ledger:read", "ledger:write"))):
        return {"by": p.id}

    return TestClient(app)


def test_no_token_is_401_with_reason(client):
    r = client.post("/things")
    assert r.status_code == 401 and r.json()["reason"] == "missing_token"


def test_unknown_token_is_401(client):
    r = client.post("/things", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["reason"] == "invalid_token"


def test_wrong_scope_is_403(client):
    r = client.post("/things", headers={"Authorization": "Bearer tok-reader"})
    assert r.status_code == 403 and r.json()["reason"] == "insufficient_scope"


def test_right_scope_passes(client):
    assert client.get("/things", headers={"Authorization": "Bearer tok-reader"}).json() == {"by": "reader"}
    assert client.post("/things", headers={"Authorization": "Bearer tok-admin"}).json() == {"by": "admin"}


def test_signed_jwt_carries_principal_and_scopes(client):
    good = jwt.encode({"sub": "svc", "scopes": ["ledger:write"], "exp": int(time.time()) + 60}, "s3cret", algorithm="HS256")
    assert client.post("/things", headers={"Authorization": f"Bearer {good}"}).json() == {"by": "svc"}
    forged = jwt.encode({"sub": "svc", "scopes": ["admin"], "exp": int(time.time()) + 60}, "other", algorithm="HS256")
    assert client.post("/things", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    expired = jwt.encode({"sub": "svc", "scopes": ["admin"], "exp": int(time.time()) - 5}, "s3cret", algorithm="HS256")
    assert client.post("/things", headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_publish_scope_with_qualifier():
    eco = TOKENS["tok-ecology"]
    assert eco.allows("publish:QuotaReleaseSubmitted:COD")
    assert not eco.allows("publish:QuotaReleaseSubmitted:LAND")
    broad = Principal("p", frozenset({"publish:QuotaReleaseSubmitted"}))
    assert broad.allows("publish:QuotaReleaseSubmitted:LAND")


def test_intake_events_are_checked_against_their_source():
    auth = Authenticator(TOKENS)
    env = new_envelope(ParcelMeasuredV2(parcel="p", area_mu="1", surveyor="s"), subject="p", source="/departments/ecology")
    assert auth.authorize_event(env, "publish:QuotaReleaseSubmitted:COD").id == "ecology"
    with pytest.raises(EnvelopeError) as e:
        auth.authorize_event(env, "publish:QuotaReleaseSubmitted:LAND")
    assert e.value.reason == "source_not_allowed"
    stranger = new_envelope(ParcelMeasuredV2(parcel="p", area_mu="1", surveyor="s"), subject="p", source="/somebody")
    with pytest.raises(EnvelopeError) as e:
        auth.authorize_event(stranger, "publish:QuotaReleaseSubmitted:COD")
    assert e.value.reason == "unknown_source"


def test_tokens_file(tmp_path):
    f = tmp_path / "tokens.json"
    f.write_text(json.dumps({"abc": {"principal": "tax", "scopes": ["publish:TaxReceiptReported"], "sources": ["/departments/tax"]}}))
    auth = Authenticator.from_settings(f, None)
    assert auth.authenticate("abc").id == "tax"
    assert auth.principal_for_source("/departments/tax").id == "tax"


def test_health_ready_metrics_and_error_shape(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json() == {"ready": True, "checks": {"always": True}}
    client.get("/things", headers={"Authorization": "Bearer tok-reader"})
    body = client.get("/metrics").text
    assert 'countypool_http_requests_total{method="GET",route="/things",service="test",status="200"}' in body
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json()["reason"] == "not_found"
