"""The one database: unbound until ``init_db``; a connection per thread; migrations at start."""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import operator
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peewee import (
    CharField,
    DatabaseError,
    DatabaseProxy,
    IntegerField,
    PostgresqlDatabase,
    SqliteDatabase,
    TextField,
)
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
    # Checkpoints run on the Checkpointer's own connection; this is only the safety net, so
    # that a commit (and the 250 waiting on it) rarely pays for copying the WAL back.
    "wal_autocheckpoint": 20000,
    # Pages freed by deletes can be given back to the file system (appliance/retention.py runs
    # `PRAGMA incremental_vacuum`). Only a database without tables takes it: a new file gets it
    # here, an older one by migration 0013.
    "auto_vacuum": 2,  # INCREMENTAL
}


def _sqlite(path: str) -> SqliteDatabase:
    # SQLite creates a new file readable by all (0644) and gives its -wal and -shm files the same
    # mode: created here first, all three are 0600. An existing file keeps the mode it has.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return SqliteDatabase(path, pragmas=SQLITE_PRAGMAS)


def make_database(url: str, data_dir: str):
    """Build (unconnected) the database object for DATABASE_URL, or SQLite in DATA_DIR."""
    if not url:
        return _sqlite(str(Path(data_dir) / "appliance.db"))
    if url.startswith(("postgres://", "postgresql://")):
        params = parse_db_url(url)
        name = params.pop("database")
        return PostgresqlDatabase(name, **params)
    if url.startswith("sqlite:///"):
        return _sqlite(url.removeprefix("sqlite:///"))
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

    With a GroupWriter running (``serve`` with SMTP) workers write nothing themselves; in a
    ``--role worker`` process they write claims and outcomes here. Those concern mail already
    stored durably by intake: if a power loss drops the last of them, those deliveries are sent
    again (at-least-once), never lost. WAL frames are written in order, so the next fsync
    (synchronous=FULL) covers them too.
    """
    if database.connect(reuse_if_open=True) and is_sqlite():
        database.execute_sql("PRAGMA synchronous=NORMAL")


@functools.lru_cache(maxsize=32)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})'


def insert_rows(model, rows: list[dict[str, Any]]) -> None:
    """Insert rows (dicts keyed by field name, all with the same keys) with one statement.

    On SQLite one prepared statement runs for every row (no per-row SQL building: this is the
    hot path of intake); elsewhere peewee's multi-row INSERT.
    """
    if not rows:
        return
    bound = model._meta.database  # the proxy, or the database of a migration's bind_ctx
    bound = getattr(bound, "obj", bound)
    if not isinstance(bound, SqliteDatabase):
        model.insert_many(rows).execute()
        return
    fields = [model._meta.fields[name] for name in rows[0]]
    # Fields left out get their model default, as peewee's own INSERT would give them.
    defaults = {
        f: f.default() if callable(f.default) else f.default
        for f in model._meta.sorted_fields
        if f.name not in rows[0] and f.default is not None
    }
    sql = _insert_sql(model._meta.table_name, tuple(f.column_name for f in [*fields, *defaults]))
    tail = tuple(f.db_value(value) for f, value in defaults.items())
    # Text and integer values are bound as they are (the columns' affinity does what db_value
    # would); only the other fields (dates, blobs, foreign keys, booleans) go through db_value.
    get = operator.itemgetter(*(f.name for f in fields))
    convert = [(i, f.db_value) for i, f in enumerate(fields) if type(f) not in _BOUND_AS_IS]
    values = []
    for row in rows:
        value = list(get(row)) if len(fields) > 1 else [get(row)]
        for i, db_value in convert:
            value[i] = db_value(value[i])
        values.append((*value, *tail))
    bound.connection().executemany(sql, values)


_BOUND_AS_IS = (CharField, TextField, IntegerField)


def marks(n: int) -> str:
    """Return ``n`` parameter placeholders in the database's style, comma-separated (for IN (…))."""
    return ", ".join([database.param] * n)


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


# SQLite has one writer at a time, and a thread that finds the database locked sleeps in steps
# of 1 to 100 ms (sqlite3_busy_timeout). Threads of this process therefore queue on a Python lock
# instead, which hands over the moment the previous transaction ends.
_write_lock = threading.RLock()


# What runs once the outermost transaction of this thread commits: one list of (hook, items) per
# open atomic_write level, merged into the level above when a nested one ends well.
_levels = threading.local()


def _open_levels() -> list[list[tuple[Callable[[list[Any]], None], list[Any]]]]:
    levels = getattr(_levels, "stack", None)
    if levels is None:
        levels = _levels.stack = []
    return levels


def _merge(into: list, hook: Callable[[list[Any]], None], items: list[Any]) -> None:
    for entry_hook, entry_items in into:
        if entry_hook is hook:
            entry_items.extend(items)
            return
    into.append((hook, list(items)))


def after_commit(hook: Callable[[list[Any]], None], items: list[Any]) -> None:
    """Call ``hook(items)`` once the transaction open on this thread commits (never if it rolls
    back); the items of every call with the same hook in one transaction reach it in one call.
    Outside a transaction (autocommit) the hook runs at once."""
    levels = _open_levels()
    if not levels:
        _run_hooks([(hook, list(items))])
        return
    _merge(levels[-1], hook, items)


def _run_hooks(hooks: list) -> None:
    for hook, items in hooks:
        try:
            hook(items)
        except Exception:  # what was written is committed; sweeps catch up on what the hook missed
            log.exception("after-commit hook %s failed", getattr(hook, "__name__", hook))


@contextlib.contextmanager
def atomic_write():
    """Run a write transaction; on SQLite one thread at a time, holding the write lock up front.

    Hooks registered with ``after_commit`` inside it run after the outermost one commits."""
    levels = _open_levels()
    levels.append([])
    try:
        if not is_sqlite():
            with database.atomic():
                yield
        else:
            with _write_lock, database.atomic(lock_type="IMMEDIATE"):
                yield
    except BaseException:
        levels.pop()
        raise
    done = levels.pop()
    if levels:
        for hook, items in done:
            _merge(levels[-1], hook, items)
    else:
        _run_hooks(done)


def incremental_vacuum(pages: int) -> None:
    """SQLite: give up to ``pages`` free pages back to the file system, in a transaction of their
    own, holding the process's write lock (the writer waits for this step, never for more).

    The pragma frees one page per result row, and sqlite3's ``execute`` steps a statement without
    columns only once; ``executescript`` steps it to the end (and, outside a transaction, runs it in
    an autocommit transaction of its own)."""
    with _write_lock:
        database.connection().executescript(f"PRAGMA incremental_vacuum({int(pages)})")


WRITE_ERRORS = (DatabaseError, sqlite3.DatabaseError, OSError)

Many = Callable[[list[Any]], list[Any]]  # a job kind: runs several jobs' arguments, one result each
After = Callable[[list[Any]], None]


def run_each(jobs: list[Callable[[], Any]]) -> list[Any]:
    """The job kind of plain zero-argument jobs (``write``)."""
    return [job() for job in jobs]


class _Entry:
    __slots__ = ("many", "arg", "after", "prepare", "future", "loop")

    def __init__(self, many, arg, after, prepare, future, loop):
        self.many, self.arg, self.after, self.prepare = many, arg, after, prepare
        self.future, self.loop = future, loop


class GroupWriter:
    """The one writer thread: runs submitted jobs in shared transactions (group commit).

    A job is ``many([arg])`` for a job kind ``many``; the jobs of one kind that wait together run
    as one call, so a kind can write all its rows with one statement per table. A job's future
    resolves only after the transaction that ran it has committed (SQLite, synchronous=FULL: after
    the fsync), so intake can answer 250 then, while everything waiting at the same moment,
    accepted mail and delivery outcomes alike, shares one commit. ``prepare`` (optional) makes the
    argument on this thread before the transaction; if it raises, only that job fails. After a
    commit each distinct ``after`` hook gets the results of its jobs. Futures of an asyncio
    ``loop`` are resolved with one wake-up of that loop per commit.
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

    def submit(
        self,
        many: Many,
        arg: Any = None,
        *,
        after: After | None = None,
        prepare: Callable[[], Any] | None = None,
        loop=None,
    ):
        """Queue a job; return a future (an asyncio one on ``loop``) for its committed result."""
        future = loop.create_future() if loop is not None else concurrent.futures.Future()
        self._queue.put(_Entry(many, arg, after, prepare, future, loop))
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
            outcomes: list[tuple[_Entry, Any, BaseException | None]] = []
            ready = []
            for entry in batch:
                if entry.prepare is None:
                    ready.append(entry)
                    continue
                try:
                    entry.arg = entry.prepare()
                except Exception as exc:  # noqa: BLE001 — this job's own failure, handed to its caller
                    outcomes.append((entry, None, exc))
                else:
                    ready.append(entry)
            if ready:
                self._write(ready, outcomes)
            self._resolve(outcomes)
            if stopping:
                break
        if not database.is_closed():
            database.close()

    def _write(self, batch: list[_Entry], outcomes: list) -> None:
        kinds: dict[Many, list[_Entry]] = {}
        for entry in batch:
            kinds.setdefault(entry.many, []).append(entry)
        try:
            with atomic_write():
                results = {many: many([e.arg for e in entries]) for many, entries in kinds.items()}
        except Exception as exc:  # noqa: BLE001 — rolled back; the jobs are retried or failed
            if len(batch) > 1:
                # One bad job must not fail its neighbours: run them one by one.
                for entry in batch:
                    self._write([entry], outcomes)
                return
            if isinstance(exc, WRITE_ERRORS):
                log.error("write failed: %s", exc)
                database.close()  # a broken connection is reopened on the next write
            else:
                log.exception("write job %r failed", batch[0].many)
            outcomes.append((batch[0], None, exc))
            return
        self.commits += 1
        hooks: dict[After, list[Any]] = {}
        for many, entries in kinds.items():
            for entry, result in zip(entries, results[many], strict=True):
                outcomes.append((entry, result, None))
                if entry.after is not None:
                    hooks.setdefault(entry.after, []).append(result)
        for after, after_results in hooks.items():
            try:
                after(after_results)
            except Exception:  # what was written is safe; sweeps catch up on what the hook missed
                log.exception("after-commit hook %s failed", getattr(after, "__name__", after))

    @staticmethod
    def _resolve(outcomes: list) -> None:
        by_loop: dict[Any, list] = {}
        for entry, result, exc in outcomes:
            if entry.loop is not None:
                by_loop.setdefault(entry.loop, []).append((entry.future, result, exc))
            elif exc is not None:
                entry.future.set_exception(exc)
            else:
                entry.future.set_result(result)
        for loop, results in by_loop.items():
            loop.call_soon_threadsafe(_settle, results)


def _settle(results: list) -> None:
    """Resolve asyncio futures on their loop (one wake-up for a whole commit)."""
    for future, result, exc in results:
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


class Checkpointer:
    """Copy the WAL back into the database every ``interval`` s on a connection of its own.

    A PASSIVE checkpoint never blocks the writer; done here, it keeps the WAL short without
    a commit paying 30–150 ms for an automatic checkpoint of 4 MB.
    """

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if is_sqlite():
            self._thread = threading.Thread(target=self._run, name="db-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                database.connect(reuse_if_open=True)
                database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except WRITE_ERRORS as exc:  # the next round tries again
                log.warning("WAL checkpoint failed: %s", exc)
        if not database.is_closed():
            database.close()


_writer: GroupWriter | None = None


def use_writer(writer: GroupWriter | None) -> None:
    """Route writes through this running writer (None: run writes in the calling thread)."""
    global _writer
    _writer = writer


def write_many(
    many: Many,
    arg: Any,
    after: After | None = None,
    prepare: Callable[[], Any] | None = None,
) -> concurrent.futures.Future:
    """Run one job of kind ``many`` in a write transaction, on the writer if one runs; ``prepare``
    (optional) makes its argument right before, as GroupWriter.submit's does."""
    if _writer is not None and _writer.running:
        return _writer.submit(many, arg, after=after, prepare=prepare)
    future: concurrent.futures.Future = concurrent.futures.Future()
    if prepare is not None:
        try:
            arg = prepare()
        except Exception as exc:  # noqa: BLE001 — this job's own failure, handed to its caller
            future.set_exception(exc)
            return future
    with atomic_write():
        (result,) = many([arg])
    future.set_result(result)
    if after is not None:
        after([result])
    return future


def write(job: Callable[[], Any], after: After | None = None) -> concurrent.futures.Future:
    """Run ``job`` in a write transaction: on the process's writer if one runs, else right here."""
    return write_many(run_each, job, after)
