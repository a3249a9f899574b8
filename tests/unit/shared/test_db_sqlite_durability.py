"""A service on SQLite (the default of `make run`) commits to disk before it answers: with WAL's synchronous=NORMAL a
power cut could lose a transaction whose outbox rows the relay had already published to Kafka."""
from sqlalchemy import text

from shared.db import Database


def test_every_sqlite_connection_is_wal_and_syncs_each_commit(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'svc.sqlite3'}", "probe")
    try:
        with db.sessions() as s:
            assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert s.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    finally:
        db.dispose()
