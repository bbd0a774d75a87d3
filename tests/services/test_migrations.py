"""The numbered migrations build exactly the schema the models describe (DESIGN §3)."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def _migrated_up_to(tmp_path: Path, first_left_out: str) -> SqliteDatabase:
    """A database as a release before ``first_left_out`` (a migration's number) left it."""
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("0*.py")):
        if path.name < first_left_out:
            shutil.copy(path, before / path.name)
    db = SqliteDatabase(str(tmp_path / "upgrade.db"))
    Runner(db, directory=str(before)).up()
    return db


def test_migrating_twice_applies_nothing_the_second_time(tmp_path):
    db = SqliteDatabase(str(tmp_path / "twice.db"))
    assert Runner(db, directory=str(MIGRATIONS_DIR)).up()
    assert Runner(db, directory=str(MIGRATIONS_DIR)).up() == []


def test_an_upgrade_gives_untouched_default_provider_groups_the_table_and_keeps_an_admins_figures(tmp_path):
    db = _migrated_up_to(tmp_path, "0010")
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
        db.execute_sql(
            'INSERT INTO "provider_group" ("name", "position", "domain_patterns", "mx_patterns", '
            '"hourly_cap", "session_cap", "throttle_strikes", "throttle_reply") '
            "VALUES (?, ?, ?, ?, ?, ?, 0, '')",
            row,
        )
    db.execute_sql(
        'INSERT INTO "warmup_plan" ("id", "enabled", "steps") VALUES (1, 0, ?)',
        ("1:1000,4:5000,7:10000,11:25000,15:50000,21:",),
    )

    assert Runner(db, directory=str(MIGRATIONS_DIR)).up()[0] == "0010_provider_table"  # then the later ones
    rows = db.execute_sql(
        'SELECT "name", "hourly_cap", "hourly_warm", "daily_cap", "mx_patterns", "stage" '
        'FROM "provider_group" ORDER BY "position"'
    ).fetchall()
    assert [r[0] for r in rows] == [
        "gmail",
        "google-workspace",
        "aol",
        "yahoo",
        "outlook",
        "microsoft-365",
        "icloud",
        "fastmail",
        "default",
    ]
    by_name = {r[0]: r[1:] for r in rows}
    assert by_name["gmail"] == (500, 5000, 50000, "gmail-smtp-in.l.google.com\n*.gmail-smtp-in.l.google.com", "auto")
    assert by_name["yahoo"][:3] == (42, 10000, 100000)  # the admin's hourly figure stays
    assert by_name["outlook"][3] == "*.olc.protection.outlook.com\n*.hotmail.com"
    assert by_name["google-workspace"][:4] == (500, 5000, None, "*.google.com\n*.googlemail.com")
    assert by_name["fastmail"][:3] == (100, None, None)
    steps = db.execute_sql('SELECT "steps" FROM "warmup_plan"').fetchone()[0]
    assert steps == "1:1000,4:5000,7:10000,11:25000,15:50000,21:100000"


def test_the_event_count_backfill_of_an_upgrade_equals_a_rebuild(tmp_path):
    from appliance import analytics, events
    from appliance.models import Delivery, Event, EventCount, EventDay, LinkDay, Message
    from appliance.policy import sending

    db = _migrated_up_to(tmp_path, "0014")
    db.execute_sql(
        'INSERT INTO "message" ("id", "direction", "status", "mail_from", "rcpt_count", '
        '"from_header", "subject", "message_id_header", "size", "priority", "client_ip", '
        '"client_helo", "tls", "received_at", "stream", "track_opens", "track_clicks") '
        "VALUES ('01A', 'outbound', 'sent', '', 2, '', '', '', 0, 3, '', '', '', "
        "'2025-03-10 09:05:00', 'broadcast', 1, 1)"
    )
    for rcpt, status in (("ann@gmail.com", "delivered"), ("bob@example.test", "suppressed")):
        db.execute_sql(
            'INSERT INTO "delivery" ("message_id", "rcpt", "domain", "status", "priority", '
            '"attempts", "next_attempt_at", "last_reply", "updated_at") '
            "VALUES ('01A', ?, ?, ?, 3, 0, '2025-03-10 09:05:00', '', '2025-03-10 09:05:00')",
            (rcpt, rcpt.split("@")[1], status),
        )
    for type_, at, details in (
        ("delivered", "09:06", "{}"),
        ("opened", "10:30", '{"machine":false}'),
        ("opened", "11:30", '{"machine":false}'),
        ("opened", "11:31", '{"machine":true}'),
    ):
        db.execute_sql(
            'INSERT INTO "event" ("message_id", "recipient", "type", "at", "details") '
            "VALUES ('01A', 'ann@gmail.com', ?, ?, ?)",
            (type_, f"2025-03-10 {at}:00", details),
        )

    assert Runner(db, directory=str(MIGRATIONS_DIR)).up()[0] == "0014_event_counts"  # then the later ones
    query = (
        'SELECT "received", "hour", "account", "stream", "provider", "metric", "count", "uniques" FROM "event_count"'
    )
    backfilled = sorted(db.execute_sql(query).fetchall())
    assert [(r[1][11:13], r[4], r[5], r[6], r[7]) for r in backfilled] == [
        ("09", "gmail", "delivered", 1, 0),
        ("09", "gmail", "sent", 1, 0),
        ("10", "gmail", "opened", 1, 1),
        ("11", "gmail", "machine_opened", 1, 0),
        ("11", "gmail", "opened", 1, 0),
    ]
    days = 'SELECT "received", "day", "account", "stream", "provider", "metric", "count", "uniques" FROM "event_day"'
    by_day = sorted(db.execute_sql(days).fetchall())  # migration 0026's, from event_count
    assert [(r[1][:10], r[5], r[6], r[7]) for r in by_day] == [
        ("2025-03-10", "delivered", 1, 0),
        ("2025-03-10", "machine_opened", 1, 0),
        ("2025-03-10", "opened", 2, 1),
        ("2025-03-10", "sent", 1, 0),
    ]
    with db.atomic(), db.bind_ctx([Message, Delivery, Event, EventCount, EventDay, LinkDay]):
        events.rebuild_rollups(analytics.provider_names(list(sending.DEFAULT_GROUPS)))
    assert sorted(db.execute_sql(query).fetchall()) == backfilled
    assert sorted(db.execute_sql(days).fetchall()) == by_day


def test_an_upgrade_turns_on_incremental_vacuum_and_keeps_the_rows(tmp_path):
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("0*.py")):
        if path.name < "0013":
            shutil.copy(path, before / path.name)
    db = SqliteDatabase(str(tmp_path / "upgrade.db"))
    Runner(db, directory=str(before)).up()
    assert db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 0  # what SQLite gives a file by default
    db.execute_sql(
        'INSERT INTO "sender" ("email", "created_at", "verified_by") VALUES (\'a@shop.test\', '
        "'2026-01-01 00:00:00', '')"
    )

    assert Runner(db, directory=str(MIGRATIONS_DIR)).up()[0] == "0013_incremental_vacuum"  # then the later ones
    assert db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    assert db.execute_sql('SELECT "email" FROM "sender"').fetchall() == [("a@shop.test",)]
