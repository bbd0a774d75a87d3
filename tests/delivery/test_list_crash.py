"""Crash drill of a list send (docs/campaigns-and-lists.md#list-addresses): SIGKILL the real process
while its workers are adding a large list's members; after a restart every subscribed member gets
exactly one copy."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from appliance import accounts, lists
from appliance.models import EXPANDING, Delivery, Message
from tests.support import SCALEOUT
from tests.support.filing import mail
from tests.support.process import start_logged
from tests.support.relay import HOSTNAME, SmtpServer, relay_overrides, smtp_ports
from tests.support.wait import wait_for

MEMBERS = 3000


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    # Small batches make the expansion long enough to be killed halfway; a delivery that finds no MX
    # listening is retried a second later. In the scale-out mode the start-up sweep leaves `sending`
    # rows to their lease (another worker may own them): a short one.
    lease = {"LEASE_SECONDS": 10} if SCALEOUT else {}
    return relay_overrides(
        overrides, dns_server, delivery_port, WORKERS=2, SWEEP_INTERVAL=2, LIST_BATCH=5, RETRY_SCHEDULE="1", **lease
    )


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_a_sigkill_halfway_through_a_list_send_gives_every_subscribed_member_exactly_one_copy(
    app, account, shop_domain, overrides, dns_server, sink_mx, tmp_path
):
    with app.app_context():
        made = lists.create("Everyone", [accounts.find(account[0])])
        addresses = [f"member{i:05}@example.test" for i in range(MEMBERS)]
        lists.import_csv(made.id, ("email\n" + "\n".join(addresses) + "\n").encode())
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")  # nothing listens there before the restart
    log = tmp_path / "appliance.log"
    proc = start_logged(overrides, log)
    try:
        server = SmtpServer(
            HOSTNAME, *smtp_ports(overrides["SMTP_LISTEN"]), Path(overrides["DATA_DIR"]) / "tls" / "ca.pem", None
        )
        with server.submission() as client:
            client.login(*account)
            client.sendmail("orders@shop.test", [f"{made.id}@lists.{HOSTNAME}"], mail("For everyone"))
        (message,) = wait_for(lambda: list(Message.select()))

        def halfway() -> bool:
            return Delivery.select().where(Delivery.message == message.id).count() >= 100

        assert wait_for(halfway, timeout=30, interval=0.01), log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()

    added = Delivery.select().where(Delivery.message == message.id).count()
    assert Message.get_by_id(message.id).status == EXPANDING
    assert 0 < added < MEMBERS, "the kill came too late to interrupt the expansion"

    sink = sink_mx("127.0.0.3")
    proc = start_logged(overrides, log)
    try:
        done = wait_for(lambda: len(sink.messages) >= MEMBERS, timeout=180)
        assert done, log.read_text()
        assert wait_for(lambda: Message.get_by_id(message.id).status == "delivered", timeout=30)
    finally:
        stop(proc)

    per_member = Counter(
        rcpt for (rcpt,) in Delivery.select(Delivery.rcpt).where(Delivery.message == message.id).tuples()
    )
    assert sorted(per_member) == addresses and set(per_member.values()) == {1}
    received = Counter(m.rcpts[0] for m in sink.messages)
    assert sorted(received) == addresses and set(received.values()) == {1}
