"""`appliance backup` and `appliance restore` (DESIGN §4) through the real CLI, with real mail."""

from __future__ import annotations

import hashlib
import io
import json
import smtplib
import sqlite3
import ssl
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from tests.support import ROOT, SCALEOUT
from tests.support.process import process_env, read_banner
from tests.support.relay import smtp_ports
from tests.support.wait import wait_for

sqlite_only = pytest.mark.skipif(SCALEOUT, reason="backs up the embedded SQLite database")


def cli(overrides: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        cwd=ROOT,
        env=process_env(overrides),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def send(server_host: str, port: int, ca: Path, account, count: int, start: int = 0) -> list[str]:
    replies = []
    with smtplib.SMTP(server_host, port, timeout=20) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(ca)))
        client.login(*account)
        for n in range(start, start + count):
            client.mail("orders@shop.test")
            client.rcpt(f"customer{n}@example.test")
            replies.append(client.data(f"From: orders@shop.test\r\nSubject: Order {n}\r\n\r\nThanks\r\n".encode()))
    return replies


def rewrite(source: Path, target: Path, change) -> None:
    """Copy a backup archive member by member; ``change(name, data)`` returns new bytes or None to drop."""
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for member in old:
            data = change(member.name, old.extractfile(member).read())
            if data is not None:
                member.size = len(data)
                new.addfile(member, io.BytesIO(data))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@sqlite_only
def test_a_backup_restored_on_a_fresh_machine_brings_back_mail_accounts_keys_and_tls(
    run_cli, overrides, smtp_server, account, tmp_path
):
    replies = send(smtp_server.host, smtp_server.starttls_port, smtp_server.ca, account, 3)
    assert all(code == 250 for code, _ in replies)
    archive = tmp_path / "nightly.tar.gz"
    result = run_cli("backup", str(archive))
    assert result.exit_code == 0, result.output
    assert "backup written" in result.output and "3 messages, 1 SMTP accounts, 1 domains" in result.output
    assert archive.stat().st_mode & 0o777 == 0o600  # it holds keys and password hashes
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {
        "appliance-backup/manifest.json",
        "appliance-backup/appliance.db",
        "appliance-backup/secret_key",
        "appliance-backup/tls/ca.pem",
        "appliance-backup/tls/server.key",
    } <= names
    assert not any("queue.db" in name for name in names)  # the database is the truth, not the task file

    fresh = {**overrides, "DATA_DIR": str(tmp_path / "new-vm")}
    restored = cli(fresh, "restore", str(archive))
    assert restored.returncode == 0, restored.stderr
    assert "3 messages, 1 SMTP accounts" in restored.stdout
    old_dir, new_dir = Path(overrides["DATA_DIR"]), Path(fresh["DATA_DIR"])
    for name in ("secret_key", "tls/ca.pem", "tls/server.pem", "tls/server.key"):
        assert digest(new_dir / name) == digest(old_dir / name), name
    listed = json.loads(cli(fresh, "messages", "list", "--json").stdout)
    original = json.loads(run_cli("messages", "list", "--json").output)
    assert sorted(m["id"] for m in listed) == sorted(m["id"] for m in original) and len(listed) == 3
    accounts = json.loads(cli(fresh, "accounts", "list", "--json").stdout)
    assert [a["username"] for a in accounts] == [account[0]]


@sqlite_only
def test_an_online_backup_is_consistent_and_restore_waits_until_the_appliance_is_stopped(
    app, overrides, account, tmp_path
):
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=process_env(overrides),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_banner(proc)
        port, ca = smtp_ports(overrides["SMTP_LISTEN"])[0], Path(overrides["DATA_DIR"]) / "tls" / "ca.pem"
        stop, sent = threading.Event(), []

        def pour():
            n = 0
            while not stop.is_set():
                sent.extend(send("relay.test", port, ca, account, 5, start=n))
                n += 5

        sender = threading.Thread(target=pour)
        sender.start()
        assert wait_for(lambda: len(sent) >= 10)
        archive = tmp_path / "online.tar.gz"
        backup = cli(overrides, "backup", str(archive))
        stop.set()
        sender.join(timeout=60)
        assert backup.returncode == 0, backup.stderr

        # The snapshot holds whole messages only: each one with its body and its delivery row.
        with tarfile.open(archive) as tar:
            (tmp_path / "snapshot.db").write_bytes(tar.extractfile("appliance-backup/appliance.db").read())
            manifest = json.loads(tar.extractfile("appliance-backup/manifest.json").read())
        with sqlite3.connect(tmp_path / "snapshot.db") as snapshot:
            messages = snapshot.execute("SELECT count(*) FROM message").fetchone()[0]
            whole = snapshot.execute(
                "SELECT count(*) FROM message m WHERE EXISTS (SELECT 1 FROM message_body b WHERE b.message_id = m.id)"
                " AND (SELECT count(*) FROM delivery d WHERE d.message_id = m.id) = 1"
            ).fetchone()[0]
        assert messages >= 10 and whole == messages == manifest["counts"]["message"]

        refused = cli(overrides, "restore", "--force", str(archive))
        assert refused.returncode == 1 and "the appliance is running" in refused.stderr
        assert "before-restore" not in " ".join(p.name for p in Path(overrides["DATA_DIR"]).iterdir())
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0

    kept = cli(overrides, "restore", str(archive))
    assert kept.returncode == 1 and "already holds data: --force replaces it" in kept.stderr
    done = cli(overrides, "restore", "--force", str(archive))
    assert done.returncode == 0, done.stderr
    aside = Path(done.stdout.split("what it replaced is in ")[1].split("\n")[0])
    assert (aside / "appliance.db").exists() and (aside / "secret_key").exists()
    # With AUTH in microseconds the sender gets well past the list's default page of 50.
    listed = json.loads(cli(overrides, "messages", "list", "--limit", "10000", "--json").stdout)
    assert len(listed) == messages


@sqlite_only
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("not a tar", "is not a whole backup archive"),
        ("truncated", "is not a whole backup archive"),
        ("tampered key", "secret_key does not match its checksum"),
        ("escaping path", "outside appliance-backup/: refused"),
        ("no manifest", "it has no manifest"),
        ("newer version", "was made by a newer version (migrations 9999_from_the_future)"),
        ("missing file", "does not hold the files its manifest lists"),
        ("no such file", "no such file"),
    ],
)
def test_a_damaged_or_foreign_archive_is_refused_and_nothing_changes(
    run_cli, overrides, account, tmp_path, damage, message
):
    good = tmp_path / "good.tar.gz"
    assert run_cli("backup", str(good)).exit_code == 0
    bad = tmp_path / "bad.tar.gz"
    if damage == "not a tar":
        bad.write_bytes(b"hello, this is not a backup\n" * 100)
    elif damage == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "tampered key":
        rewrite(good, bad, lambda name, data: b"another key" if name.endswith("/secret_key") else data)
    elif damage == "escaping path":
        rewrite(good, bad, lambda name, data: data)
        with tarfile.open(bad, "r:gz") as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar]
        with tarfile.open(bad, "w:gz") as tar:
            for member, data in members:
                tar.addfile(member, io.BytesIO(data))
            evil = tarfile.TarInfo("appliance-backup/../../evil")
            evil.size = 4
            tar.addfile(evil, io.BytesIO(b"evil"))
    elif damage == "no manifest":
        rewrite(good, bad, lambda name, data: None if name.endswith("manifest.json") else data)
    elif damage == "newer version":

        def future(name, data):
            if not name.endswith("manifest.json"):
                return data
            manifest = json.loads(data)
            manifest["schema"].append("9999_from_the_future")
            return json.dumps(manifest).encode()

        rewrite(good, bad, future)
    elif damage == "missing file":
        rewrite(good, bad, lambda name, data: None if name.endswith("/secret_key") else data)
    else:
        bad = tmp_path / "absent.tar.gz"
    data_dir = Path(overrides["DATA_DIR"])
    before = sorted(p.name for p in data_dir.iterdir())
    key = digest(data_dir / "secret_key")

    result = run_cli("restore", "--force", str(bad))
    assert result.exit_code == 1 and message in result.output, result.output
    assert sorted(p.name for p in data_dir.iterdir()) == before  # nothing moved, no leftovers
    assert digest(data_dir / "secret_key") == key
    assert not (tmp_path.parent / "evil").exists() and not (data_dir.parent / "evil").exists()
    assert json.loads(run_cli("accounts", "list", "--json").output)  # the data is still there


@pytest.mark.skipif(not SCALEOUT, reason="only the scale-out mode has a PostgreSQL database")
def test_on_postgresql_backup_says_to_use_pg_dump(run_cli, tmp_path):
    result = run_cli("backup", str(tmp_path / "b.tar.gz"))
    assert result.exit_code == 1 and "back it up with pg_dump" in result.output
    assert not (tmp_path / "b.tar.gz").exists()
