"""Fixtures that compose: app → smtp_server → account; everything on 127.0.0.1."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import accounts, create_app
from appliance.cli import cli
from appliance.serve import start_smtp

HOSTNAME = "relay.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def overrides(tmp_path) -> dict:
    """Settings for one test: its own DATA_DIR and free loopback ports."""
    ports = {"starttls": free_port(), "tls": free_port(), "mx": free_port()}
    return {
        "DATA_DIR": str(tmp_path / "data"),
        "HOSTNAME": HOSTNAME,
        "WEB_LISTEN": f"127.0.0.1:{free_port()}",
        "SMTP_LISTEN": (
            f"127.0.0.1:{ports['starttls']}/starttls,127.0.0.1:{ports['tls']}/tls,"
            f"127.0.0.1:{ports['mx']}/starttls/mx"
        ),
        "SMTP_TIMEOUT": 30,
        # Nothing answers DNS here: no test ever looks up (or sends to) a real domain.
        "DNS_SERVERS": "127.0.0.1:9",
    }


@pytest.fixture
def app(overrides):
    return create_app(overrides)


@pytest.fixture
def run_cli(app):
    """Invoke the real `appliance` click group against this test's app; return the result."""
    runner = app.test_cli_runner()

    def invoke(*args, input=None):
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


@dataclass
class SmtpServer:
    host: str
    starttls_port: int
    tls_port: int
    mx_port: int
    ca: Path
    service: object

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts only the appliance's generated CA (hostname checked)."""
        return ssl.create_default_context(cafile=str(self.ca))

    def submission(self, *, source_ip: str = "127.0.0.1", starttls: bool = True) -> smtplib.SMTP:
        client = smtplib.SMTP(self.host, self.starttls_port, local_hostname="client.test",
                              source_address=(source_ip, 0), timeout=20)
        client.ehlo()
        if starttls:
            client.starttls(context=self.client_context())
            client.ehlo()
        return client

    def implicit(self, *, source_ip: str = "127.0.0.1") -> smtplib.SMTP_SSL:
        client = smtplib.SMTP_SSL(self.host, self.tls_port, local_hostname="client.test",
                                  source_address=(source_ip, 0), context=self.client_context(), timeout=20)
        client.ehlo()
        return client


def _ports(spec: str) -> list[int]:
    return [int(part.split(":")[1].split("/")[0]) for part in spec.split(",")]


@pytest.fixture
def smtp_server(app):
    """The appliance's real SMTP listeners (STARTTLS, implicit TLS, MX) on loopback."""
    service, files = start_smtp(app.config)
    starttls, implicit, mx = _ports(app.config["SMTP_LISTEN"])
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
def account(app):
    """A fresh SMTP account: (username, password)."""
    with app.app_context():
        acc, password = accounts.create("Shop")
    return acc.username, password


def process_env(overrides: dict) -> dict:
    """Environment for running the appliance as a separate process with these settings."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update({f"APPLIANCE_{k}": str(v) for k, v in overrides.items()})
    return env


def cli_json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)
