"""The scale-out mode of DESIGN §5 on real servers: PostgreSQL (DATABASE_URL) and Redis (QUEUE_URL),
two SMTP front ends and a separate delivery worker, each its own `appliance serve --role …` process."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import pytest

from appliance import db
from appliance.models import Attempt, Delivery, Message
from tests.support.ports import free_port
from tests.support.process import cli_json, start
from tests.support.relay import relay_overrides, smtp_ports
from tests.support.wait import wait_for


@pytest.fixture
def overrides(overrides, dns_server, delivery_port, scaleout):
    # On PostgreSQL and Redis in every run of the suite (not only with SCALEOUT_TESTS=1).
    return relay_overrides(overrides, dns_server, delivery_port, **scaleout)


def send(port: int, ca: Path, account, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("relay.test", port, timeout=20) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(ca)))
        client.login(*account)
        client.sendmail(
            "orders@shop.test", [rcpt], f"From: orders@shop.test\r\nSubject: {subject}\r\n\r\nhi\r\n".encode()
        )


def test_the_app_runs_on_postgresql_and_redis(app):
    assert not db.is_sqlite()
    assert app.config["QUEUE_URL"].startswith("redis://")
    from appliance import queue

    assert type(queue.make_huey(app.config)).__name__ == "PriorityRedisHuey"


def test_two_smtp_front_ends_and_a_worker_process_share_postgresql_and_redis(
    app, overrides, account, dns_server, sink_mx, run_cli
):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink = sink_mx("127.0.0.3")
    second = {**overrides, "SMTP_LISTEN": f"127.0.0.1:{free_port()}/starttls", "WEB_LISTEN": f"127.0.0.1:{free_port()}"}
    ca = Path(overrides["DATA_DIR"]) / "tls" / "ca.pem"
    procs = []
    try:
        for settings in (overrides, second):  # behind a load balancer these would share one address
            proc, banner = start(settings, "smtp")
            procs.append(proc)
        send(smtp_ports(overrides["SMTP_LISTEN"])[0], ca, account, "ann@example.test", "one")
        send(smtp_ports(second["SMTP_LISTEN"])[0], ca, account, "bob@example.test", "two")
        assert sorted(m.subject for m in Message.select()) == ["one", "two"]
        assert {d.status for d in Delivery.select()} == {"queued"}  # no worker yet

        proc, banner = start(overrides, "worker")
        procs.append(proc)
        assert wait_for(lambda: len(sink.messages) == 2), sink.messages
        assert sorted(r for m in sink.messages for r in m.rcpts) == ["ann@example.test", "bob@example.test"]
        assert wait_for(lambda: {m.status for m in Message.select()} == {"delivered"})
        attempts = list(Attempt.select())
        assert len(attempts) == 2 and {a.code for a in attempts} == {250}
        listed = cli_json(run_cli("messages", "list", "--json"))
        assert sorted(m["status"] for m in listed) == ["delivered", "delivered"]
    finally:
        for proc in procs:
            proc.terminate()
            assert proc.wait(timeout=15) == 0


def test_a_bounce_on_postgresql_is_recorded_suppressed_and_answered_with_a_dsn(
    app, overrides, account, dns_server, sink_mx
):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    dns_server.mx("shop.test", (10, "mx.shop.test"))
    dns_server.a("mx.shop.test", "127.0.0.9")
    sink_mx("127.0.0.3")
    sender_mx = sink_mx("127.0.0.9")
    ca = Path(overrides["DATA_DIR"]) / "tls" / "ca.pem"
    proc, _ = start(overrides, "all")
    try:
        send(smtp_ports(overrides["SMTP_LISTEN"])[0], ca, account, "unknown.user@example.test", "invoice")
        assert wait_for(lambda: sender_mx.messages), "no DSN arrived"
        (row,) = Delivery.select().where(Delivery.rcpt == "unknown.user@example.test")
        assert row.status == "bounced" and row.last_code == 550
        dsn = sender_mx.messages[0]
        assert dsn.rcpts == ["orders@shop.test"] and b"multipart/report" in dsn.data
        from appliance.models import Suppression

        assert Suppression.get(Suppression.address == "unknown.user@example.test").source == "bounce"
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
