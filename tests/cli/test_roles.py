"""`appliance serve --role smtp|web|worker` (DESIGN §5): each process runs its part of the work."""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from pathlib import Path

import pytest

from appliance.models import Message
from tests.support.process import start
from tests.support.relay import relay_overrides, smtp_ports
from tests.support.wait import wait_for


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_an_smtp_front_end_queues_and_a_separate_worker_process_delivers(app, overrides, account, dns_server, sink_mx):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink = sink_mx("127.0.0.3")
    web_port = int(overrides["WEB_LISTEN"].rsplit(":", 1)[1])
    front, banner = start(overrides, "smtp")
    worker = None
    try:
        assert "delivery workers: not run in this process" in banner
        assert "dashboard: not run in this process (--role smtp)" in banner and not listening(web_port)
        ca = Path(overrides["DATA_DIR"]) / "tls" / "ca.pem"
        with smtplib.SMTP("relay.test", smtp_ports(overrides["SMTP_LISTEN"])[0], timeout=20) as client:
            client.starttls(context=ssl.create_default_context(cafile=str(ca)))
            client.login(*account)
            client.sendmail("a@shop.test", ["bob@example.test"], b"From: a@shop.test\r\nSubject: split\r\n\r\nhi\r\n")
        time.sleep(1)  # no worker runs yet: the message must still be waiting
        assert sink.messages == []
        assert [m.status for m in Message.select()] == ["queued"]

        worker, banner = start(overrides, "worker")
        assert "SMTP: not run in this process" in banner and "delivery workers: 2" in banner
        assert wait_for(lambda: sink.messages) and len(sink.messages) == 1
        assert wait_for(lambda: Message.get().status == "delivered")
    finally:
        for proc in (front, worker):
            if proc is not None:
                proc.terminate()
                assert proc.wait(timeout=15) == 0
