"""Crash drill: SIGKILL the real process while a batch is being delivered; nothing is lost."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from appliance.models import Delivery
from tests.support import SCALEOUT
from tests.support.process import start_logged
from tests.support.relay import HOSTNAME, SmtpServer, relay_overrides, smtp_ports
from tests.support.wait import wait_for

COUNT = 60


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    # In the scale-out mode the start-up sweep leaves `sending` rows to their lease (another worker
    # may own them), so there the rows the kill interrupted come back after a short lease.
    lease = {"LEASE_SECONDS": 10} if SCALEOUT else {}
    return relay_overrides(overrides, dns_server, delivery_port, WORKERS=2, SWEEP_INTERVAL=2, **lease)


def test_a_sigkill_mid_batch_loses_nothing_and_duplicates_only_what_was_in_flight(
    app, account, overrides, dns_server, sink_mx, tmp_path
):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink = sink_mx("127.0.0.3", delay=0.05)  # a slow remote keeps a batch in flight
    log = tmp_path / "appliance.log"
    proc = start_logged(overrides, log)
    try:
        ca = Path(overrides["DATA_DIR"]) / "tls" / "ca.pem"
        server = SmtpServer(HOSTNAME, *smtp_ports(overrides["SMTP_LISTEN"]), ca, None)
        username, password = account
        with server.submission() as client:
            client.login(username, password)
            for i in range(COUNT):
                client.sendmail(
                    "shop@shop.test",
                    [f"user{i}@example.test"],
                    f"From: shop@shop.test\r\nSubject: n{i}\r\n\r\nbody {i}\r\n".encode(),
                )
        assert wait_for(lambda: len(sink.messages) >= 15), log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    rows = list(Delivery.select())
    assert len(rows) == COUNT
    in_flight = {d.message_id for d in rows if d.status == "sending"}
    not_done = [d for d in rows if d.status != "delivered"]
    assert not_done, "the kill came too late to interrupt anything"

    proc = start_logged(overrides, log)
    try:
        done = wait_for(lambda: Delivery.select().where(Delivery.status == "delivered").count() == COUNT, timeout=60)
        assert done, log.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()

    received = Counter(m.queue_id for m in sink.messages)
    assert set(received) == {d.message_id for d in rows}
    duplicated = {message_id for message_id, n in received.items() if n > 1}
    assert duplicated <= in_flight
