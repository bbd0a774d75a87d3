"""The log: one logfmt line per message event on the running appliance's stderr, with the message id,
account, recipient domain, outcome and reply code; never a password, a body or a full address."""

from __future__ import annotations

import base64
import os
import re
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.models import Delivery, Message
from tests.support import ROOT
from tests.support.process import process_env, read_banner
from tests.support.relay import relay_overrides, smtp_ports
from tests.support.wait import wait_for

PAIR = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)')
BODY_MARKER = "Your-order-secret-7Q2"


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def remote(dns_server, sink_mx):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    return sink_mx("127.0.0.3")


def parse(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in PAIR.findall(line)}


def serve(overrides: dict, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=popen.pop("env", process_env(overrides)),
        stdin=subprocess.DEVNULL,
        text=True,
        **popen,
    )


def send(overrides: dict, account, rcpts: list[str]) -> None:
    ca = Path(overrides["DATA_DIR"]) / "tls" / "ca.pem"
    with smtplib.SMTP("relay.test", smtp_ports(overrides["SMTP_LISTEN"])[0], timeout=20) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(ca)))
        client.login(*account)
        client.sendmail(
            "orders@shop.test",
            rcpts,
            (f"From: orders@shop.test\r\nTo: {', '.join(rcpts)}\r\nSubject: Order 7\r\n\r\n{BODY_MARKER}\r\n").encode(),
        )


def settled() -> bool:
    rows = list(Delivery.select())
    return bool(rows) and all(d.status in ("delivered", "bounced", "deferred") for d in rows)


def test_each_event_of_a_real_send_is_one_logfmt_line_without_secrets(app, overrides, account, remote):
    proc = serve(overrides, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        read_banner(proc)
        send(overrides, account, ["alice@example.test", "unknown.bob@example.test", "greylist.carol@example.test"])
        assert wait_for(settled)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=15)
    every = [parse(line) for line in output.splitlines() if "logger=appliance.mail" in line]
    assert all(line["at"] == "INFO" and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", line["time"]) for line in every)
    message_id = Message.get(Message.mail_from == "orders@shop.test").id
    lines = [line for line in every if line["message_id"] == message_id]
    by_event = {line["event"]: line for line in lines}
    assert [line["event"] for line in lines].count("accepted") == 1
    assert set(by_event) == {"accepted", "delivered", "bounced", "deferred"}, output
    (dsn,) = [line for line in every if line["message_id"] != message_id and line["event"] == "accepted"]
    assert (dsn["via"], dsn["account"]) == ("dsn", "")  # the bounce's notice: the appliance's own mail
    username, password = account
    for line in lines:
        assert line["message_id"] == message_id and line["account"] == username
        assert line["stream"] == "transactional"
    assert by_event["accepted"]["via"] == "smtp" and by_event["accepted"]["domain"] == ""
    assert {k: by_event["delivered"][k] for k in ("domain", "code", "status", "mx")} == {
        "domain": "example.test",
        "code": "250",
        "status": "2.0.0",
        "mx": "mx.example.test",
    }
    assert (by_event["bounced"]["code"], by_event["bounced"]["status"]) == ("550", "5.1.1")
    assert (by_event["deferred"]["code"], by_event["deferred"]["status"]) == ("451", "4.7.1")
    auth = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    for secret in (password, auth, BODY_MARKER, "Order 7", "alice@", "unknown.bob@", "greylist.carol@"):
        assert secret not in output


def test_under_systemd_a_line_starts_with_its_priority_and_has_no_time_of_its_own(app, overrides, account, remote):
    read_end, write_end = os.pipe()
    st = os.fstat(write_end)
    env = {**process_env(overrides), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}  # as systemd sets it
    proc = serve(overrides, env=env, stdout=subprocess.DEVNULL, stderr=write_end)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        try:
            assert wait_for(lambda: smtp_ports(overrides["SMTP_LISTEN"]) and _listening(overrides))
            send(overrides, account, ["alice@example.test"])
            assert wait_for(settled)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        output = stream.read()
    events = [line for line in output.splitlines() if "logger=appliance.mail" in line]
    assert [parse(line)["event"] for line in events] == ["accepted", "delivered"], output
    assert all(line.startswith("<6>at=INFO logger=appliance.mail event=") for line in events)
    assert "time=" not in output


def _listening(overrides: dict) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", smtp_ports(overrides["SMTP_LISTEN"])[0])) == 0
