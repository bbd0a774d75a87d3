"""The one database: unbound until ``init_db``; a connection per thread; migrations at start."""

from __future__ import annotations

from pathlib import Path

from peewee import DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import parse as parse_db_url
from playhouse.migrations import Runner

database = DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# WAL + synchronous=FULL: a committed transaction survives power loss, which is what a 250 promises.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 2,  # FULL
    "foreign_keys": 1,
    "busy_timeout": 15000,
    "cache_size": -16000,  # 16 MiB
    "temp_store": 2,  # memory
}


def make_database(url: str, data_dir: str):
    """Build (unconnected) the database object for DATABASE_URL, or SQLite in DATA_DIR."""
    if not url:
        return SqliteDatabase(str(Path(data_dir) / "appliance.db"), pragmas=SQLITE_PRAGMAS)
    if url.startswith(("postgres://", "postgresql://")):
        params = parse_db_url(url)
        name = params.pop("database")
        return PostgresqlDatabase(name, autorollback=True, **params)
    if url.startswith("sqlite:///"):
        return SqliteDatabase(url.removeprefix("sqlite:///"), pragmas=SQLITE_PRAGMAS)
    raise ValueError(f"DATABASE_URL: unsupported scheme in {url!r} (use postgresql:// or sqlite:///)")


def init_db(url: str, data_dir: str) -> None:
    """Bind the global ``database`` to the configured backend."""
    database.initialize(make_database(url, data_dir))


def migrate() -> list[str]:
    """Apply pending numbered migrations from migrations/; return the names applied."""
    with database.connection_context():
        return Runner(database.obj, directory=str(MIGRATIONS_DIR)).up()


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def atomic_write():
    """Open a write transaction; on SQLite take the write lock up front (BEGIN IMMEDIATE)."""
    if is_sqlite():
        return database.atomic(lock_type="IMMEDIATE")
    return database.atomic()
