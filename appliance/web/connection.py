"""Connection settings of an SMTP account and a loopback test: connect → EHLO → STARTTLS → AUTH."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path

from ..listeners import Listener, parse_listeners

TIMEOUT = 10  # seconds per step; loopback answers in milliseconds


@dataclass
class Port:
    port: int
    mode: str  # starttls | tls
    mx: bool

    @property
    def encryption(self) -> str:
        if self.mode == "tls":
            return "SSL/TLS from the first byte (implicit TLS, 'SMTPS')"
        return "STARTTLS (plain connection, then upgraded to TLS before login)"


@dataclass
class Step:
    name: str
    ok: bool | None  # None: not run
    detail: str

    @property
    def css(self) -> str:
        return {True: "step-ok", False: "step-fail", None: "step-warn"}[self.ok]


def submission_ports(settings: dict) -> list[Port]:
    """List the ports an application can submit mail on (MX-only listeners are for inbound mail)."""
    ports = [Port(lst.port, lst.mode, lst.mx) for lst in parse_listeners(settings["SMTP_LISTEN"])]
    return [p for p in ports if not p.mx] or ports


def _listener_for(settings: dict, port: int) -> Listener | None:
    return next((lst for lst in parse_listeners(settings["SMTP_LISTEN"]) if port in lst.ports), None)


def _trust(settings: dict) -> ssl.SSLContext:
    """Trust the system CAs plus the appliance's own local CA, as a configured client would."""
    context = ssl.create_default_context()
    ca = Path(settings["DATA_DIR"]) / "tls" / "ca.pem"
    if not settings["TLS_CERT"] and ca.exists():
        context.load_verify_locations(cafile=str(ca))
    return context


def _loopback_client(base: type[smtplib.SMTP], address: str):
    """An SMTP client class that dials ``address`` but names (and verifies) HOSTNAME in TLS."""

    class Client(base):
        def _get_socket(self, host, port, timeout):
            return super()._get_socket(address, port, timeout)

    return Client


def _describe_tls(sock: ssl.SSLSocket, hostname: str) -> str:
    return f"Encrypted with {sock.version()} ({sock.cipher()[0]}); the certificate is valid for {hostname} and trusted."


def _tls_failure(exc: Exception, hostname: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS works but the certificate was not accepted: {exc.verify_message}. Clients that "
            f"verify certificates (most do) will refuse it; install a certificate for {hostname}."
        )
    return f"TLS could not be set up: {exc}."


def run(settings: dict, port: int, username: str, password: str) -> list[Step]:
    """Connect to our own listener on ``port`` and try each step a mail client takes."""
    listener = _listener_for(settings, port)
    if listener is None:
        return [Step("Connect", False, f"Port {port} is not in SMTP_LISTEN.")]
    hostname = settings["HOSTNAME"]
    address = listener.host or "127.0.0.1"
    implicit = listener.mode == "tls"
    context = _trust(settings)
    steps: list[Step] = []
    if implicit:
        client = _loopback_client(smtplib.SMTP_SSL, address)(
            local_hostname="connection-test", timeout=TIMEOUT, context=context
        )
    else:
        client = _loopback_client(smtplib.SMTP, address)(local_hostname="connection-test", timeout=TIMEOUT)
    # smtplib names the TLS peer after the constructor's host; set it without connecting yet.
    client._host = hostname
    try:
        try:
            code, banner = client.connect(hostname, port)
        except ssl.SSLError as exc:
            return [Step("Connect", True, f"The port {port} answers."), Step("TLS", False, _tls_failure(exc, hostname))]
        except (OSError, smtplib.SMTPException) as exc:
            return [
                Step(
                    "Connect",
                    False,
                    f"Nothing answers on {address}:{port} ({exc}). Is the appliance running and the port free?",
                )
            ]
        steps.append(Step("Connect", code == 220, f"Port {port} answered: {code} {banner.decode(errors='replace')}"))
        if implicit:
            steps.append(Step("TLS", True, _describe_tls(client.sock, hostname)))
        code, reply = client.ehlo()
        if code != 250:
            steps.append(Step("EHLO", False, f"EHLO was refused: {code} {reply.decode(errors='replace')}"))
            return steps
        features = ", ".join(sorted(f.upper() for f in client.esmtp_features))
        steps.append(Step("EHLO", True, f"The server introduced itself and offers: {features}."))
        if not implicit:
            if not client.has_extn("starttls"):
                steps.append(Step("STARTTLS", False, "The server does not offer STARTTLS on this port."))
                return steps
            try:
                client.starttls(context=context)
                client.ehlo()
            except (ssl.SSLError, smtplib.SMTPException) as exc:
                steps.append(Step("STARTTLS", False, _tls_failure(exc, hostname)))
                return steps
            steps.append(Step("STARTTLS", True, _describe_tls(client.sock, hostname)))
        if not password:
            steps.append(
                Step(
                    "AUTH",
                    None,
                    "Needs the password: the appliance keeps only a hash of it. "
                    "Type it in the form to test the login too.",
                )
            )
            return steps
        try:
            client.login(username, password)
        except smtplib.SMTPAuthenticationError as exc:
            steps.append(
                Step(
                    "AUTH",
                    False,
                    f"Login refused: {exc.smtp_code} "
                    f"{exc.smtp_error.decode(errors='replace')}. Check the username and the SMTP "
                    "password (not the dashboard password); this test connects from "
                    f"{address}, so the account's IP authorization must allow it.",
                )
            )
            return steps
        except smtplib.SMTPException as exc:
            steps.append(Step("AUTH", False, f"Login could not be tried: {exc}."))
            return steps
        steps.append(Step("AUTH", True, f"Logged in as {username}: an application with these settings can send."))
        return steps
    except (OSError, smtplib.SMTPException) as exc:
        steps.append(Step("Connection", False, f"The connection broke off: {exc}."))
        return steps
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
