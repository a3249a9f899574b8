"""A PostgreSQL connection attempt gives up after CONNECT_TIMEOUT_SECONDS (libpq waits as long as TCP does when
packets are dropped: minutes, holding a /readyz probe or a request's worker); a URL's own connect_timeout wins."""
import sqlalchemy

import shared.db as db


def _connect_args(monkeypatch, url: str) -> dict:
    seen: dict = {}
    monkeypatch.setattr(db, "ensure_postgres_database", lambda url: None)
    monkeypatch.setattr(db, "create_engine", lambda url, **kw: seen.update(kw) or sqlalchemy.create_engine(url, **kw))
    db.make_engine(url).dispose()
    return seen["connect_args"]


def test_connections_time_out(monkeypatch):
    assert _connect_args(monkeypatch, "postgresql+psycopg://u:p@127.0.0.1:1/x") == {
        "connect_timeout": db.CONNECT_TIMEOUT_SECONDS}


def test_the_url_says_otherwise(monkeypatch):
    assert _connect_args(monkeypatch, "postgresql+psycopg://u:p@127.0.0.1:1/x?connect_timeout=3") == {}
