"""What a request meets when the database refuses or is away, whether SQLAlchemy or (the raw COPY and pipeline
paths) psycopg raised it: the caller's value is a 422, a database that does not answer a 503 to retry (with
Retry-After), anything else a 500 with a reason; never a bare text 500."""
from __future__ import annotations

import sqlite3

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from shared.api import create_app
from shared.auth import Authenticator

RAISED = {
    "raw_truncation": psycopg.errors.StringDataRightTruncation("value too long for type character varying(200)"),
    "raw_nul": psycopg.errors.UntranslatableCharacter("invalid byte sequence"),
    "raw_gone": psycopg.OperationalError("server closed the connection unexpectedly"),
    "wrapped_gone": OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused")),
    "raw_too_big": psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"),
    "raw_other": psycopg.errors.InsufficientPrivilege("permission denied for table x"),
    "raw_unique": psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"),
    "sqlite_unique": sqlite3.IntegrityError("UNIQUE constraint failed: releases.release_id"),
    "sqlite_locked": sqlite3.OperationalError("database is locked"),
}


@pytest.fixture
def client():
    app = create_app("dbtest", authenticator=Authenticator({}), ready_checks={}, title="t")

    @app.get("/raise/{kind}")
    def raise_(kind: str):
        raise RAISED[kind]

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("kind, status, reason", [
    ("raw_truncation", 422, "invalid_value"), ("raw_nul", 422, "invalid_value"), ("raw_too_big", 422, "invalid_value"),
    ("raw_gone", 503, "database_unavailable"), ("wrapped_gone", 503, "database_unavailable"),
    ("raw_other", 500, "database_error"),
    # two requests took the same new key at once (raw COPY paths, SQLite's raw executemany): the loser retries
    ("raw_unique", 409, "concurrent_change"), ("sqlite_unique", 409, "concurrent_change"),
    ("sqlite_locked", 503, "database_unavailable"),
])
def test_database_errors_answer_with_a_reason(client, kind, status, reason):
    r = client.get(f"/raise/{kind}")
    assert (r.status_code, r.json()["reason"]) == (status, reason), r.text
    if status == 503:
        assert r.headers["retry-after"] == "5"
