"""Retention: an SQLite database made before this release gets auto_vacuum=INCREMENTAL, so that
the pages freed by purges can go back to the file system (`PRAGMA incremental_vacuum`). The mode
of a database with tables changes only with a VACUUM, which rewrites the whole file once (it needs
as much free disk as the file takes, and holds the database for as long as it runs). A database
made by this release has the mode from its creation (appliance/db.py), and PostgreSQL needs
nothing: it reuses the space of deleted rows."""

from peewee import SqliteDatabase

atomic = False  # VACUUM cannot run inside a transaction

INCREMENTAL = 2


def up(migrator, db):
    if not isinstance(db, SqliteDatabase):
        return
    if db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
        return
    db.execute_sql("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute_sql("VACUUM")
