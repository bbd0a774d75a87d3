"""The one database: unbound until ``init_db``; a connection per thread; migrations at start."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peewee import DatabaseError, DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import parse as parse_db_url
from playhouse.migrations import Runner

log = logging.getLogger(__name__)

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


def connect_worker() -> None:
    """Open this delivery worker thread's connection, committing without an fsync (SQLite).

    Workers only record outcomes of mail already stored durably by intake: if a power loss drops
    their last commits, those deliveries are simply sent again (at-least-once), never lost. WAL
    frames are written in order, so the next fsync by intake (synchronous=FULL) covers them too.
    """
    if database.connect(reuse_if_open=True) and is_sqlite():
        database.execute_sql("PRAGMA synchronous=NORMAL")


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


# SQLite has one writer at a time, and a thread that finds the database locked sleeps in steps
# of 1 to 100 ms (sqlite3_busy_timeout). Threads of this process therefore queue on a Python lock
# instead, which hands over the moment the previous transaction ends.
_write_lock = threading.RLock()


@contextlib.contextmanager
def atomic_write():
    """Run a write transaction; on SQLite one thread at a time, holding the write lock up front."""
    if not is_sqlite():
        with database.atomic():
            yield
        return
    with _write_lock, database.atomic(lock_type="IMMEDIATE"):
        yield


WRITE_ERRORS = (DatabaseError, sqlite3.DatabaseError, OSError)

Job = Callable[[], Any]
After = Callable[[list[Any]], None]


class GroupWriter:
    """The one writer thread: runs submitted jobs in shared transactions (group commit).

    A job's future resolves only after the transaction that ran it has committed (on SQLite with
    synchronous=FULL: after the fsync), so intake can send its 250 then, while everything that
    was waiting at the same moment, accepted mail and delivery outcomes alike, shares one commit.
    After a commit, each distinct ``after`` hook is called once with the results of its jobs.
    """

    def __init__(self, max_batch: int = 64):
        self.max_batch = max_batch
        self.commits = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def submit(self, job: Job, after: After | None = None) -> concurrent.futures.Future:
        """Queue ``job``; the future gives its result once committed, or the database error."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((job, after, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch, stopping = [first], False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._write(batch)
            if stopping:
                break
        if not database.is_closed():
            database.close()

    def _write(self, batch: list) -> None:
        try:
            with atomic_write():
                results = [job() for job, _, _ in batch]
        except WRITE_ERRORS as exc:
            if len(batch) > 1:
                # One bad job must not fail its neighbours: run them one by one.
                for one in batch:
                    self._write([one])
                return
            log.error("write failed: %s", exc)
            database.close()  # a broken connection is reopened on the next write
            batch[0][2].set_exception(exc)
            return
        self.commits += 1
        hooks: dict[After, list[Any]] = {}
        for (_, after, future), result in zip(batch, results, strict=True):
            future.set_result(result)
            if after is not None:
                hooks.setdefault(after, []).append(result)
        for after, after_results in hooks.items():
            try:
                after(after_results)
            except Exception:  # what was written is safe; sweeps catch up on what the hook missed
                log.exception("after-commit hook %s failed", getattr(after, "__name__", after))


_writer: GroupWriter | None = None


def use_writer(writer: GroupWriter | None) -> None:
    """Route ``write`` through this running writer (None: run writes in the calling thread)."""
    global _writer
    _writer = writer


def write(job: Job, after: After | None = None) -> concurrent.futures.Future:
    """Run ``job`` in a write transaction: on the process's writer if one runs, else right here."""
    if _writer is not None and _writer.running:
        return _writer.submit(job, after)
    future: concurrent.futures.Future = concurrent.futures.Future()
    with atomic_write():
        result = job()
    future.set_result(result)
    if after is not None:
        after([result])
    return future
