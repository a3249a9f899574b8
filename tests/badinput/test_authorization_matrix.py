"""Every endpoint × every principal of deploy/dev-tokens.json (issue 8, "Bad input").

The endpoints are enumerated from each service's app itself (every route, also one left out of the OpenAPI
document, or mounted, or added without FastAPI), and must match the tables below exactly: POLICY for the
writes (POST, PUT, PATCH, DELETE), READS for the reads (GET), PUBLIC for the probes; a new endpoint fails here
until its rule is written down. The table says
which scopes an endpoint needs (any one of them; ``admin`` holds all; ``publish:<Event>`` covers
``publish:<Event>:<qualifier>``), as the code's ``require(...)`` / ``require_each(...)`` says. For endpoints whose
scope depends on the body (releases by asset, approvals by kind, imports by kind and department) there is one
row per variant, with a valid body, since the check runs once the body is read.

Expected, for every row and principal:
- no token: 401 ``missing_token``; an unknown token: 401 ``invalid_token``;
- a principal holding none of the scopes: 403 ``insufficient_scope``;
- a principal holding one: anything but 401/403 (and no 5xx) — bodies are minimal, so 422 is an authorized answer;
- a refused call (401/403) changes nothing in the service's database.
"""
from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest

from tests.badinput.support import PRINCIPALS, SERVICES, changed_tables, error_shape_problem, fingerprint
from tests.support.services import auth, running_service

WRITE_METHODS = {"post", "put", "patch", "delete"}
COUNTY, YEAR, PERIOD = "320612", 2023, "2024-03"


def _code(n: int) -> str:
    from services.assessment.domain.credit_code import make_credit_code

    return make_credit_code(f"91{COUNTY}{n:09d}")


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as in the OpenAPI document
    scopes: tuple[str, ...]  # any one of them is enough
    variant: str = ""
    url: str = ""  # the path with its parameters filled in
    json: object = field(default_factory=dict)
    content: bytes | None = None  # a raw body instead of JSON
    content_type: str | None = None
    params: dict = field(default_factory=dict)


# finance:read is the settlement API's read scope (shared/auth.py: "read settlement statements and positions"):
# it reads no other service; the finance bureau reads those with their own <service>:read scopes.
A_READ = ("assessment:read", "assessment:write")
A_WRITE = ("assessment:write",)
# the county's own: its evaluation policy and its decision on a recommendation (no department decides)
A_COUNTY = ("assessment:admin",)
Q_READ = ("quota:read", "quota:write")
Q_WRITE = ("quota:write",)
L_READ = ("ledger:read", "ledger:write")
L_WRITE = ("ledger:write",)
S_READ = ("finance:read", "settlement:admin")
S_ADMIN = ("settlement:admin",)
S_RECEIPTS = ("publish:TaxReceiptReported", "settlement:admin")


def _release(asset: str) -> dict:
    return dict(release_id=f"AUTHZ-{asset}", enterprise_credit_code=_code(1), township_code=f"{COUNTY}101",
                county_code=COUNTY, asset=asset, amount="1", reason="closure", basis="free", document_ref="doc-1",
                released_on="2024-02-01")


def _approval(kind: str) -> dict:
    return dict(project_id="AUTHZ-P1", kind=kind, granted_on="2024-03-01")


CSV = b"credit_code,name,township_code,industry_code\n" + f"{_code(2)},企业,{COUNTY}101,C3311\n".encode()

POLICY: dict[str, list[Row]] = {
    "assessment": [
        Row("POST", "/v1/enterprises", A_WRITE),
        Row("POST", "/v1/indicators", A_WRITE),
        Row("POST", "/v1/indicators/withdrawals", A_WRITE),
        Row("PUT", "/v1/policies/{county_code}/{year}", A_COUNTY, url=f"/v1/policies/{COUNTY}/{YEAR}"),
        Row("POST", "/v1/evaluations", A_WRITE),
        Row("POST", "/v1/dispositions", A_COUNTY),
        Row("POST", "/v1/dispositions/{credit_code}/{year}/execution", A_WRITE,
            url=f"/v1/dispositions/{_code(1)}/{YEAR}/execution"),
        Row("POST", "/v1/tasks", A_WRITE),
        Row("POST", "/v1/tasks/{task_id}/completion", A_WRITE, url="/v1/tasks/AUTHZ-T1/completion"),
        Row("POST", "/v1/tasks/{task_id}/cancellation", A_WRITE, url="/v1/tasks/AUTHZ-T1/cancellation"),
        Row("POST", "/v1/projects", A_WRITE),
        # a department may import what it may publish (routes_imports._may_import)
        Row("POST", "/v1/imports", ("assessment:write", "publish:EnterpriseReported"), "enterprises",
            content=CSV, content_type="text/csv", params={"kind": "enterprises"}),
        Row("POST", "/v1/imports", ("assessment:write", "publish:IndicatorsReported:tax"), "indicators-tax",
            content=b"credit_code,year,tax\n" + f"{_code(2)},{YEAR},100.00\n".encode(), content_type="text/csv",
            params={"kind": "indicators", "department": "tax"}),
    ],
    "quota": [
        Row("PUT", "/v1/counties/{county_code}/policy", ("quota:admin",), url=f"/v1/counties/{COUNTY}/policy"),
        # any authenticated caller, then require_each(publish:QuotaReleaseSubmitted:<asset>)
        *[Row("POST", "/v1/releases", (f"publish:QuotaReleaseSubmitted:{a}",), a, json=_release(a))
          for a in ("COD", "ENERGY", "LAND")],
        Row("POST", "/v1/reclamation-projects", ("publish:ReclamationAccepted", "quota:write")),
        Row("POST", "/v1/reclamation-projects/{project_id}/acceptance", ("publish:ReclamationAccepted",),
            url="/v1/reclamation-projects/AUTHZ-RC1/acceptance"),
        # any authenticated caller, then require_each(publish:ApprovalGranted:<qualifier of kind>)
        *[Row("POST", "/v1/approvals", (f"publish:ApprovalGranted:{q}",), k, json=_approval(k))
          for k, q in (("environmental_impact", "environmental"), ("energy_review", "energy"), ("land_use", "land"))],
        Row("POST", "/v1/requests", Q_WRITE),
        Row("POST", "/v1/requests/{request_id}/cancel", Q_WRITE, url="/v1/requests/AUTHZ-Q1/cancel"),
        Row("POST", "/v1/counties/{county_code}/rounds", Q_WRITE, url=f"/v1/counties/{COUNTY}/rounds"),
        # a POST that only reads (and sets the reconciliation metric): read scopes
        Row("POST", "/v1/reconciliation:run", Q_READ),
    ],
    "ledger": [
        Row("POST", "/v1/accounts", L_WRITE),
        Row("POST", "/v1/transfers", L_WRITE),
        Row("POST", "/v1/balances:query", L_READ),  # a query with a body
    ],
    "settlement": [
        Row("POST", "/v1/agreements", S_ADMIN),
        Row("POST", "/v1/agreements/{agreement_id}/versions", S_ADMIN, url="/v1/agreements/AUTHZ-A1/versions"),
        Row("PUT", "/v1/counties/{county}/settlement-policy", S_ADMIN, url=f"/v1/counties/{COUNTY}/settlement-policy"),
        Row("POST", "/v1/tax-receipts", S_RECEIPTS),
        Row("POST", "/v1/tax-receipts/import", S_RECEIPTS, content=b"receipt_id\n", content_type="text/csv"),
        Row("POST", "/v1/statistics-reports", ("publish:StatisticsReported", "settlement:admin")),
        Row("POST", "/v1/counties/{county}/periods/{period}/draft", S_ADMIN,
            url=f"/v1/counties/{COUNTY}/periods/{PERIOD}/draft"),
        Row("POST", "/v1/counties/{county}/periods/{period}/finalize", S_ADMIN,
            url=f"/v1/counties/{COUNTY}/periods/{PERIOD}/finalize"),
    ],
}


def _get(path: str, scopes: tuple[str, ...], url: str = "", **params) -> Row:
    return Row("GET", path, scopes, url=url, json=None, params=params)


CODE, ACCOUNT = _code(1), f"county:{COUNTY}/pool/COD"
# Every read, with its parameters filled in (any value the route takes: a 404 or 422 is an authorized answer).
READS: dict[str, list[Row]] = {
    "assessment": [
        _get("/v1/enterprises/{credit_code}", A_READ, f"/v1/enterprises/{CODE}"),
        _get("/v1/enterprises", A_READ, county_code=COUNTY),
        _get("/v1/enterprises/{credit_code}/indicators/{year}", A_READ, f"/v1/enterprises/{CODE}/indicators/{YEAR}"),
        _get("/v1/policies/{county_code}/{year}", A_READ, f"/v1/policies/{COUNTY}/{YEAR}"),
        _get("/v1/policies/{county_code}/{year}/default", A_READ, f"/v1/policies/{COUNTY}/{YEAR}/default"),
        _get("/v1/policies/{county_code}/{year}/versions", A_READ, f"/v1/policies/{COUNTY}/{YEAR}/versions"),
        _get("/v1/policies/{county_code}/{year}/versions/{version}", A_READ, f"/v1/policies/{COUNTY}/{YEAR}/versions/1"),
        _get("/v1/evaluations", A_READ, county_code=COUNTY, year=YEAR),
        _get("/v1/evaluations/{run_id}", A_READ, "/v1/evaluations/AUTHZ-R1"),
        _get("/v1/evaluations/{run_id}/enterprises", A_READ, "/v1/evaluations/AUTHZ-R1/enterprises"),
        _get("/v1/evaluations/{run_id}/enterprises/{credit_code}", A_READ, f"/v1/evaluations/AUTHZ-R1/enterprises/{CODE}"),
        _get("/v1/evaluations/{run_id}/clusters", A_READ, "/v1/evaluations/AUTHZ-R1/clusters"),
        _get("/v1/clusters/{county_code}/{year}/ranking", A_READ, f"/v1/clusters/{COUNTY}/{YEAR}/ranking"),
        _get("/v1/dispositions/{credit_code}/{year}", A_READ, f"/v1/dispositions/{CODE}/{YEAR}"),
        _get("/v1/tasks/overdue", A_READ),
        _get("/v1/tasks", A_READ),
        _get("/v1/tasks/{task_id}", A_READ, "/v1/tasks/AUTHZ-T1"),
        _get("/v1/projects/{project_id}", A_READ, "/v1/projects/AUTHZ-P1"),
    ],
    "quota": [
        _get("/v1/counties/{county_code}/policy", Q_READ, f"/v1/counties/{COUNTY}/policy"),
        _get("/v1/releases/{release_id}", Q_READ, "/v1/releases/AUTHZ-COD"),
        _get("/v1/reclamation-projects/{project_id}", Q_READ, "/v1/reclamation-projects/AUTHZ-RC1"),
        _get("/v1/requests/{request_id}", Q_READ, "/v1/requests/AUTHZ-Q1"),
        _get("/v1/requests", Q_READ),
        _get("/v1/counties/{county_code}/rounds", Q_READ, f"/v1/counties/{COUNTY}/rounds"),
        _get("/v1/rounds/{round_id}", Q_READ, "/v1/rounds/AUTHZ-R1"),
        _get("/v1/counties/{county_code}/pool", Q_READ, f"/v1/counties/{COUNTY}/pool"),
        _get("/v1/counties/{county_code}/lots", Q_READ, f"/v1/counties/{COUNTY}/lots"),
        _get("/v1/projects/{project_id}/provenance", Q_READ, "/v1/projects/AUTHZ-P1/provenance"),
        _get("/v1/enterprises/{credit_code}/freed", Q_READ, f"/v1/enterprises/{CODE}/freed"),
        _get("/v1/counties/{county_code}/reconciliation", Q_READ, f"/v1/counties/{COUNTY}/reconciliation"),
    ],
    "ledger": [
        _get("/v1/assets", L_READ),
        _get("/v1/assets/{code}", L_READ, "/v1/assets/COD"),
        _get("/v1/transfers/{transfer_id}", L_READ, "/v1/transfers/AUTHZ-X1"),
        _get("/v1/accounts/{account_id}/balance", L_READ, f"/v1/accounts/{ACCOUNT}/balance"),
        _get("/v1/balances", L_READ, address_prefix=f"county:{COUNTY}"),
        _get("/v1/accounts/{account_id}/entries", L_READ, f"/v1/accounts/{ACCOUNT}/entries"),
        _get("/v1/accounts/{account_id}/pending", L_READ, f"/v1/accounts/{ACCOUNT}/pending"),
        _get("/v1/accounts/{account_id}", L_READ, f"/v1/accounts/{ACCOUNT}"),
        _get("/v1/journal/verify", L_READ),
    ],
    "settlement": [
        _get("/v1/agreements/{agreement_id}", S_READ, "/v1/agreements/AUTHZ-A1"),
        _get("/v1/agreements", S_READ, county=COUNTY),
        _get("/v1/counties/{county}/settlement-policy", S_READ, f"/v1/counties/{COUNTY}/settlement-policy"),
        _get("/v1/counties/{county}/settlement-policy/versions", S_READ,
             f"/v1/counties/{COUNTY}/settlement-policy/versions"),
        _get("/v1/tax-receipts", S_READ),
        _get("/v1/tax-receipts/{receipt_id}", S_READ, "/v1/tax-receipts/AUTHZ-TAX1"),
        _get("/v1/waiting-inputs", S_READ),
        _get("/v1/counties/{county}/periods", S_READ, f"/v1/counties/{COUNTY}/periods"),
        _get("/v1/counties/{county}/periods/{period}/statement", S_READ,
             f"/v1/counties/{COUNTY}/periods/{PERIOD}/statement"),
        _get("/v1/counties/{county}/periods/{period}/statement/export", S_READ,
             f"/v1/counties/{COUNTY}/periods/{PERIOD}/statement/export"),
        _get("/v1/counties/{county}/parties/{party}/position", S_READ,
             f"/v1/counties/{COUNTY}/parties/township:{COUNTY}101/position"),
        _get("/v1/enterprises/{credit_code}/compensation", S_READ, f"/v1/enterprises/{CODE}/compensation"),
    ],
}
# Open without a token, on every service: the probes, the metrics, the API's own documents.
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def app_routes(app) -> set[tuple[str, str]]:
    """(METHOD, path) of every route the app serves, as the OpenAPI document spells paths ({id:path} -> {id}); a
    mount or a route without methods as ("MOUNT"/"ANY", path). Walks included routers (FastAPI wraps them)."""

    def walk(routes):
        for r in routes:
            if hasattr(r, "effective_candidates"):  # an included router (FastAPI >= 0.16x)
                yield from walk(r.effective_candidates())
            else:
                yield r

    out = set()
    for r in walk(app.routes):
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", getattr(r, "path", "") or "")
        if hasattr(r, "routes") and not hasattr(r, "methods"):  # a Mount: whatever it serves has no rule here
            out.add(("MOUNT", path))
            continue
        methods = getattr(r, "methods", None) or {"ANY"}
        out |= {(m, path) for m in methods if m != "HEAD"}  # Starlette adds HEAD to every GET
    return out


def holds(scopes: set[str], needed: tuple[str, ...]) -> bool:
    """The oracle, written independently of shared/auth.py: admin holds everything; a scope is held exactly or,
    for publish:<Event>:<qualifier>, through publish:<Event>."""
    if "admin" in scopes:
        return True
    for s in needed:
        parts = s.split(":")
        if s in scopes or (len(parts) == 3 and f"{parts[0]}:{parts[1]}" in scopes):
            return True
    return False


CALLERS = {None: set(), "not-a-token": set(), **{t: set(spec["scopes"]) for t, spec in PRINCIPALS.items()}}


def _call(client, row: Row, token: str | None):
    headers = auth(token) if token else {}
    url = row.url or row.path
    if row.content is not None:
        return client.request(row.method, url, headers={**headers, "Content-Type": row.content_type},
                              content=row.content, params=row.params)
    return client.request(row.method, url, headers=headers, json=row.json, params=row.params)


@pytest.fixture(scope="module")
def services(kafka_bootstrap, tmp_path_factory):
    d = tmp_path_factory.mktemp("authz")
    with ExitStack() as stack:
        out = {name: stack.enter_context(running_service(name, f"sqlite:///{d / name}.sqlite3", kafka_bootstrap,
                                                         background=False))
               for name in SERVICES}
        # quota's reconciliation reads the ledger's balances over HTTP: this ledger
        from services.quota.application.reconciliation import LedgerBalances

        out["quota"][1].app.state.ledger_balances = LedgerBalances("", "dev-admin-token", client=out["ledger"][1])
        yield out


@pytest.mark.kafka
@pytest.mark.parametrize("service", SERVICES)
def test_the_tables_cover_exactly_the_routes_of_the_app(service, services):
    _, client = services[service]
    served = app_routes(client.app)
    public = {(m, p) for m, p in served if p in PUBLIC}
    in_app = served - public
    writes = {(m, p) for m, p in in_app if m.lower() in WRITE_METHODS}
    in_table = {(r.method, r.path) for r in POLICY[service]}
    assert writes - in_table == set(), "write endpoints without a rule in POLICY"
    assert in_table - writes == set(), "rules for write endpoints that no longer exist"
    reads = in_app - writes
    in_reads = {(r.method, r.path) for r in READS[service]}
    assert reads - in_reads == set(), "endpoints without a rule in READS (or a method no table knows)"
    assert in_reads - reads == set(), "rules for read endpoints that no longer exist"
    # and the OpenAPI document shows no endpoint the app does not serve (nor hides a write behind another path)
    spec = client.app.openapi()
    documented = {(m.upper(), p) for p, item in spec["paths"].items() for m in item if m in WRITE_METHODS | {"get"}}
    assert documented - served == set()


@pytest.mark.kafka
@pytest.mark.parametrize("service", SERVICES)
def test_only_principals_holding_the_scope_get_through(service, services):
    _check_matrix(services[service], POLICY[service])


@pytest.mark.kafka
@pytest.mark.parametrize("service", SERVICES)
def test_only_principals_holding_a_read_scope_read(service, services):
    """A department's token reads nothing of any service; finance:read reads the settlement API only."""
    _check_matrix(services[service], READS[service])


def _check_matrix(service, rows: list[Row]) -> None:
    runtime, client = service
    problems = []
    calls = 0
    for row in rows:
        for token, scopes in CALLERS.items():
            who = PRINCIPALS[token]["principal"] if token in PRINCIPALS else (token or "no token")
            before = fingerprint(runtime.db)
            r = _call(client, row, token)
            calls += 1
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            reason = body.get("reason") if isinstance(body, dict) else None
            got = f"{r.status_code} {reason or ''}".strip()
            if token is None:
                want = "401 missing_token"
            elif token not in PRINCIPALS:
                want = "401 invalid_token"
            elif not holds(scopes, row.scopes):
                want = "403 insufficient_scope"
            else:
                want = None  # authorized: anything but 401/403/5xx
            label = f"{row.method} {row.url or row.path}{' [' + row.variant + ']' if row.variant else ''} as {who}"
            if want is not None and got != want:
                problems.append(f"{label}: {got}, expected {want}")
            if want is None and (r.status_code in (401, 403) or r.status_code >= 500):
                problems.append(f"{label}: {got} ({r.text[:160]}), expected to be let through (holds one of "
                                f"{', '.join(row.scopes)})")
            if 400 <= r.status_code < 500 and (shape := error_shape_problem(r.status_code, r.content)):
                problems.append(f"{label}: {shape}")
            if r.status_code in (401, 403):
                after = fingerprint(runtime.db)
                if after != before:
                    problems.append(f"{label}: refused with {r.status_code} but changed {changed_tables(before, after)}")
    assert calls == len(rows) * len(CALLERS)
    assert not problems, f"{len(problems)} of {calls} calls wrong:\n- " + "\n- ".join(problems)
