"""The numbered migrations build exactly the schema the models describe (DESIGN §3)."""

from __future__ import annotations

from peewee import SqliteDatabase
from playhouse.migrations import Runner

from appliance.db import MIGRATIONS_DIR, database
from appliance.models import MODELS


def schema(db: SqliteDatabase) -> dict:
    tables = {}
    for table in db.get_tables():
        if table == "schema_migration":
            continue
        columns = sorted((c.name, c.data_type.upper(), c.null, c.primary_key) for c in db.get_columns(table))
        indexes = sorted((tuple(i.columns), i.unique) for i in db.get_indexes(table))
        fks = sorted((f.column, f.dest_table, f.dest_column) for f in db.get_foreign_keys(table))
        tables[table] = (columns, indexes, fks)
    return tables


def test_migrated_schema_equals_the_models(tmp_path):
    migrated = SqliteDatabase(str(tmp_path / "migrated.db"))
    Runner(migrated, directory=str(MIGRATIONS_DIR)).up()

    from_models = SqliteDatabase(str(tmp_path / "models.db"))
    previous = database.obj
    database.initialize(from_models)
    try:
        from_models.create_tables(MODELS)
    finally:
        database.initialize(previous)
    assert schema(migrated) == schema(from_models)


def test_migrating_twice_applies_nothing_the_second_time(tmp_path):
    db = SqliteDatabase(str(tmp_path / "twice.db"))
    assert Runner(db, directory=str(MIGRATIONS_DIR)).up()
    assert Runner(db, directory=str(MIGRATIONS_DIR)).up() == []
