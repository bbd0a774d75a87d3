"""A 250 is a promise: durable before the reply, shared commits, clean failures."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import peewee
import pytest
import requests

from appliance import intake
from appliance.models import Delivery, Message
from tests.support import ROOT, SCALEOUT
from tests.support.process import process_env, read_banner
from tests.support.smtputil import authenticated_raw


def start_process(overrides: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=process_env(overrides),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    read_banner(proc)
    return proc


def proc_output(proc) -> str:
    proc.terminate()
    return proc.stdout.read()


def cli(overrides: dict, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        cwd=ROOT,
        env=process_env(overrides),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


class Server:  # the shape authenticated_raw needs, for a server in another process
    def __init__(self, overrides):
        self.starttls_port = int(overrides["SMTP_LISTEN"].split(",")[0].split(":")[1].split("/")[0])
        self.ca = Path(overrides["DATA_DIR"]) / "tls" / "ca.pem"

    def client_context(self):
        import ssl

        return ssl.create_default_context(cafile=str(self.ca))


def test_a_message_answered_250_survives_sigkill_right_after_the_reply(overrides):
    account = cli(overrides, "accounts", "create", "Shop", "--json")
    cli(overrides, "senders", "add", "a@shop.test", "--verified", "--json")
    proc = start_process(overrides)
    try:
        raw = authenticated_raw(Server(overrides), account["username"], account["password"])
        raw.cmd("MAIL FROM:<a@shop.test>")
        raw.cmd("RCPT TO:<b@example.test>")
        raw.cmd("DATA")
        raw.send(b"From: a@shop.test\r\nSubject: kept\r\n\r\n" + b"payload line\r\n" * 500 + b".\r\n")
        code, text = raw.reply()
        os.kill(proc.pid, signal.SIGKILL)  # no chance to flush anything after the 250
        proc.wait(timeout=10)
        assert code == 250
        message_id = text.removeprefix("Ok: queued as ")
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = start_process(overrides)  # the restart finds it
    try:
        shown = cli(overrides, "messages", "show", message_id, "--json")
        assert shown["subject"] == "kept" and [r["address"] for r in shown["recipients"]] == ["b@example.test"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _incoming(n: int) -> intake.Incoming:
    return intake.prepare(
        f"From: a@shop.test\r\nSubject: m{n}\r\n\r\nbody".encode(),
        mail_from="a@shop.test",
        rcpts=[f"r{n}@example.test"],
        hostname="relay.test",
        client_ip="127.0.0.1",
        client_helo="c",
        tls="",
        username=None,
        account_id=None,
        account_priority=3,
    )


def _accept_all(committer: intake.GroupCommitter, items: list[intake.Incoming]) -> list:
    """Offer every message to the committer before its writer runs, then start it; return each
    message's outcome: its id, or the StorageError it got."""

    async def run() -> list:
        tasks = [asyncio.create_task(committer.accept(lambda item=item: item)) for item in items]
        await asyncio.sleep(0)  # every accept() has queued its job by now
        committer.start()
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        return asyncio.run(run())
    finally:
        committer.stop()


def test_messages_waiting_together_share_one_commit(app):
    batches = []
    committer = intake.GroupCommitter(max_batch=64, on_committed=batches.append)
    ids = _accept_all(committer, [_incoming(n) for n in range(10)])
    assert batches == [ids]  # one transaction, one fsync, for all ten
    assert committer.writer.commits == 1
    with app.app_context():
        assert Message.select().count() == 10 and Delivery.select().count() == 10


def test_one_bad_message_does_not_fail_the_others_in_its_batch(app, monkeypatch):
    real_store_many = intake.store_many

    def store_many(items):
        if any(item.summary["subject"] == "m3" for item in items):
            raise peewee.IntegrityError("bad row")
        return real_store_many(items)

    monkeypatch.setattr(intake, "store_many", store_many)
    outcomes = _accept_all(intake.GroupCommitter(), [_incoming(n) for n in range(6)])
    shown = [o.reply if isinstance(o, intake.StorageError) else bool(o) for o in outcomes]
    assert shown == [True, True, True, "451 4.3.0 Temporary local problem, try later", True, True]


def _mount_tmpfs(path: Path, size: str, remount: bool = False) -> bool:
    args = ["mount", "-t", "tmpfs", "-o", ("remount," if remount else "") + f"size={size}", "tmpfs", str(path)]
    return subprocess.run(args, capture_output=True).returncode == 0


NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
SQLITE_ONLY = pytest.mark.skipif(SCALEOUT, reason="the database is PostgreSQL's, not on DATA_DIR's disk")


@pytest.fixture
def small_disk(tmp_path, overrides):
    """DATA_DIR on a 4 MiB tmpfs, with an account (its CLI JSON is yielded) that may send as
    a@shop.test; ``_mount_tmpfs(DATA_DIR, "64m", remount=True)`` makes room again."""
    data_dir = tmp_path / "small"
    data_dir.mkdir()
    if not _mount_tmpfs(data_dir, "4m"):
        pytest.skip("this machine cannot mount tmpfs")
    try:
        overrides["DATA_DIR"] = str(data_dir)
        account = cli(overrides, "accounts", "create", "Shop", "--json")
        cli(overrides, "senders", "add", "a@shop.test", "--verified", "--json")
        yield account
    finally:
        subprocess.run(["umount", "-l", str(data_dir)], capture_output=True)


def _stored_exactly(overrides: dict, accepted: list[str]) -> None:
    listed = cli(overrides, "messages", "list", "--limit", "1000", "--json")
    assert sorted(m["id"] for m in listed) == sorted(accepted)  # nothing half-stored, nothing lost
    assert all(len(m["recipients"]) == 1 for m in listed)


@NEEDS_ROOT
@SQLITE_ONLY
def test_a_full_disk_gets_452_keeps_what_was_accepted_and_recovers(overrides, small_disk):
    proc = start_process(overrides)
    try:
        raw = authenticated_raw(Server(overrides), small_disk["username"], small_disk["password"])
        body = b"From: a@shop.test\r\nSubject: filler\r\n\r\n" + (b"z" * 998 + b"\r\n") * 200
        accepted, refusal = [], None
        for _ in range(40):
            raw.cmd("MAIL FROM:<a@shop.test>")
            raw.cmd("RCPT TO:<b@example.test>")
            raw.cmd("DATA")
            raw.send(body + b".\r\n")
            code, text = raw.reply()
            if code != 250:
                refusal = (code, text)
                break
            accepted.append(text.removeprefix("Ok: queued as "))
        assert refusal == (452, "4.3.1 Insufficient system storage"), proc_output(proc)
        assert accepted, "the disk should hold a few messages before filling up"
        assert _mount_tmpfs(Path(overrides["DATA_DIR"]), "64m", remount=True)
        time.sleep(0.2)
        raw.cmd("RSET")
        raw.cmd("MAIL FROM:<a@shop.test>")
        raw.cmd("RCPT TO:<b@example.test>")
        raw.cmd("DATA")
        raw.send(b"From: a@shop.test\r\nSubject: after\r\n\r\nroom again\r\n.\r\n")
        code, text = raw.reply()
        assert code == 250
        accepted.append(text.removeprefix("Ok: queued as "))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    _stored_exactly(overrides, accepted)


@NEEDS_ROOT
@SQLITE_ONLY
def test_a_full_disk_gets_the_api_a_503_storage_full_and_it_recovers(overrides, small_disk):
    key = cli(overrides, "api-keys", "create", small_disk["username"], "--json")["key"]
    proc = start_process(overrides)
    url = f"http://{overrides['WEB_LISTEN']}/api/v1/messages"
    mail = {"from": "a@shop.test", "to": ["b@example.test"], "subject": "filler", "text": ("z" * 998 + "\n") * 200}
    try:
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {key}"
            accepted, refusal = [], None
            for _ in range(40):
                answer = http.post(url, json=mail, timeout=30)
                if answer.status_code != 202:
                    refusal = answer
                    break
                accepted.append(answer.json()["id"])
            assert refusal is not None and refusal.status_code == 503, proc_output(proc)
            assert refusal.headers["Content-Type"] == "application/problem+json" and "Retry-After" in refusal.headers
            assert refusal.json()["reason"] == "storage-full"
            assert refusal.json()["smtp_reply"] == "452 4.3.1 Insufficient system storage"
            assert accepted, "the disk should hold a few messages before filling up"
            # The dashboard meanwhile: its page, or a 503 saying why (a new connection's pragmas may fail too)
            page = requests.get(f"http://{overrides['WEB_LISTEN']}/login", timeout=30)
            assert page.status_code in (200, 503), page.text
            assert _mount_tmpfs(Path(overrides["DATA_DIR"]), "64m", remount=True)
            again = http.post(url, json=mail | {"subject": "after", "text": "room again"}, timeout=30)
            assert again.status_code == 202
            accepted.append(again.json()["id"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    _stored_exactly(overrides, accepted)
