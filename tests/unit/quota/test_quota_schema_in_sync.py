"""The Alembic revisions create exactly the tables, columns and indexes tables.py declares."""
from __future__ import annotations

from sqlalchemy import inspect

from services.quota.main import MIGRATIONS
from services.quota.storage.tables import metadata
from shared import migrations
from shared.db import Database


def test_migrations_match_the_table_definitions(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'quota.sqlite3'}", "quota")
    migrations.upgrade(db, MIGRATIONS)
    found = inspect(db.engine)
    assert set(found.get_table_names()) - {"alembic_version"} == set(metadata.tables)
    for name, table in metadata.tables.items():
        cols = {c["name"]: c for c in found.get_columns(name)}
        assert set(cols) == {c.name for c in table.columns}, name
        for c in table.columns:
            assert cols[c.name]["nullable"] == c.nullable or c.primary_key, f"{name}.{c.name}"
        assert {i["name"] for i in found.get_indexes(name)} >= {i.name for i in table.indexes}, name
    db.dispose()
