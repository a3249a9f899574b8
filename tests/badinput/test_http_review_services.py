"""Bad bodies against every service's real app (review of the shared HTTP layer): for every operation that takes a
JSON body, a body over the size limit, a body that is not JSON, the right object sent under another content type
and a lone UTF-16 surrogate each get their own 4xx and reason, never a 5xx, and change nothing. Plus the two
500s found on the way: a lone surrogate reaching the database (ledger POST /v1/balances:query, on SQLite and
PostgreSQL) and an import figure of thousands of digits (assessment POST /v1/imports)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from shared import api
from tests.badinput.support import SERVICES, changed_tables, error_shape_problem, fingerprint
from tests.support.services import ADMIN, running_service

JSON = {**ADMIN, "content-type": "application/json"}
EXPECTED = {
    "too_large": (413, "body_too_large"),
    "not_json": (400, "malformed_json"),
    "not_utf8": (400, "malformed_json"),
    "text_plain": (415, "unsupported_media_type"),
    "lone_surrogate": (422, "invalid_text"),
}


def _bodies() -> dict[str, tuple[bytes, dict]]:
    return {
        "too_large": (b'{"x":"' + b"a" * (api.JSON_BODY_LIMIT + 1) + b'"}', JSON),
        "not_json": (b'{"x":', JSON),
        "not_utf8": (b'{"x":"\xff"}', JSON),
        "text_plain": (b"{}", {**ADMIN, "content-type": "text/plain"}),
        "lone_surrogate": (b'{"x":"\\ud800"}', JSON),
    }


def _path(template: str, params: list[dict]) -> str:
    for p in params:
        if p["in"] == "path":
            value = {"county_code": "320612", "county": "320612", "year": "2026", "period": "2026-03",
                     "version": "1"}.get(p["name"], "x1")
            template = template.replace("{" + p["name"] + "}", value)
    return template


@pytest.mark.kafka
@pytest.mark.parametrize("service", SERVICES)
def test_every_json_operation_refuses_bad_bodies_with_their_own_reason(service, tmp_path, kafka_bootstrap):
    with running_service(service, f"sqlite:///{tmp_path / 'svc.sqlite3'}", kafka_bootstrap,
                         background=False) as (runtime, client):
        client = TestClient(client.app, raise_server_exceptions=False)
        doc = client.get("/openapi.json").json()
        before = fingerprint(runtime.db)
        problems, checked = [], 0
        for template, ops in doc["paths"].items():
            for method, op in ops.items():
                content = (op.get("requestBody") or {}).get("content") or {}
                if "application/json" not in content or len(content) > 1:
                    continue
                path = _path(template, op.get("parameters", []))
                for kind, (body, headers) in _bodies().items():
                    checked += 1
                    r = client.request(method.upper(), path, content=body, headers=headers)
                    got = (r.status_code, r.json().get("reason") if r.status_code < 500 else None)
                    if got != EXPECTED[kind]:
                        problems.append(f"{method.upper()} {template} {kind}: {got} {r.content[:160]!r}")
                    elif problem := error_shape_problem(r.status_code, r.content):
                        problems.append(f"{method.upper()} {template} {kind}: {problem}")
        after = fingerprint(runtime.db)
    assert checked > 0
    assert not problems, "\n".join(problems)
    assert before == after, changed_tables(before, after)


@pytest.mark.kafka
def test_a_lone_surrogate_in_an_account_id_is_a_422_not_a_500_on_both_databases(db_url, kafka_bootstrap):
    """ledger POST /v1/balances:query took the id (a plain list[str]) and the driver failed to encode it: 500."""
    with running_service("ledger", db_url, kafka_bootstrap, background=False) as (_, client):
        client = TestClient(client.app, raise_server_exceptions=False)
        r = client.post("/v1/balances:query", content=b'{"account_ids":["county:320612/pool/COD\\udc80"]}', headers=JSON)
        assert (r.status_code, r.json()["reason"]) == (422, "invalid_text"), r.content
        r = client.post("/v1/balances:query", content=b'{"account_ids":["county:320612/pool/\\ud83d\\ude00"]}',
                        headers=JSON)
        assert (r.status_code, r.json()["reason"]) == (404, "account_not_found"), r.content  # a pair is text


@pytest.mark.kafka
def test_an_import_figure_of_thousands_of_digits_is_a_bad_row_not_a_500(tmp_path, kafka_bootstrap):
    """int() of more than 4,300 digits is a ValueError, not an AmountError: the whole import answered 500."""
    with running_service("assessment", f"sqlite:///{tmp_path / 'a.sqlite3'}", kafka_bootstrap,
                         background=False) as (runtime, client):
        client = TestClient(client.app, raise_server_exceptions=False)
        before = fingerprint(runtime.db)
        from services.assessment.domain.credit_code import make_credit_code

        code = make_credit_code("91320612000000001")
        data = f"统一社会信用代码,年度,用地面积(亩),实缴税金(万元)\n{code},2023,{'1' * 5000},1\n".encode()
        r = client.post("/v1/imports?kind=indicators&department=tax&all_or_nothing=true", content=data,
                        headers={**ADMIN, "content-type": "text/csv"})
        assert r.status_code == 200, r.content[:300]
        report = r.json()
        assert (report["rejected"], report["written"]) == (1, False), report
        assert [p["field"] for b in report["bad_rows"] for p in b["problems"]] == ["land"], report
        assert fingerprint(runtime.db) == before
