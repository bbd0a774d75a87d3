"""/metrics: a known mix of outcomes sent over real SMTP to a scripted sink (accept, 4xx, 5xx) shows up in
the counters, read the way Prometheus reads them (prometheus_client's parser); only loopback or the
METRICS_TOKEN bearer may read them."""

from __future__ import annotations

import json
import re
import smtplib
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.models import Delivery
from tests.support import ROOT
from tests.support.relay import relay_overrides, smtp_ports
from tests.support.wait import wait_for

TOKEN = "scrape-token-5Zt"


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    # No periodic sweep: the greylisted recipient stays deferred, and the test clock moves alone.
    return relay_overrides(overrides, dns_server, delivery_port, SWEEP_INTERVAL=3600, METRICS_TOKEN=TOKEN)


@pytest.fixture
def remote(dns_server, sink_mx):
    for domain in ("example.test", "gmail.com"):
        dns_server.mx(domain, (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    return sink_mx("127.0.0.3")


def samples(response) -> dict[tuple[str, tuple], float]:
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def send(smtp, account, rcpts: list[str], *, stream: str = "") -> None:
    headers = f"From: shop@shop.test\r\nTo: {', '.join(rcpts)}\r\nSubject: mix\r\n"
    if stream:
        headers += f"X-Stream: {stream}\r\n"
    with smtp.submission() as client:
        client.login(*account)
        client.sendmail("<>", rcpts, (headers + "\r\nHello\r\n").encode())  # null sender: no DSN to count


def settled() -> bool:
    rows = list(Delivery.select())
    return len(rows) == 4 and all(d.status in ("delivered", "bounced", "deferred") for d in rows)


def test_a_known_mix_of_outcomes_over_smtp_is_what_metrics_count(app, relay, account, remote, test_clock):
    send(relay.smtp, account, ["alice@example.test", "unknown.bob@example.test", "greylist.carol@example.test"])
    send(relay.smtp, account, ["dora@gmail.com"], stream="broadcast")
    with relay.smtp.submission() as client, pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(account[0], "not-the-password")
    assert wait_for(settled)
    test_clock.advance(600)
    expected = {
        ("appliance_messages_accepted_total", (("stream", "transactional"),)): 1.0,
        ("appliance_messages_accepted_total", (("stream", "broadcast"),)): 1.0,
        (
            "appliance_deliveries_total",
            (("outcome", "delivered"), ("provider", "default"), ("stream", "transactional")),
        ): 1.0,
        (
            "appliance_deliveries_total",
            (("outcome", "bounced"), ("provider", "default"), ("stream", "transactional")),
        ): 1.0,
        (
            "appliance_deliveries_total",
            (("outcome", "deferred"), ("provider", "default"), ("stream", "transactional")),
        ): 1.0,
        ("appliance_deliveries_total", (("outcome", "delivered"), ("provider", "gmail"), ("stream", "broadcast"))): 1.0,
        ("appliance_delivery_latency_seconds_count", (("stream", "transactional"),)): 1.0,
        ("appliance_delivery_latency_seconds_count", (("stream", "broadcast"),)): 1.0,
        ("appliance_smtp_sessions_total", (("listener", "submission"),)): 3.0,
        # smtplib tries PLAIN, then LOGIN: two failed attempts in the one connection.
        ("appliance_smtp_auth_failures_total", (("reason", "wrong_password"),)): 2.0,
        ("appliance_queue_depth", (("status", "deferred"),)): 1.0,
        ("appliance_queue_depth", (("status", "queued"),)): 0.0,
        ("appliance_queue_oldest_age_seconds", ()): 600.0,
    }
    client = app.test_client()

    def scraped():  # the outcomes are counted right after their commit, which the test may see first
        found = samples(client.get("/metrics"))
        return {key: found.get(key) for key in expected}

    assert wait_for(lambda: scraped() == expected) or scraped() == expected
    found = samples(client.get("/metrics"))
    counted = {key: value for key, value in found.items() if key[0] == "appliance_deliveries_total"}
    assert len(counted) == 4  # nothing else was counted
    assert found["appliance_smtp_sessions_open", ()] == 0.0
    # Delivered within the frozen clock: in the first bucket of the histogram.
    assert found["appliance_delivery_latency_seconds_bucket", (("le", "0.25"), ("stream", "broadcast"))] == 1.0
    # Every series the Grafana dashboard asks for is one that /metrics gives.
    dashboard = (ROOT / "docs" / "grafana-dashboard.json").read_text()
    asked = set(re.findall(r"appliance_[a-z_]+", dashboard))
    assert asked and asked <= {name for name, _ in found}


def test_only_loopback_or_the_bearer_token_reads_metrics(app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 200  # loopback
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    refused = client.get("/metrics", environ_base=remote)
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "METRICS_TOKEN" in json.loads(refused.data)["detail"]
    assert client.get("/metrics", environ_base=remote, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", environ_base=remote, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and b"appliance_queue_depth" in ok.data
    # A proxy on this host connects from loopback for anyone: a forwarded request needs the token.
    forwarded = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert forwarded.status_code == 401
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:127.0.0.1"}).status_code == 200


def test_without_a_token_metrics_are_for_loopback_only(overrides):
    from appliance import create_app

    client = create_app({**overrides, "METRICS_TOKEN": ""}).test_client()
    refused = client.get(
        "/metrics", environ_base={"REMOTE_ADDR": "192.0.2.1"}, headers={"Authorization": "Bearer anything"}
    )
    assert refused.status_code == 403 and "loopback only" in json.loads(refused.data)["detail"]


def test_in_the_scale_out_roles_each_process_counts_its_own_work_on_metrics_listen(app, overrides, account, remote):
    import urllib.request

    from tests.support.ports import free_port
    from tests.support.process import start

    ports = {"smtp": free_port(), "worker": free_port()}
    front, _ = start({**overrides, "METRICS_LISTEN": f"127.0.0.1:{ports['smtp']}"}, "smtp")
    worker = None
    try:
        worker, _ = start({**overrides, "METRICS_LISTEN": f"127.0.0.1:{ports['worker']}"}, "worker")
        send(_smtp_of(overrides), account, ["alice@example.test"])
        assert wait_for(lambda: [d.status for d in Delivery.select()] == ["delivered"])

        def scrape(role: str) -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[role]}/metrics", timeout=10) as response:
                text = response.read().decode()
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }

        delivered = (
            "appliance_deliveries_total",
            (("outcome", "delivered"), ("provider", "default"), ("stream", "transactional")),
        )
        accepted = ("appliance_messages_accepted_total", (("stream", "transactional"),))
        assert wait_for(lambda: scrape("worker").get(delivered) == 1.0)
        at_front, at_worker = scrape("smtp"), scrape("worker")
        assert at_front[accepted] == 1.0 and at_front["appliance_smtp_sessions_total", (("listener", "submission"),)]
        assert delivered not in at_front and accepted not in at_worker
        # The queue is read from the database: the same wherever it is scraped.
        assert (
            at_front["appliance_queue_depth", (("status", "queued"),)]
            == 0.0
            == at_worker["appliance_queue_depth", (("status", "queued"),)]
        )
        with pytest.raises(urllib.error.HTTPError) as elsewhere:
            urllib.request.urlopen(f"http://127.0.0.1:{ports['smtp']}/", timeout=10)
        assert elsewhere.value.code == 404
    finally:
        for proc in (front, worker):
            if proc is not None:
                proc.terminate()
                assert proc.wait(timeout=15) == 0


def _smtp_of(overrides: dict):
    from tests.support.relay import HOSTNAME, SmtpServer

    starttls, implicit, mx = smtp_ports(overrides["SMTP_LISTEN"])
    return SmtpServer(HOSTNAME, starttls, implicit, mx, Path(overrides["DATA_DIR"]) / "tls" / "ca.pem", None)
