"""Every service's Alembic revisions create exactly the tables, columns and indexes its tables.py declares
(and no index it no longer declares, e.g. a dropped one)."""
from __future__ import annotations

import importlib

import pytest
from sqlalchemy import inspect

from shared import migrations
from shared.db import Database


@pytest.mark.parametrize("service", ["ledger", "quota", "settlement", "assessment"])
def test_migrations_match_the_table_definitions(tmp_path, service):
    main = importlib.import_module(f"services.{service}.main")
    metadata = importlib.import_module(f"services.{service}.storage.tables").metadata
    db = Database(f"sqlite:///{tmp_path / (service + '.sqlite3')}", service)
    try:
        migrations.upgrade(db, main.MIGRATIONS)
        found = inspect(db.engine)
        assert set(found.get_table_names()) - {"alembic_version"} == set(metadata.tables)
        for name, table in metadata.tables.items():
            cols = {c["name"]: c for c in found.get_columns(name)}
            assert set(cols) == {c.name for c in table.columns}, name
            for c in table.columns:
                assert cols[c.name]["nullable"] == c.nullable or c.primary_key, f"{name}.{c.name}"
            assert {i["name"] for i in found.get_indexes(name)} == {i.name for i in table.indexes}, name
    finally:
        db.dispose()
