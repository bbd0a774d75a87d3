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


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
@pytest.mark.skipif(SCALEOUT, reason="the database is PostgreSQL's, not on DATA_DIR's disk")
def test_a_full_disk_gets_452_keeps_what_was_accepted_and_recovers(tmp_path, overrides):
    data_dir = tmp_path / "small"
    data_dir.mkdir()
    if not _mount_tmpfs(data_dir, "4m"):
        pytest.skip("this machine cannot mount tmpfs")
    try:
        overrides["DATA_DIR"] = str(data_dir)
        account = cli(overrides, "accounts", "create", "Shop", "--json")
        cli(overrides, "senders", "add", "a@shop.test", "--verified", "--json")
        proc = start_process(overrides)
        try:
            raw = authenticated_raw(Server(overrides), account["username"], account["password"])
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
            assert _mount_tmpfs(data_dir, "64m", remount=True)
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
        listed = cli(overrides, "messages", "list", "--limit", "1000", "--json")
        assert sorted(m["id"] for m in listed) == sorted(accepted)  # nothing half-stored, nothing lost
        assert all(len(m["recipients"]) == 1 for m in listed)
    finally:
        subprocess.run(["umount", "-l", str(data_dir)], capture_output=True)
