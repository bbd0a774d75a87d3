"""The numbered migrations build exactly the schema the models describe (DESIGN §3)."""

from __future__ import annotations

import shutil

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


def test_an_upgrade_gives_untouched_default_provider_groups_the_table_and_keeps_an_admins_figures(tmp_path):
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("0*.py")):
        if path.name < "0010":
            shutil.copy(path, before / path.name)
    db = SqliteDatabase(str(tmp_path / "upgrade.db"))
    Runner(db, directory=str(before)).up()
    earlier = [  # the defaults of the releases before the provider table, yahoo changed by its admin
        ("gmail", 0, "gmail.com\ngooglemail.com", "*.google.com\n*.googlemail.com", 1000, 5),
        ("aol", 1, "aol.com", "mx-aol.*\n*.aol.com", 500, 3),
        ("yahoo", 2, "yahoo.*", "*.yahoodns.net", 42, 3),
        ("outlook", 3, "outlook.*", "*.protection.outlook.com\n*.hotmail.com", 1000, 5),
        ("icloud", 4, "icloud.com", "*.icloud.com", 500, 3),
        ("fastmail", 5, "fastmail.com", "", 100, None),
        ("default", 6, "", "", None, None),
    ]
    for row in earlier:
        db.execute_sql('INSERT INTO "provider_group" ("name", "position", "domain_patterns", "mx_patterns", '
                       '"hourly_cap", "session_cap", "throttle_strikes", "throttle_reply") '
                       "VALUES (?, ?, ?, ?, ?, ?, 0, '')", row)
    db.execute_sql("INSERT INTO \"warmup_plan\" (\"id\", \"enabled\", \"steps\") VALUES (1, 0, ?)",
                   ("1:1000,4:5000,7:10000,11:25000,15:50000,21:",))

    assert Runner(db, directory=str(MIGRATIONS_DIR)).up()[0] == "0010_provider_table"  # then the later ones
    rows = db.execute_sql('SELECT "name", "hourly_cap", "hourly_warm", "daily_cap", "mx_patterns", "stage" '
                          'FROM "provider_group" ORDER BY "position"').fetchall()
    assert [r[0] for r in rows] == ["gmail", "google-workspace", "aol", "yahoo", "outlook", "microsoft-365",
                                    "icloud", "fastmail", "default"]
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["gmail"] == (500, 5000, 50000, "gmail-smtp-in.l.google.com\n*.gmail-smtp-in.l.google.com", "auto")
    assert by_name["yahoo"][:3] == (42, 10000, 100000)  # the admin's hourly figure stays
    assert by_name["outlook"][3] == "*.olc.protection.outlook.com\n*.hotmail.com"
    assert by_name["google-workspace"][:4] == (500, 5000, None, "*.google.com\n*.googlemail.com")
    assert by_name["fastmail"][:3] == (100, None, None)
    steps = db.execute_sql('SELECT "steps" FROM "warmup_plan"').fetchone()[0]
    assert steps == "1:1000,4:5000,7:10000,11:25000,15:50000,21:100000"


def test_an_upgrade_turns_on_incremental_vacuum_and_keeps_the_rows(tmp_path):
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("0*.py")):
        if path.name < "0013":
            shutil.copy(path, before / path.name)
    db = SqliteDatabase(str(tmp_path / "upgrade.db"))
    Runner(db, directory=str(before)).up()
    assert db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 0  # what SQLite gives a file by default
    db.execute_sql("INSERT INTO \"sender\" (\"email\", \"created_at\", \"verified_by\") VALUES ('a@shop.test', "
                   "'2026-01-01 00:00:00', '')")

    assert Runner(db, directory=str(MIGRATIONS_DIR)).up() == ["0013_incremental_vacuum"]
    assert db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    assert db.execute_sql('SELECT "email" FROM "sender"').fetchall() == [("a@shop.test",)]
