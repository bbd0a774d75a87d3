"""ACME against a real ACME server (Debian's pebble, tests/support/pebble.py) that validates HTTP-01 for
real: it looks HOSTNAME up in the tests' DNS server and fetches the challenge from ACME_HTTP_LISTEN.

First issuance on a running appliance, the renewal at two thirds of the lifetime that swaps the
certificate under it (an SMTP client verifying against pebble's root sees the new serial, no
restart), a failing challenge that keeps the old certificate and raises the alert, the backoff and
the CA's Retry-After, and `appliance tls status|renew` through the real CLI."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import smtplib
import ssl
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from appliance import certificates, create_app, tls
from appliance.config import ConfigError
from appliance.doctor import OK, WARN, check_certificate
from appliance.models import Alert
from appliance.serve import start_acme, start_https, start_smtp
from tests.support import ROOT
from tests.support.dnsserver import DnsServer
from tests.support.pebble import PEBBLE, Pebble
from tests.support.ports import free_port
from tests.support.process import process_env
from tests.support.relay import HOSTNAME, smtp_ports
from tests.support.wait import wait_for

pytestmark = pytest.mark.skipif(
    not PEBBLE.exists(), reason="/usr/bin/pebble is missing (Debian package pebble; scripts/test.sh installs it)"
)


@pytest.fixture(scope="session")
def pebble(tmp_path_factory):
    """One pebble per pytest process (each xdist worker its own), on its own loopback ports."""
    dns = DnsServer().start()
    server = Pebble(tmp_path_factory.mktemp("pebble"), dns).start()
    yield server
    server.stop()
    dns.stop()


@pytest.fixture
def overrides(overrides, pebble):
    """The test's settings with ACME on, against pebble; HOSTNAME resolves to 127.0.0.1 in pebble's DNS."""
    pebble.dns.records.pop((pebble.dns._key(HOSTNAME), "A"), None)
    pebble.dns.a(HOSTNAME, "127.0.0.1")
    return {
        **overrides,
        "ACME_EMAIL": "postmaster@relay.test",
        "ACME_DIRECTORY": pebble.directory,
        "ACME_CA_FILE": str(pebble.ca_file),  # the directory's HTTPS certificate; the code verifies it
        "ACME_HTTP_LISTEN": f"127.0.0.1:{pebble.http_port}",  # where pebble fetches the challenges
        "WEB_TLS_LISTEN": f"127.0.0.1:{free_port()}",
    }


@pytest.fixture
def fast(monkeypatch):
    """Look at the certificate files (tls) and at the renewal (certificates) often."""
    monkeypatch.setattr(tls, "CHECK_INTERVAL", 0.1)
    monkeypatch.setattr(certificates, "CHECK_INTERVAL", 0.1)


class Appliance:
    """The parts of `appliance serve` that serve TLS, in this process (so the test clock reaches them)."""

    def __init__(self, app):
        self.settings = app.config
        live = tls.LiveContext(tls.ensure(app.config))
        self.smtp, _ = start_smtp(app.config, live=live)
        self.https, _ = start_https(app, app.config["WEB_TLS_LISTEN"], live)
        self.acme = start_acme(app.config)
        self.starttls_port = smtp_ports(app.config["SMTP_LISTEN"])[0]

    def stop(self) -> None:
        self.acme.stop()
        self.https.stop()
        self.smtp.stop()


@pytest.fixture
def appliance(app, fast):
    running = Appliance(app)
    yield running
    running.stop()


def smtp_serial(port: int, root: Path) -> int | None:
    """The serial of the certificate a new STARTTLS session gets, verified against ``root`` for
    HOSTNAME (None: it does not verify)."""
    with smtplib.SMTP(HOSTNAME, port, local_hostname="client.test", timeout=10) as client:
        try:
            client.starttls(context=ssl.create_default_context(cafile=str(root)))
        except ssl.SSLCertVerificationError:
            return None
        der = client.sock.getpeercert(binary_form=True)
        assert client.noop()[0] == 250
    return x509.load_der_x509_certificate(der).serial_number


def _serial_of_pair(settings) -> int:
    return certificates.served(settings).serial_number


def test_first_issuance_on_a_running_appliance_then_renewal_at_two_thirds_swaps_it(app, appliance, pebble, test_clock):
    settings = app.config
    # Until the first issuance the generated local-CA pair is served; the renewer orders at once.
    first = wait_for(lambda: smtp_serial(appliance.starttls_port, pebble.root), timeout=30)
    assert first, pebble.output()
    assert first == _serial_of_pair(settings)
    cert = certificates.served(settings)
    assert certificates.names(cert) == [HOSTNAME] and certificates.issuer(cert).startswith("Pebble Intermediate")
    # The account key and the key in the pair: 0600, in DATA_DIR.
    acme_dir = Path(settings["DATA_DIR"]) / "acme"
    for name in ("account.key", "certificate.pem"):
        assert stat.S_IMODE((acme_dir / name).stat().st_mode) == 0o600, name
    # The HTTPS dashboard serves it too, with HSTS now that the certificate is a trusted one.
    context = ssl.create_default_context(cafile=str(pebble.root))
    with urllib.request.urlopen(
        f"https://{HOSTNAME}:{settings['WEB_TLS_LISTEN'].split(':')[1]}/login", context=context
    ) as r:
        assert r.status == 200 and r.headers["Strict-Transport-Security"]

    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    renew_at = certificates.renewal_time(cert)
    assert renew_at == cert.not_valid_before_utc.replace(tzinfo=None) + lifetime * 2 / 3
    test_clock.value = renew_at - dt.timedelta(minutes=1)
    assert certificates.due(settings, test_clock.value) is None
    open_session = smtplib.SMTP(HOSTNAME, appliance.starttls_port, local_hostname="client.test", timeout=10)
    open_session.starttls(context=ssl.create_default_context(cafile=str(pebble.root)))

    test_clock.value = renew_at + dt.timedelta(seconds=1)  # two thirds have passed: the renewer orders
    second = wait_for(lambda: (s := smtp_serial(appliance.starttls_port, pebble.root)) != first and s, timeout=30)
    test_clock.value = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the new certificate is not due
    assert second and second != first, pebble.output()
    # The session opened before goes on with the certificate it started with.
    assert x509.load_der_x509_certificate(open_session.sock.getpeercert(binary_form=True)).serial_number == first
    assert open_session.noop()[0] == 250
    open_session.quit()
    state = certificates.load_state(settings)
    assert state.failures == 0 and state.last_error == "" and state.last_success


def test_a_failing_challenge_keeps_the_old_certificate_raises_the_alert_and_backs_off(
    app, pebble, fast, monkeypatch, test_clock
):
    settings = app.config
    running = Appliance(app)
    try:
        first = wait_for(lambda: smtp_serial(running.starttls_port, pebble.root), timeout=30)
        assert first, pebble.output()
        monkeypatch.setattr(certificates, "CHECK_INTERVAL", 3600)  # from here on the test makes the looks
        running.acme.stop()
        running.acme = start_acme(settings)  # its first look finds nothing due
        # HOSTNAME now points where nothing answers port 80: the CA cannot fetch the challenge.
        pebble.dns.records[(pebble.dns._key(HOSTNAME), "A")] = ["127.0.0.2"]
        now = certificates.renewal_time(certificates.served(settings)) + dt.timedelta(seconds=1)
        test_clock.value = now

        assert certificates.check(settings) is None
        state = certificates.load_state(settings)
        assert state.failures == 1 and "could not fetch" in state.last_error and HOSTNAME in state.last_error
        assert dt.datetime.fromisoformat(state.retry_at) == now + dt.timedelta(seconds=certificates.BACKOFF_FIRST)
        with app.app_context():
            alert = Alert.get(Alert.kind == certificates.ALERT)
        assert alert.subject == HOSTNAME and "stays in use" in alert.text and "appliance tls renew" in alert.text
        # The old certificate is still the one served, to new sessions too.
        assert smtp_serial(running.starttls_port, pebble.root) == first == _serial_of_pair(settings)

        # Backing off: a look before retry_at orders nothing; after it, the next failure doubles the wait.
        test_clock.advance(certificates.BACKOFF_FIRST - 1)
        assert certificates.check(settings) is None and certificates.load_state(settings).failures == 1
        test_clock.advance(1)
        assert certificates.check(settings) is None
        state = certificates.load_state(settings)
        assert state.failures == 2
        assert dt.datetime.fromisoformat(state.retry_at) == test_clock.value + dt.timedelta(
            seconds=2 * certificates.BACKOFF_FIRST
        )
        with app.app_context():
            assert Alert.get(Alert.kind == certificates.ALERT).count == 2  # folded into the open alert

        # The DNS fixed, the next look after the wait renews and clears the error.
        pebble.dns.records[(pebble.dns._key(HOSTNAME), "A")] = ["127.0.0.1"]
        test_clock.advance(2 * certificates.BACKOFF_FIRST)
        assert certificates.check(settings) is not None
        state = certificates.load_state(settings)
        assert state.failures == 0 and state.last_error == "" and state.retry_at is None
        assert wait_for(lambda: smtp_serial(running.starttls_port, pebble.root) not in (None, first), timeout=10)
    finally:
        running.stop()


class _RateLimited(http.server.BaseHTTPRequestHandler):
    """An ACME server that answers every request with the rateLimited problem and a Retry-After."""

    def do_GET(self):
        body = json.dumps(
            {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many certificates for relay.test"}
        ).encode()
        self.send_response(429)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Retry-After", "7200")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_rate_limit_answer_is_respected_beyond_the_backoff(overrides, test_clock):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _RateLimited)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = create_app({**overrides, "ACME_DIRECTORY": f"http://127.0.0.1:{server.server_port}/directory"})
        with app.app_context(), pytest.raises(certificates.AcmeError, match="rate limit.*too many certificates"):
            certificates.renew(app.config)
    finally:
        server.shutdown()
        server.server_close()
    state = certificates.load_state(app.config)
    assert dt.datetime.fromisoformat(state.retry_at) == test_clock.value + dt.timedelta(seconds=7200)
    assert certificates.check(app.config) is None and certificates.load_state(app.config).failures == 1


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the redirect itself is the answer looked at


@pytest.mark.parametrize("where", ["untrusted", "unreachable"])
def test_a_directory_that_cannot_be_used_is_said_in_a_sentence(overrides, pebble, where):
    if where == "untrusted":  # pebble's HTTPS without ACME_CA_FILE: certifi's CAs do not know its CA
        overrides = {**overrides, "ACME_CA_FILE": ""}
        expected = f"the certificate of {pebble.directory} is not trusted .*set ACME_CA_FILE"
    else:
        overrides = {**overrides, "ACME_DIRECTORY": f"https://127.0.0.1:{free_port()}/dir"}
        expected = "cannot reach ACME_DIRECTORY https://127.0.0.1:"
    app = create_app(overrides)
    with app.app_context(), pytest.raises(certificates.AcmeError, match=expected):
        certificates.renew(app.config)
    assert certificates.load_state(app.config).failures == 1


def _start(overrides: dict, log: Path) -> subprocess.Popen:
    """Start app.py with its output in ``log``; return once its banner is printed."""
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=process_env(overrides),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )

    def banner() -> str:
        if proc.poll() is not None:
            raise AssertionError(f"the appliance did not start (exit {proc.returncode}):\n{log.read_text()}")
        text = log.read_text()
        return text if ("first admin login" in text or "  admins:" in text) else ""

    assert wait_for(banner, timeout=60), log.read_text()
    return proc


def _cli(overrides: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("appliance")), *args],
        cwd=ROOT,
        env=process_env(overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_and_renew_through_the_cli_against_a_running_appliance_process(overrides, pebble, tmp_path):
    proc = _start(overrides, tmp_path / "appliance.log")
    try:
        text = (tmp_path / "appliance.log").read_text()
        assert f"ACME HTTP listening on {overrides['ACME_HTTP_LISTEN']}" in text
        port = smtp_ports(overrides["SMTP_LISTEN"])[0]
        first = wait_for(lambda: smtp_serial(port, pebble.root), timeout=30)
        assert first, (tmp_path / "appliance.log").read_text()

        status = _cli(overrides, "tls", "status", "--json")
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["source"] == "acme" and info["names"] == [HOSTNAME] and int(info["serial"], 16) == first
        assert info["issuer"].startswith("Pebble Intermediate") and info["account"].startswith("https://127.0.0.1")
        assert info["last_error"] is None and info["failures"] == 0 and info["due"] is None
        start, end = (dt.datetime.fromisoformat(info[k]) for k in ("not_before", "not_after"))
        # Two thirds into its lifetime, shown to the second.
        assert abs(dt.datetime.fromisoformat(info["next_renewal"]) - (start + (end - start) * 2 / 3)) < dt.timedelta(
            seconds=1
        )

        # Port 80's other answers: a 308 to the HTTPS dashboard; an unknown challenge is a 404.
        http_base = f"http://{overrides['ACME_HTTP_LISTEN']}"
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(f"{http_base}/messages?status=queued", timeout=10)
        https_port = overrides["WEB_TLS_LISTEN"].rpartition(":")[2]
        assert redirect.value.code == 308
        assert redirect.value.headers["Location"] == f"https://{HOSTNAME}:{https_port}/messages?status=queued"
        with pytest.raises(urllib.error.HTTPError) as missing:
            opener.open(f"{http_base}/.well-known/acme-challenge/no-such-token", timeout=10)
        assert missing.value.code == 404

        # `tls renew` while the appliance runs: the appliance's listener serves the CLI's challenge,
        # and the appliance serves the new certificate without a restart.
        renewed = _cli(overrides, "tls", "renew")
        assert renewed.returncode == 0, renewed.stderr
        assert "new certificate for relay.test" in renewed.stdout
        second = wait_for(lambda: (s := smtp_serial(port, pebble.root)) != first and s, timeout=15)
        assert second and f"serial {second:x}" in renewed.stdout

        # A renewal the CA refuses: exit code 1, the reason, and the served certificate unchanged.
        pebble.dns.records[(pebble.dns._key(HOSTNAME), "A")] = ["127.0.0.2"]
        failed = _cli(overrides, "tls", "renew")
        assert failed.returncode == 1
        assert "no new certificate: the CA could not fetch" in failed.stderr and "Traceback" not in failed.stderr
        info = json.loads(_cli(overrides, "tls", "status", "--json").stdout)
        assert int(info["serial"], 16) == second and info["failures"] == 1 and "could not fetch" in info["last_error"]
        text = _cli(overrides, "tls", "status").stdout
        assert "source: ACME" in text and "last error: the CA could not fetch" in text and "1 failed in a row" in text
        assert smtp_serial(port, pebble.root) == second
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_renew_without_a_running_appliance_serves_its_own_challenges(run_cli, app, pebble):
    tls.ensure(app.config)  # as a first start leaves it: the local-CA pair until ACME's first certificate
    before = check_certificate(app.config)
    assert before.status == WARN and "ACME has not issued a certificate yet" in before.detail
    assert json.loads(run_cli("tls", "status", "--json").output)["due"] == "no ACME certificate yet"

    result = run_cli("tls", "renew")
    assert result.exit_code == 0, result.output
    info = json.loads(run_cli("tls", "status", "--json").output)
    assert info["source"] == "acme" and f"serial {info['serial']}" in result.output
    after = check_certificate(app.config)
    assert after.status == OK
    assert after.detail.endswith(
        f"ACME certificate valid for {HOSTNAME} until {info['not_after'][:10]} (issued by {info['issuer']}), "
        f"renewed from {info['next_renewal'][:10]}"
    )


def test_tls_commands_with_acme_off(tmp_path):
    settings = {"DATA_DIR": str(tmp_path / "data"), "HOSTNAME": HOSTNAME, "DNS_SERVERS": "127.0.0.1:9"}
    app = create_app(settings)
    runner = app.test_cli_runner()
    from appliance.cli import cli

    result = runner.invoke(cli, ["tls", "renew"])
    assert result.exit_code == 1 and "ACME is off (ACME_EMAIL is empty)" in result.output
    tls.ensure(app.config)
    info = json.loads(runner.invoke(cli, ["tls", "status", "--json"]).output)
    assert info["acme"] is False and info["source"] == "local-ca" and info["next_renewal"] is None
    assert "renewal: not by the appliance" in runner.invoke(cli, ["tls", "status"]).output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"TLS_CERT": "/etc/ssl/cert.pem", "TLS_KEY": "/etc/ssl/key.pem"}, "ACME_EMAIL and TLS_CERT/TLS_KEY"),
        ({"HOSTNAME": "192.0.2.7"}, "not a DNS name a CA can validate"),
        ({"HOSTNAME": "mailbox"}, "not a DNS name a CA can validate"),
        ({"ACME_EMAIL": "postmaster"}, "ACME_EMAIL: expected an email address"),
        ({"ACME_HTTP_LISTEN": ""}, "ACME_HTTP_LISTEN: expected [HOST]:PORT"),
        ({"ACME_HTTP_LISTEN": "0.0.0.0:http"}, "ACME_HTTP_LISTEN: expected [HOST]:PORT"),
    ],
)
def test_settings_that_cannot_give_a_certificate_stop_the_start(tmp_path, change, message):
    settings = {"DATA_DIR": str(tmp_path / "data"), "HOSTNAME": HOSTNAME, "ACME_EMAIL": "admin@relay.test", **change}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        create_app(settings)


def test_challenge_listener_without_an_https_dashboard_and_token_names(tmp_path):
    settings = {
        "DATA_DIR": str(tmp_path / "data"),
        "HOSTNAME": HOSTNAME,
        "ACME_EMAIL": "admin@relay.test",
        "WEB_TLS_LISTEN": "",
        "ACME_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
    }
    app = create_app(settings)
    challenges = Path(app.config["DATA_DIR"]) / "acme" / "challenges"
    challenges.mkdir(parents=True)
    (challenges / "tok-EN_1").write_text("tok-EN_1.thumbprint")
    (Path(app.config["DATA_DIR"]) / "secret").write_text("not for the CA")
    from appliance.serve import challenge_listener

    base = f"http://{settings['ACME_HTTP_LISTEN']}"
    with challenge_listener(app.config) as not_here:
        assert not_here == ""
        with urllib.request.urlopen(f"{base}/.well-known/acme-challenge/tok-EN_1", timeout=10) as r:
            assert r.read() == b"tok-EN_1.thumbprint"
        for path in ("/.well-known/acme-challenge/..%2F..%2Fsecret", "/.well-known/acme-challenge/", "/login"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=10)
            assert refused.value.code == 404, path
        assert b"WEB_TLS_LISTEN is empty" in refused.value.read()
