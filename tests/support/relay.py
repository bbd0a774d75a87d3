"""The appliance under test as its SMTP clients see it, and the settings that route its mail to the
tests' DNS server and sinks."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path

from appliance import domains

HOSTNAME = "relay.test"


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
        client = smtplib.SMTP(
            self.host, self.starttls_port, local_hostname="client.test", source_address=(source_ip, 0), timeout=20
        )
        client.ehlo()
        if starttls:
            client.starttls(context=self.client_context())
            client.ehlo()
        return client

    def implicit(self, *, source_ip: str = "127.0.0.1") -> smtplib.SMTP_SSL:
        client = smtplib.SMTP_SSL(
            self.host,
            self.tls_port,
            local_hostname="client.test",
            source_address=(source_ip, 0),
            context=self.client_context(),
            timeout=20,
        )
        client.ehlo()
        return client


def smtp_ports(spec: str) -> list[int]:
    return [int(part.split(":")[1].split("/")[0]) for part in spec.split(",")]


def verify_domain(name: str):
    """Make ``name`` a verified sending domain, as if its DKIM record had been found in DNS."""

    domain = domains.add(name)
    domain.verified = True
    domain.save()
    return domain


def relay_overrides(overrides: dict, dns_server, delivery_port: int, **extra) -> dict:
    """Settings that route outbound mail to the test's DNS server and sinks (for `overrides`)."""
    return {
        **overrides,
        "DNS_SERVERS": dns_server.spec,
        "DELIVERY_PORT": delivery_port,
        "DNS_TIMEOUT": 1,
        "WORKERS": 2,
        "WORKER_POLL_INTERVAL": 0.05,
        "CONNECT_TIMEOUT": 5,
        "COMMAND_TIMEOUT": 10,
        **extra,
    }


@dataclass
class Relay:
    smtp: SmtpServer
    workers: object  # appliance.serve.QueueService

    @property
    def queue(self):
        return self.workers.rt
