"""The shared HTTP layer against bad input (review of shared/api.py and shared/amounts.py): a body's size is
limited, lone surrogates are refused at the door, unreadable JSON and a wrong content type say what is wrong,
a 422 does not grow with the number of errors, and a stream that fails after its headers counts as a 5xx."""
from __future__ import annotations

import pytest
from fastapi import Depends, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import BaseModel, ConfigDict, Field

from shared import api
from shared.amounts import AmountError, parse_amount
from shared.api import create_app, lone_surrogate
from shared.auth import Authenticator, Principal, principal

TOKEN = {"Authorization": "Bearer t"}


def _authenticator() -> Authenticator:
    return Authenticator({"t": Principal("tester", frozenset({"admin"}))})


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Item]


class BoundedBatch(BaseModel):  # as the ledger's batches are: a list with a length limit
    items: list[Item] = Field(max_length=10_000)


@pytest.fixture
def app():
    app = create_app("review", authenticator=_authenticator(), ready_checks={}, title="t")
    seen: list = []
    app.state.seen = seen

    @app.post("/v1/batch")
    def batch(body: Batch, _=Depends(principal)):
        seen.append(body)
        return {"n": len(body.items)}

    @app.post("/v1/bounded")
    def bounded(body: BoundedBatch, _=Depends(principal)):
        return {"n": len(body.items)}

    @app.post("/v1/file", openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}})
    async def file(request: Request, _=Depends(principal)):
        return {"bytes": len(await request.body())}

    @app.get("/v1/export")
    def export():
        def rows():
            yield b"a,b\r\n"
            raise RuntimeError("the database went away half way")

        return StreamingResponse(rows(), media_type="text/csv")

    return app


def test_a_json_body_over_the_limit_is_413_before_it_is_read(app, monkeypatch):
    monkeypatch.setattr(api, "JSON_BODY_LIMIT", 1000)
    client = TestClient(app)
    big = b'{"items":[' + b'{"name":"x"},' * 200 + b'{"name":"x"}]}'
    r = client.post("/v1/batch", content=big, headers={**TOKEN, "content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json()["reason"] == "body_too_large" and r.json()["details"] == {"limit": 1000}
    assert app.state.seen == []


def test_a_chunked_json_body_without_a_length_is_cut_at_the_limit(app, monkeypatch):
    monkeypatch.setattr(api, "JSON_BODY_LIMIT", 1000)
    client = TestClient(app)

    def chunks():
        yield b'{"items":['
        for _ in range(300):
            yield b'{"name":"x"},'
        yield b'{"name":"x"}]}'

    r = client.post("/v1/batch", content=chunks(), headers={**TOKEN, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["reason"] == "body_too_large"


def test_the_default_limit_takes_a_10_mb_json_array_to_its_422_and_refuses_20_mb_unread(app):
    client = TestClient(app)
    ten_mb = b'{"items":[' + b"1," * 5_000_000 + b"1]}"
    r = client.post("/v1/bounded", content=ten_mb, headers={**TOKEN, "content-type": "application/json"})
    assert r.status_code == 422 and len(r.content) < 2_000  # under the limit: a short refusal
    twenty_mb = b'{"items":[' + b"1," * 10_000_000 + b"1]}"
    r = client.post("/v1/bounded", content=twenty_mb, headers={**TOKEN, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["reason"] == "body_too_large"


def test_a_route_that_takes_files_has_the_larger_limit(app, monkeypatch):
    monkeypatch.setattr(api, "JSON_BODY_LIMIT", 1000)
    monkeypatch.setattr(api, "FILE_BODY_LIMIT", 5000)
    client = TestClient(app)
    r = client.post("/v1/file", content=b"x" * 4000, headers={**TOKEN, "content-type": "text/csv"})
    assert r.status_code == 200 and r.json() == {"bytes": 4000}
    r = client.post("/v1/file", content=b"x" * 6000, headers={**TOKEN, "content-type": "text/csv"})
    assert r.status_code == 413 and r.json()["reason"] == "body_too_large"


def test_without_a_token_a_large_body_is_still_401(app, monkeypatch):
    monkeypatch.setattr(api, "JSON_BODY_LIMIT", 10)
    r = TestClient(app).post("/v1/batch", json={"items": [{"name": "x"}]})
    assert r.status_code == 401 and r.json()["reason"] == "missing_token"


@pytest.mark.parametrize("text, lone", [
    (rb'"\ud800"', True), (rb'"a\udc00b"', True), (rb'"\uD83D"', True), (rb'"\ud800\ud800\udc00"', True),
    (rb'"\ud83d\ude00"', False), (rb'"\\ud800"', False), (rb'"\\\ud800"', True), (rb'"\u00e9"', False),
    (b'"plain"', False),
])
def test_lone_surrogates_are_found_and_pairs_and_escaped_backslashes_are_not(text, lone):
    assert lone_surrogate(text) is lone


def test_a_lone_surrogate_in_a_json_string_is_422_invalid_text_and_a_pair_is_taken(app):
    client = TestClient(app)
    h = {**TOKEN, "content-type": "application/json"}
    r = client.post("/v1/batch", content=rb'{"items":[{"name":"a\ud800"}]}', headers=h)
    assert r.status_code == 422 and r.json()["reason"] == "invalid_text"
    assert app.state.seen == []
    r = client.post("/v1/batch", content=rb'{"items":[{"name":"\ud83d\ude00"}]}', headers=h)
    assert r.status_code == 200 and app.state.seen[0].items[0].name == "\U0001F600"


@pytest.mark.parametrize("body, what", [
    (b'{"items":[}', "Expecting value at character 10"),
    (b'{"items":[{"name":"\xff"}]}', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"items":' + b"9" * 5000 + b"}", "too many digits"),
])
def test_a_body_that_is_not_json_is_400_malformed_json_saying_why(app, body, what):
    r = TestClient(app).post("/v1/batch", content=body, headers={**TOKEN, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["reason"] == "malformed_json" and what in r.json()["message"], r.json()


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_object_sent_as_another_content_type_is_415(app, ctype):
    headers = {**TOKEN, **({"content-type": ctype} if ctype else {})}
    r = TestClient(app).post("/v1/batch", content=b'{"items":[]}', headers=headers)
    assert r.status_code == 415, r.text
    assert r.json()["reason"] == "unsupported_media_type"


def test_a_missing_body_is_still_a_422_invalid_request(app):
    r = TestClient(app).post("/v1/batch", headers=TOKEN)
    assert r.status_code == 422 and r.json()["reason"] == "invalid_request"


def test_a_422_lists_a_bounded_number_of_errors(app):
    body = b'{"items":[' + b"{}," * 9_000 + b"{}]}"  # 27 KB, 9,001 errors
    r = TestClient(app).post("/v1/batch", content=body, headers={**TOKEN, "content-type": "application/json"})
    assert r.status_code == 422
    doc = r.json()
    assert doc["reason"] == "invalid_request" and doc["error_count"] == 9_001
    assert len(doc["details"]) == api.MAX_DETAILS and doc["message"].endswith("and 8991 more")
    assert len(r.content) < 10_000, len(r.content)  # was 1 MB


def test_an_invented_long_key_is_not_echoed_whole(app):
    key = "k" * 100_000
    r = TestClient(app).post("/v1/batch", json={"items": [], key: 1}, headers=TOKEN)
    assert r.status_code == 422 and len(r.content) < 2_000


def _count(status: str) -> float:
    return REGISTRY.get_sample_value("countypool_http_requests_total", {
        "service": "review", "method": "GET", "route": "/v1/export", "status": status}) or 0.0


def test_a_stream_that_fails_after_its_headers_is_counted_as_a_500(app):
    before_ok, before_failed = _count("200"), _count("500")
    with pytest.raises(RuntimeError):  # the client sees the response cut off, never a complete 200
        TestClient(app).get("/v1/export")
    assert _count("500") == before_failed + 1 and _count("200") == before_ok


@pytest.mark.parametrize("text, reason", [
    ("1" * 5000, "amount_too_large"), ("-" + "9" * 10_000, "amount_too_large"),
    ("0." + "0" * 5000 + "1", "amount_exceeds_scale"), ("1" * 4400 + ".12345", "amount_exceeds_scale"),
])
def test_an_amount_of_thousands_of_digits_is_an_amount_error_not_a_value_error(text, reason):
    # int() of more than 4,300 digits is a plain ValueError: an assessment import row with such a figure was a 500
    with pytest.raises(AmountError) as e:
        parse_amount(text, 4, allow_negative=True)
    assert e.value.reason == reason
    assert len(str(e.value)) < 300


def test_trailing_zeros_do_not_count_as_digits():
    assert parse_amount("1." + "0" * 5000, 4) == 10_000
    assert parse_amount("0." + "0" * 5000, 4, allow_zero=True) == 0
    assert parse_amount("12.5000000", 4) == 125_000
