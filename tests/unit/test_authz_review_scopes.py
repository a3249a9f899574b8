"""Who may call what, checked on the four apps without Kafka (an authorization review).

- every /v1 route authenticates (no route is open because a dependency was forgotten);
- no department decides: a county's decision on a disposition recommendation and its evaluation policy need
  ``assessment:admin`` (the county's), which no department of deploy/dev-tokens.json holds, while the industry
  bureau's ``assessment:write`` still runs evaluations and records figures;
- ``finance:read`` is the settlement API's read scope (shared/auth.py: "read settlement statements and
  positions"): alone it reads nothing of assessment, quota or the ledger (the enterprises' figures, the pool,
  the book); the finance bureau reads those with the ``<service>:read`` scopes its token lists;
- the authorization matrix's route enumeration sees routes left out of the OpenAPI document.
"""
from __future__ import annotations

import importlib
import json
import re

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from shared.auth import Authenticator, Principal, principal
from shared.settings import load_settings
from tests.badinput.test_authorization_matrix import PUBLIC, WRITE_METHODS, app_routes
from tests.support.services import TOKENS

SERVICES = ("assessment", "quota", "ledger", "settlement")
DEV = json.loads(TOKENS.read_text(encoding="utf-8"))
EXTRA = {  # principals holding one scope each
    "t-finance-read": ("finance-read-only", ["finance:read"]),
    "t-assessment-write": ("assessment-writer", ["assessment:write"]),
    "t-assessment-admin": ("county-government", ["assessment:admin"]),
}
DEPARTMENTS = [t for t, spec in DEV.items() if spec.get("sources")]  # those that publish: the departments


def _authenticator() -> Authenticator:
    tokens = {t: Principal(spec["principal"], frozenset(spec["scopes"]), frozenset(spec.get("sources", [])))
              for t, spec in DEV.items()}
    tokens |= {t: Principal(who, frozenset(scopes)) for t, (who, scopes) in EXTRA.items()}
    return Authenticator(tokens)


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    d = tmp_path_factory.mktemp("authz-unit")
    out = {}
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.main")
        cls = getattr(module, f"{name.capitalize()}Settings", None)
        # Kafka is never reached: no lifespan runs (no relay, no consumer), and every call here stops before a
        # route's body, or at a 404/422 of its own
        kw = dict(database_url=f"sqlite:///{d / name}.sqlite3", kafka_bootstrap_servers="127.0.0.1:1",
                  auth_tokens_file=TOKENS)
        st = load_settings(name, cls, **kw) if cls else load_settings(name, **kw)
        runtime, app = module.build(st)
        runtime.migrate()
        app.state.authenticator = _authenticator()
        out[name] = (runtime, app, TestClient(app))
    yield out
    for runtime, _, _ in out.values():
        runtime.db.dispose()


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _routes(app):
    def walk(routes):
        for r in routes:
            if hasattr(r, "effective_candidates"):
                yield from walk(r.effective_candidates())
            else:
                yield r
    return [r for r in walk(app.routes) if getattr(r, "path", "").startswith("/v1")]


def _calls(dependant):
    for d in dependant.dependencies:
        yield d.call
        yield from _calls(d)


def _filled(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", "x", path)


@pytest.mark.parametrize("service", SERVICES)
def test_every_v1_route_authenticates(service, apps):
    _, app, _ = apps[service]
    routes = _routes(app)
    assert routes
    open_routes = [f"{sorted(r.methods)} {r.path}" for r in routes if principal not in set(_calls(r.dependant))]
    assert open_routes == [], "routes that never ask who is calling"


def test_no_department_decides_a_disposition_or_sets_the_evaluation_policy(apps):
    _, _, c = apps["assessment"]
    county = [("POST", "/v1/dispositions"), ("PUT", "/v1/policies/320612/2023")]
    for method, url in county:
        for token in [*DEPARTMENTS, "t-assessment-write", "dev-finance-token", "dev-settlement-admin-token"]:
            r = c.request(method, url, headers=_bearer(token), json={})
            assert (r.status_code, r.json()["reason"]) == (403, "insufficient_scope"), (method, url, token, r.text)
        for token in ("t-assessment-admin", "dev-admin-token"):  # the county: let through (to the body's 422)
            r = c.request(method, url, headers=_bearer(token), json={})
            assert r.status_code == 422, (method, url, token, r.text)
    # what the industry bureau's assessment:write still does: its register and figures, running an evaluation
    for url in ("/v1/enterprises", "/v1/indicators", "/v1/evaluations"):
        r = c.post(url, headers=_bearer("dev-industry-token"), json={})
        assert r.status_code == 422, (url, r.text)


@pytest.mark.parametrize("service", ["assessment", "quota", "ledger"])
def test_finance_read_alone_reads_nothing_outside_settlement(service, apps):
    _, app, c = apps[service]
    reads = [r for r in _routes(app) if "GET" in r.methods]
    assert reads
    for r in reads:
        url = _filled(r.path)
        for token in ("t-finance-read", "dev-settlement-admin-token", *DEPARTMENTS):
            if {f"{service}:read", f"{service}:write"} & set(DEV.get(token, {}).get("scopes", [])):
                continue  # the industry bureau reads the assessment it writes to
            got = c.get(url, headers=_bearer(token))
            assert (got.status_code, got.json()["reason"]) == (403, "insufficient_scope"), (url, token, got.text)
        got = c.get(url, headers=_bearer("dev-finance-token"))  # the finance bureau: quota:read etc. of its own
        assert got.status_code not in (401, 403) and got.status_code < 500, (url, got.text)


def test_finance_read_reads_the_settlement_api(apps):
    _, app, c = apps["settlement"]
    reads = [r for r in _routes(app) if "GET" in r.methods]
    assert reads
    for r in reads:
        url = _filled(r.path)
        for token in ("t-finance-read", "dev-finance-token", "dev-settlement-admin-token"):
            got = c.get(url, headers=_bearer(token))
            assert got.status_code not in (401, 403) and got.status_code < 500, (url, token, got.text)
        for token in DEPARTMENTS:  # a department (the tax bureau included) reads no statement
            got = c.get(url, headers=_bearer(token))
            assert got.status_code == 403, (url, token, got.text)


def test_the_route_enumeration_sees_routes_left_out_of_the_openapi_document():
    app = FastAPI()
    inner = APIRouter(prefix="/v1")
    inner.add_api_route("/hidden", lambda: None, methods=["POST"], include_in_schema=False)
    inner.add_api_route("/shown/{item_id:path}", lambda item_id: None, methods=["GET"])
    outer = APIRouter()
    outer.include_router(inner)
    app.include_router(outer)
    app.add_route("/v1/plain", lambda request: None, methods=["DELETE"])
    found = app_routes(app)
    assert {("POST", "/v1/hidden"), ("GET", "/v1/shown/{item_id}"), ("DELETE", "/v1/plain")} <= found
    assert ("POST", "/v1/hidden") not in {(m.upper(), p) for p, item in app.openapi()["paths"].items()
                                          for m in item if m in WRITE_METHODS}
    assert "/docs" in PUBLIC and ("GET", "/docs") in found
