"""Fixtures that compose: app → smtp_server → account; everything on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import ssl

import pytest
from hypothesis import settings as hypothesis_settings

from appliance import accounts, create_app, domains
from appliance.cli import cli
from appliance.policy import quotas
from appliance.serve import start_smtp
from tests.support import SCALEOUT
from tests.support.ports import free_port
from tests.support.relay import HOSTNAME, Relay, SmtpServer, smtp_ports, verify_domain

# Fuzzing (tests/smtp/test_fuzz.py): a few examples per property in every run, many on demand with
# `--hypothesis-profile=long`; FUZZ_EXAMPLES=N sets the number for either (not an APPLIANCE_
# variable: those are the appliance's settings).
_FUZZ_EXAMPLES = os.environ.get("FUZZ_EXAMPLES")
hypothesis_settings.register_profile("ci", max_examples=int(_FUZZ_EXAMPLES or 25))
hypothesis_settings.register_profile("long", max_examples=int(_FUZZ_EXAMPLES or 2000))
hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def postgres_server():
    from tests.support.servers import Postgres

    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    from tests.support.servers import Redis

    server = Redis().start()
    yield server
    server.stop()


@pytest.fixture
def scaleout(request) -> dict:
    """DATABASE_URL and QUEUE_URL of a fresh PostgreSQL database and an emptied Redis."""
    import uuid

    postgres, redis = request.getfixturevalue("postgres_server"), request.getfixturevalue("redis_server")
    redis.flush()
    return {"DATABASE_URL": postgres.create_database(f"t_{uuid.uuid4().hex[:12]}"), "QUEUE_URL": redis.url}


@pytest.fixture
def overrides(tmp_path, request) -> dict:
    """Settings for one test: its own DATA_DIR and free loopback ports (and, with SCALEOUT_TESTS=1,
    its own PostgreSQL database and Redis)."""
    ports = {"starttls": free_port(), "tls": free_port(), "mx": free_port()}
    return {
        **(request.getfixturevalue("scaleout") if SCALEOUT else {}),
        "DATA_DIR": str(tmp_path / "data"),
        "HOSTNAME": HOSTNAME,
        "WEB_LISTEN": f"127.0.0.1:{free_port()}",
        "SMTP_LISTEN": (
            f"127.0.0.1:{ports['starttls']}/starttls,127.0.0.1:{ports['tls']}/tls,127.0.0.1:{ports['mx']}/starttls/mx"
        ),
        "SMTP_TIMEOUT": 30,
        # Nothing answers DNS here: no test ever looks up (or sends to) a real domain.
        "DNS_SERVERS": "127.0.0.1:9",
    }


@pytest.fixture
def app(overrides):
    # Each test's database starts its account ids at 1 again: a policy cached for an account of the
    # previous test in this process (POLICY_CACHE_SECONDS) would be another account's; a DNS check
    # still running for the previous test's domain 1 is not one of this test's domain 1.
    quotas.forget_policy()
    domains.forget_checks()
    return create_app(overrides)


@pytest.fixture
def run_cli(app):
    """Invoke the real `appliance` click group against this test's app; return the result."""
    runner = app.test_cli_runner()

    def invoke(*args, input=None):
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def smtp_server(app):
    """The appliance's real SMTP listeners (STARTTLS, implicit TLS, MX) on loopback."""
    service, files = start_smtp(app.config)
    starttls, implicit, mx = smtp_ports(app.config["SMTP_LISTEN"])
    # HOSTNAME "relay.test" is in the certificate; connect by name so verification is real.
    yield SmtpServer(HOSTNAME, starttls, implicit, mx, files.ca, service)
    service.stop()


@pytest.fixture(autouse=True)
def _resolve_test_hostname(monkeypatch):
    """Make relay.test resolve to 127.0.0.1 inside the test process (no /etc/hosts edits)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == HOSTNAME:
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def shop_domain(app):
    """shop.test as a verified sending domain: unverified senders are refused (README, decisions)."""
    with app.app_context():
        return verify_domain("shop.test")


@pytest.fixture
def account(app, shop_domain):
    """A fresh SMTP account: (username, password); it may send as anyone at the verified shop.test."""
    with app.app_context():
        acc, password = accounts.create("Shop")
    return acc.username, password


# -- delivery: a loopback DNS server, remote sinks, the queue's workers, a test clock ----
@pytest.fixture
def dns_server():
    """A DNS server on 127.0.0.1 that the appliance's resolver is pointed at (DNS_SERVERS)."""
    from tests.support.dnsserver import DnsServer

    server = DnsServer().start()
    yield server
    server.stop()


@pytest.fixture
def delivery_port() -> int:
    """The DELIVERY_PORT every sink listens on, each on its own 127.0.0.x address."""
    return free_port()


@pytest.fixture
def tls_ca(tmp_path):
    """A throwaway CA and a certificate for the sinks (names mx.sink.test, localhost, 127.0.0.1)."""
    from appliance import tls

    files = tls.ensure({"TLS_CERT": "", "TLS_KEY": "", "HOSTNAME": "mx.sink.test", "DATA_DIR": str(tmp_path / "sink")})
    return files


@pytest.fixture
def sink_mx(delivery_port, tls_ca):
    """Start aiosmtpd sinks on 127.0.0.x:DELIVERY_PORT: ``sink_mx("127.0.0.3", starttls=True)``."""
    from tests.support.sinks import Sink

    started = []

    def start(ip: str, *, starttls: bool = False, port: int | None = None, **options):
        context = None
        if starttls or options.get("implicit_tls") or options.get("auth"):
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls_ca.cert), str(tls_ca.key))
        sink = Sink(ip, port or delivery_port, tls_context=context, **options).start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def test_clock():
    """Replace appliance.clock with one that only moves when the test says (``advance(seconds)``)."""
    import datetime as dt

    from appliance import clock

    class TestClock:
        def __init__(self):
            self.value = dt.datetime.now(dt.UTC).replace(tzinfo=None)

        def __call__(self):
            return self.value

        def advance(self, seconds: float) -> None:
            self.value += dt.timedelta(seconds=seconds)

    fake = TestClock()
    clock.set_clock(fake)
    yield fake
    clock.set_clock(None)


@pytest.fixture
def relay(app):
    """The appliance's SMTP listeners plus its delivery workers, wired like `appliance serve`."""
    from appliance.serve import QueueService

    workers = QueueService(app.config)
    workers.start()
    service, files = start_smtp(app.config, workers.on_committed)
    starttls, implicit, mx = smtp_ports(app.config["SMTP_LISTEN"])
    yield Relay(SmtpServer(HOSTNAME, starttls, implicit, mx, files.ca, service), workers)
    service.stop()
    workers.stop()
