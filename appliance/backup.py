"""Backup and restore of DATA_DIR: a consistent snapshot of the SQLite database, the secret key, the
TLS files and appliance.toml in one .tar.gz with a manifest of checksums (docs/operations.md).

The backup is taken online: SQLite's backup API copies the database inside one read transaction,
so mail accepted meanwhile is either wholly in the snapshot or not at all. The Huey task file is
left out: the database is the truth and the start-up sweep re-enqueues whatever is due. A restore
checks the whole archive before it touches anything, refuses while an appliance runs on DATA_DIR
(``serve`` holds DATA_DIR/appliance.lock), and moves the files it replaces aside rather than
deleting them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import db

FORMAT = 1
TOP = "appliance-backup"
DATABASE = "appliance.db"
LOCK_FILE = "appliance.lock"
# What a backup holds besides the database, relative to DATA_DIR (those that exist).
FILES = ("secret_key", "appliance.toml")
DIRECTORIES = ("tls",)
# What a restore moves aside besides the database and its WAL and shared-memory files (a stale WAL
# applied to the restored database would corrupt it): the files above and the task file (tasks
# that name the old data's rows).
REPLACED = (*FILES, *DIRECTORIES, "queue.db", "queue.db-wal", "queue.db-shm")
MANIFEST_MAX = 1 << 20
COUNTED = ("message", "delivery", "smtp_account", "domain", "sender", "admin_user", "suppression")


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass
class Restored:
    manifest: dict
    moved_aside: Path | None


@contextlib.contextmanager
def serving(data_dir: str) -> Iterator[None]:
    """Held by every ``serve`` process for its lifetime (shared: roles may share DATA_DIR)."""
    with _lock(data_dir, fcntl.LOCK_SH) as held:
        if not held:
            raise BackupError(f"a restore is running on {data_dir}: start again when it has finished")
        yield


@contextlib.contextmanager
def _lock(data_dir: str, kind: int) -> Iterator[bool]:
    fd = os.open(Path(data_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def default_path(data_dir: str, now: dt.datetime) -> Path:
    return Path(data_dir) / "backups" / f"appliance-{now:%Y%m%dT%H%M%SZ}.tar.gz"


def _sqlite_path() -> Path:
    if not db.is_sqlite():
        raise BackupError(
            "the database is PostgreSQL (DATABASE_URL): back it up with pg_dump; "
            "this command backs up the embedded SQLite database"
        )
    return Path(db.database.obj.database)


def create(settings: dict, target: Path, now: dt.datetime) -> dict:
    """Write a backup of DATA_DIR to ``target`` (mode 0600); return its manifest."""
    source = _sqlite_path()
    data_dir = Path(settings["DATA_DIR"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".backup-") as work:
        snapshot = Path(work) / DATABASE
        with contextlib.closing(sqlite3.connect(source)) as live, contextlib.closing(sqlite3.connect(snapshot)) as copy:
            live.backup(copy)  # every page in one step: one read transaction, a consistent snapshot
        members = {DATABASE: snapshot}
        members |= {name: data_dir / name for name in FILES if (data_dir / name).is_file()}
        for directory in DIRECTORIES:
            for path in sorted((data_dir / directory).rglob("*")) if (data_dir / directory).is_dir() else ():
                if path.is_file():
                    members[path.relative_to(data_dir).as_posix()] = path
        manifest = {
            "format": FORMAT,
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hostname": settings["HOSTNAME"],
            "schema": _schema(snapshot),
            "counts": _counts(snapshot),
            "files": {name: _sha256(path) for name, path in members.items()},
        }
        partial = Path(work) / "backup.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # keys and password hashes
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            _add_bytes(archive, f"{TOP}/manifest.json", json.dumps(manifest, indent=2).encode(), now)
            for name, path in members.items():
                archive.add(path, arcname=f"{TOP}/{name}", recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, target)  # a backup file is whole or absent
    return manifest


def restore(settings: dict, archive_path: Path, now: dt.datetime, force: bool = False) -> Restored:
    """Replace DATA_DIR's database and files with the backup's, after checking all of it."""
    target_db = _sqlite_path()
    data_dir = Path(settings["DATA_DIR"])
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".restore-") as work:
        manifest = _unpack(archive_path, Path(work))
        with _lock(str(data_dir), fcntl.LOCK_EX) as held:
            if not held:
                raise BackupError(
                    f"the appliance is running on {data_dir}: stop it first (systemctl stop appliance), then restore"
                )
            if not force and any(_counts(target_db).values()):
                raise BackupError(
                    f"{target_db} already holds data: --force replaces it "
                    "(what is replaced is kept in DATA_DIR/before-restore-…)"
                )
            db.database.close()
            aside = data_dir / f"before-restore-{now:%Y%m%dT%H%M%SZ}"
            replaced = [target_db.with_name(target_db.name + suffix) for suffix in ("", "-wal", "-shm")]
            replaced += [data_dir / name for name in REPLACED]
            moved = [path for path in replaced if path.exists()]
            if moved:
                aside.mkdir()
            for path in moved:
                os.replace(path, aside / path.name)
            for name in manifest["files"]:
                destination = target_db if name == DATABASE else data_dir / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(Path(work) / name, destination)
    db.migrate()  # a backup of an older version gets this version's schema
    return Restored(manifest, aside if moved else None)


def _unpack(archive_path: Path, work: Path) -> dict:
    """Extract and check the archive into ``work``; return its manifest. Touches nothing else."""
    digests, manifest = {}, None
    try:
        with tarfile.open(archive_path, mode="r:gz") as archive:
            for member in archive:
                name = _member_name(member)
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BackupError(f"the backup holds {member.name!r}, which is not a plain file")
                if name == "manifest.json":
                    manifest = _manifest(archive.extractfile(member).read(MANIFEST_MAX + 1))
                else:
                    digests[name] = _extract(archive.extractfile(member), work / name)
    except FileNotFoundError:
        raise BackupError(f"{archive_path}: no such file") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"{archive_path} is not a whole backup archive ({exc})") from None
    if manifest is None:
        raise BackupError(f"{archive_path} is not a backup of this appliance (it has no manifest)")
    if set(digests) != set(manifest["files"]) or DATABASE not in digests:
        raise BackupError(f"{archive_path} does not hold the files its manifest lists")
    for name, digest in digests.items():
        if digest != manifest["files"][name]:
            raise BackupError(f"{archive_path}: {name} does not match its checksum (the file was changed or damaged)")
    try:
        with contextlib.closing(sqlite3.connect(work / DATABASE)) as snapshot:
            problems = [row[0] for row in snapshot.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        raise BackupError(f"{archive_path}: the database fails SQLite's integrity check: {problems[0]}")
    unknown = set(manifest["schema"]) - {path.stem for path in db.MIGRATIONS_DIR.glob("[0-9]*.py")}
    if unknown:
        raise BackupError(
            f"{archive_path} was made by a newer version (migrations {', '.join(sorted(unknown))}): "
            "upgrade the appliance first"
        )
    return manifest


def _manifest(data: bytes) -> dict:
    try:
        manifest = json.loads(data) if len(data) <= MANIFEST_MAX else None
    except ValueError:
        manifest = None
    if not (
        isinstance(manifest, dict)
        and manifest.get("format") == FORMAT
        and isinstance(manifest.get("files"), dict)
        and isinstance(manifest.get("schema"), list)
    ):
        raise BackupError("the backup's manifest is not one this version reads")
    return manifest


def _extract(source, path: Path) -> str:
    """Copy one archive member to ``path`` (created, mode 0600, synced); return its SHA-256."""
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return digest.hexdigest()


def _member_name(member: tarfile.TarInfo) -> str:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or path.parts[:1] != (TOP,):
        raise BackupError(f"the backup holds {member.name!r}, outside {TOP}/: refused")
    return PurePosixPath(*path.parts[1:]).as_posix() if len(path.parts) > 1 else ""


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, now: dt.datetime) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(now.timestamp()), 0o600
    archive.addfile(info, io.BytesIO(data))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _schema(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM schema_migration ORDER BY name")]


def _counts(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in COUNTED if table in tables
        }


def size_text(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"
