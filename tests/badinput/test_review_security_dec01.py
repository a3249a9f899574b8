"""Security review (hostile insider holding one department's or the finance bureau's credentials), 2026-12-01.

Defect found:

- quota's reconciliation answers a 503 ``ledger_unavailable`` whose message is ``str()`` of the HTTP client's error
  (services/quota/application/reconciliation.py LedgerBalances, services/quota/api/query_routes.py). When the
  ledger token quota holds (``COUNTYPOOL_QUOTA_LEDGER_TOKEN``) cannot be sent as a header -- the usual case is a
  trailing newline, as a Kubernetes secret made ``--from-file`` carries one (deploy/k8s/quota.yaml reads it from a
  secret) -- h11 refuses the header with "Illegal header value b'Bearer <token>\\n'", and that text, the token in
  clear, is answered to any ``quota:read`` caller (the finance bureau; its POST /v1/reconciliation:run too).

Guards kept (not covered by tests/unit/shared/test_auth*.py, tests/integration/test_intake_signatures.py or the
authorization matrix): the intake signature header is matched by its exact name and two signature headers are
refused even when one is right; a configured JWT issuer is compared exactly (PyJWT 2.10.0, inside pyproject's
range, matched it as a substring: CVE-2024-53861) and an empty audience does not satisfy a configured one; scope
names are matched exactly (no case or whitespace games, in a JWT or the tokens file); an API key is matched whole
(no prefix, no extension, no case folding).
"""
from __future__ import annotations

import importlib
import json
import socket
import time

import jwt
import pytest
from fastapi.testclient import TestClient

from shared.auth import SIGNATURE_HEADER, Authenticator, Principal, signature_of
from shared.envelope import EnvelopeError
from shared.settings import load_settings
from tests.support.services import TOKENS

COUNTY = "320612"
LEDGER_SECRET = "quota-ledger-token-3f9c1e77a2b84d0e"  # what quota holds to read the ledger's balances


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def listening_port():
    """A TCP port that takes connections and never answers (the request fails while it is being written)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture
def quota(tmp_path, listening_port):
    """The quota app as `python -m services.quota.main` builds it (no lifespan: Kafka is never reached), its ledger
    token set with the trailing newline a secret read from a file carries."""
    module = importlib.import_module("services.quota.main")
    settings = load_settings("quota", module.QuotaSettings, database_url=f"sqlite:///{tmp_path / 'quota.sqlite3'}",
                             kafka_bootstrap_servers="127.0.0.1:1", auth_tokens_file=TOKENS,
                             ledger_url=f"http://127.0.0.1:{listening_port}", ledger_token=LEDGER_SECRET + "\n")
    runtime, app = module.build(settings)
    runtime.migrate()
    app.state.ledger_balances.client.timeout = 3  # never waited on: the request fails before it is sent
    client = TestClient(app, raise_server_exceptions=False)
    r = client.put(f"/v1/counties/{COUNTY}/policy", headers=_bearer("dev-admin-token"), json={})  # a known county
    assert r.status_code == 200, r.text
    try:
        yield client
    finally:
        runtime.db.dispose()


def test_reconciliation_errors_do_not_hand_quotas_ledger_token_to_a_reader(quota):
    """The finance bureau (quota:read) asks for a reconciliation while quota cannot reach the ledger: it is told
    503 ledger_unavailable, never the credential quota reads the ledger with."""
    for method, url in (("GET", f"/v1/counties/{COUNTY}/reconciliation"), ("POST", "/v1/reconciliation:run")):
        r = quota.request(method, url, headers=_bearer("dev-finance-token"))
        assert (r.status_code, r.json().get("reason")) == (503, "ledger_unavailable"), (method, url, r.text)
        assert LEDGER_SECRET not in r.text, f"{method} {url} answered quota's ledger token to a reader: {r.text}"


# -- guards: intake signatures ----------------------------------------------------------------------------------

ECO = Principal("ecology", frozenset({"publish:QuotaReleaseSubmitted:COD"}), frozenset({"/departments/ecology"}))
TAX = Principal("tax", frozenset({"publish:TaxReceiptReported"}), frozenset({"/departments/tax"}))
VALUE = b'{"source":"/departments/ecology","type":"countypool.QuotaReleaseSubmitted.v1"}'


def _reason(auth: Authenticator, source: str, value: bytes, headers) -> str | None:
    try:
        auth.check_signature(source, value, headers)
    except EnvelopeError as exc:
        return exc.reason
    return None


def test_a_signature_header_counts_only_under_its_exact_name_and_only_once():
    auth = Authenticator({"eco-key": ECO, "tax-key": TAX}, intake_signatures="require")
    good, forged = signature_of("eco-key", VALUE).encode(), signature_of("tax-key", VALUE).encode()
    assert _reason(auth, "/departments/ecology", VALUE, [(SIGNATURE_HEADER, good)]) is None
    # another spelling of the name is no signature at all: under require, missing
    for name in ("Countypool-Signature", "COUNTYPOOL-SIGNATURE", "countypool-signature ", "countypool_signature"):
        assert _reason(auth, "/departments/ecology", VALUE, [(name, good)]) == "signature_missing", name
    # a forged signature cannot hide beside a good one (nor a good one beside a forged one), in either order
    for headers in ([(SIGNATURE_HEADER, forged), (SIGNATURE_HEADER, good)],
                    [(SIGNATURE_HEADER, good), (SIGNATURE_HEADER, forged)],
                    [(SIGNATURE_HEADER, good), (SIGNATURE_HEADER, good)]):
        assert _reason(auth, "/departments/ecology", VALUE, headers) == "signature_invalid", headers
    # the tax bureau's own key does not sign the ecology bureau's source, whatever the case of the hex
    assert _reason(auth, "/departments/ecology", VALUE, [(SIGNATURE_HEADER, forged)]) == "signature_invalid"
    assert _reason(auth, "/departments/ecology", VALUE, [(SIGNATURE_HEADER, good.upper())]) == "signature_invalid"
    # verify mode: a header under another spelling is ignored, a wrong one under the right name still refused
    verify = Authenticator({"eco-key": ECO, "tax-key": TAX}, intake_signatures="verify")
    assert _reason(verify, "/departments/ecology", VALUE, [(SIGNATURE_HEADER, forged)]) == "signature_invalid"


# -- guards: JWT claims and scope names ------------------------------------------------------------------------

SECRET = "s" * 40


def _jwt(**claims) -> str:
    return jwt.encode({"sub": "dept", "exp": int(time.time()) + 60, **claims}, SECRET, algorithm="HS256")


def test_a_configured_issuer_is_compared_exactly_and_an_empty_audience_is_no_audience():
    auth = Authenticator.from_settings(None, SECRET, audience="countypool", issuer="county-idp")
    ok = dict(aud="countypool", iss="county-idp", scopes=["admin"])
    assert auth.authenticate(_jwt(**ok)).id == "dept"
    for claims in ({**ok, "iss": "idp"}, {**ok, "iss": "county"}, {**ok, "iss": "county-idp "},
                   {**ok, "iss": "County-IdP"},
                   {**ok, "aud": ""}, {**ok, "aud": []}, {**ok, "aud": "countypool-x"}, {**ok, "aud": "Countypool"}):
        assert auth.authenticate(_jwt(**claims)) is None, claims


def test_scope_names_are_matched_exactly_in_jwts_and_the_tokens_file(tmp_path):
    """A token for scopes it does not carry: 'Admin', ' admin', 'ledger:write ' are not admin nor ledger:write."""
    near = ["Admin", " admin", "admin ", "ADMIN", "ledger:Write", "ledger:write ", "ledger: write", "ledger:*",
            "*", "publish:QuotaReleaseSubmitted:cod", "publish:QuotaReleaseSubmitted:COD ", "Publish:QuotaReleaseSubmitted"]
    f = tmp_path / "tokens.json"
    f.write_text(json.dumps({"near-key": {"principal": "near", "scopes": near, "sources": ["/departments/near"]}}))
    auth = Authenticator.from_settings(f, SECRET)
    for p in (auth.authenticate("near-key"), auth.authenticate(_jwt(scopes=near))):
        assert p is not None
        for needed in ("admin", "ledger:write", "quota:admin", "assessment:admin", "settlement:admin",
                       "publish:QuotaReleaseSubmitted:COD", "publish:QuotaReleaseSubmitted:LAND"):
            assert not p.allows(needed), (p.id, needed)


def test_an_api_key_is_matched_whole():
    auth = Authenticator.from_settings(TOKENS, SECRET)
    assert auth.authenticate("dev-ecology-token").id == "ecology-bureau"
    for near in ("dev-ecology-toke", "dev-ecology-token2", "DEV-ECOLOGY-TOKEN", "dev-ecology-token\x00", "dev-",
                 "dev-ecology-token.x.y", " dev-ecology-token"):
        assert auth.authenticate(near) is None, near
