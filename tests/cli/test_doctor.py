"""`appliance doctor`, end to end: the real CLI against real listeners, a loopback DNS server and sinks."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from appliance import doctor, serve, tls
from appliance.doctor import address
from tests.support.ports import free_port
from tests.support.relay import HOSTNAME, relay_overrides
from tests.support.web import served

OUT_IP = "127.0.0.5"  # the "public" address mail leaves from, given with --ip
MX_IP = "127.0.0.3"  # the probe domain's MX
PROBE = "probe.test"
CHECKS = {"ports", "certificate", "dns", "ptr", "outbound", "blocklists"}


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def good_dns(dns_server):
    """HOSTNAME ↔ OUT_IP forward and reverse, and a probe domain whose MX is MX_IP."""
    dns_server.a(HOSTNAME, OUT_IP)
    dns_server.ptr(OUT_IP, HOSTNAME)
    dns_server.mx(PROBE, (10, "mx.probe.test"))
    dns_server.a("mx.probe.test", MX_IP)
    return dns_server


@pytest.fixture
def probe_mx(sink_mx):
    return sink_mx(MX_IP, name="mx.probe.test")


@pytest.fixture
def stopped(app, good_dns, probe_mx):
    """A set-up that is right but not running: its certificate was made by an earlier start."""
    tls.ensure(app.config)
    return app


@pytest.fixture
def dashboard(app):
    """The dashboard on WEB_LISTEN, served by waitress as `appliance serve` does."""
    with served(app, app.config["WEB_LISTEN"], threads=2) as url:
        yield url


def run_doctor(run_cli, *args: str, ip: str | None = OUT_IP) -> tuple[int, list[dict]]:
    """Run `appliance doctor --json`; return the exit code and the results."""
    options = ["--ip", ip] if ip else []
    result = run_cli("doctor", *options, "--probe-domain", PROBE, "--timeout", "2", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def only(results: list[dict], check: str) -> dict:
    (found,) = [r for r in results if r["check"] == check]
    return found


def statuses(results: list[dict]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for r in results:
        seen.setdefault(r["check"], set()).add(r["status"])
    return seen


# -- all well ------------------------------------------------------------------------------------
def test_a_running_and_well_set_up_appliance_passes_every_check(run_cli, smtp_server, dashboard, good_dns, probe_mx):
    code, results = run_doctor(run_cli)
    assert code == 0, results
    assert {r["check"] for r in results} == CHECKS
    assert all(r["status"] == "OK" for r in results), [r for r in results if r["status"] != "OK"]
    assert all({"check", "target", "status", "detail", "hint"} <= r.keys() for r in results)
    ports = [r for r in results if r["check"] == "ports"]
    assert len(ports) == 4  # three SMTP listeners and the dashboard
    implicit = next(r for r in ports if r["target"].endswith(f":{smtp_server.tls_port}/tls"))
    assert f"greets '220 {HOSTNAME} ESMTP ready' over TLSv1" in implicit["detail"]
    starttls = next(r for r in ports if r["target"].endswith(f":{smtp_server.starttls_port}/starttls"))
    assert "STARTTLS gives TLSv1" in starttls["detail"]
    assert any("/health: ok" in r["detail"] for r in ports)
    cert = only(results, "certificate")["detail"]
    assert f"valid for {HOSTNAME} until" in cert and f"clients must trust {smtp_server.ca}" in cert
    assert only(results, "dns")["detail"] == f"{HOSTNAME} resolves to {OUT_IP}"
    assert only(results, "ptr")["detail"] == f"{OUT_IP} has PTR {HOSTNAME}, which resolves back to {OUT_IP}"
    assert "is open: mx.probe.test [127.0.0.3]" in only(results, "outbound")["detail"]
    assert {r["target"] for r in results if r["check"] == "blocklists"} == set(address.BLOCKLISTS)
    assert ("5.0.0.127.zen.spamhaus.org.", "A") in good_dns.queries  # reversed octets + zone


def test_the_https_dashboard_of_web_tls_listen_is_checked_too(app, run_cli, dashboard):
    port = free_port()
    app.config["WEB_TLS_LISTEN"] = f"127.0.0.1:{port}"
    results = doctor.check_ports(app.config, timeout=2)
    assert results[-1].status == doctor.WARN and results[-1].target == f"dashboard 127.0.0.1:{port}"
    server, shown = serve.start_https(app, app.config["WEB_TLS_LISTEN"], tls.LiveContext(tls.ensure(app.config)))
    try:
        https = doctor.check_ports(app.config, timeout=2)[-1]
        assert (https.status, https.detail) == (
            doctor.OK,
            f"the dashboard answers on https://127.0.0.1:{port}/ (/health: ok)",
        )
        assert "answers on http://" in doctor.check_ports(app.config, timeout=2)[-2].detail  # WEB_LISTEN's
    finally:
        server.stop()


def test_the_text_report_has_one_line_per_check_and_a_summary(run_cli, smtp_server, dashboard, good_dns, probe_mx):
    result = run_cli("doctor", "--ip", OUT_IP, "--probe-domain", PROBE, "--timeout", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == f"{len(lines) - 1} OK, 0 WARN, 0 FAIL"
    assert all(line.startswith("OK    ") for line in lines[:-1])
    assert any(line.startswith("OK    ptr         127.0.0.5 has PTR relay.test") for line in lines)


# -- ports ---------------------------------------------------------------------------------------
def test_nothing_listening_is_a_warning_and_the_exit_code_stays_0(run_cli, stopped):
    code, results = run_doctor(run_cli)
    assert code == 0
    ports = [r for r in results if r["check"] == "ports"]
    assert len(ports) == 4 and {r["status"] for r in ports} == {"WARN"}
    assert all(r["detail"].startswith("nothing listens on 127.0.0.1:") for r in ports)
    assert all("is the appliance running?" in r["hint"] for r in ports)
    assert statuses(results)["certificate"] == {"OK"} and statuses(results)["outbound"] == {"OK"}


def test_listeners_that_greet_as_another_host_fail_and_so_does_their_certificate(app, run_cli, good_dns, probe_mx):
    # The appliance was started before HOSTNAME changed, and not restarted since.
    service, _ = serve.start_smtp({**app.config, "HOSTNAME": "old-name.test"})
    try:
        code, results = run_doctor(run_cli)
    finally:
        service.stop()
    assert code == 1
    smtp = [r for r in results if r["check"] == "ports" and r["target"].startswith("SMTP")]
    assert len(smtp) == 3 and {r["status"] for r in smtp} == {"FAIL"}
    assert all(f"greets as old-name.test, not {HOSTNAME}" in r["detail"] for r in smtp)  # implicit TLS too
    assert all("restart it after changing HOSTNAME" in r["hint"] for r in smtp)
    cert = only(results, "certificate")
    assert cert["status"] == "FAIL" and f"not valid for {HOSTNAME}: it names old-name.test" in cert["detail"]


def test_unreadable_listen_settings_are_reported_not_raised(app, run_cli, stopped):
    app.config["SMTP_LISTEN"] = "587/starttls,smtp-please"
    app.config["WEB_LISTEN"] = "localhost"
    code, results = run_doctor(run_cli)
    assert code == 1
    details = [r["detail"] for r in results if r["check"] == "ports" and r["status"] == "FAIL"]
    assert details == [
        "SMTP_LISTEN: cannot read 'smtp-please' (expected [ADDRESS:]PORT[-LAST]/starttls|tls)",
        "WEB_LISTEN: cannot read 'localhost'",
    ]


# -- certificate ---------------------------------------------------------------------------------
def make_certificate(directory, names: list[str], days_left: float, *, other_key: bool = False) -> tuple[str, str]:
    """Write a self-signed certificate for ``names`` that expires in ``days_left`` days, and a key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Issuing CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=days_left))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    if other_key:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.mark.parametrize(
    ("names", "days_left", "other_key", "status", "words", "hint"),
    [
        ([HOSTNAME], 200, False, "OK", f"valid for {HOSTNAME} until", ""),
        (["*.test"], 200, False, "OK", "(issued by Test Issuing CA)", ""),
        ([HOSTNAME], 10, False, "WARN", "expires in 9 days, on", "renew it"),
        ([HOSTNAME], -1, False, "FAIL", "expired on", "renew it"),
        (
            ["www.shop.test", "*.relay.test"],
            200,
            False,
            "FAIL",
            f"not valid for {HOSTNAME}: it names www.shop.test, *.relay.test",
            f"get a certificate for {HOSTNAME}",
        ),
        ([HOSTNAME], 200, True, "FAIL", "key.pem does not belong to this certificate", "TLS_KEY"),
    ],
)
def test_a_configured_certificate_is_checked_for_dates_names_and_key(
    app, run_cli, stopped, tmp_path, names, days_left, other_key, status, words, hint
):
    app.config["TLS_CERT"], app.config["TLS_KEY"] = make_certificate(tmp_path, names, days_left, other_key=other_key)
    code, results = run_doctor(run_cli)
    cert = only(results, "certificate")
    assert (cert["status"], cert["target"]) == (status, app.config["TLS_CERT"])
    assert words in cert["detail"] and hint in cert["hint"]
    assert "ca.pem" not in cert["detail"]  # only the generated certificate needs the local CA
    assert code == (1 if status == "FAIL" else 0)  # a WARN does not fail the run


def test_a_certificate_not_generated_yet_says_to_start_the_appliance_once(app, run_cli, good_dns, probe_mx):
    code, results = run_doctor(run_cli)
    cert = only(results, "certificate")
    assert code == 1 and cert["status"] == "FAIL"
    assert cert["detail"].endswith("server.pem: not generated yet: start the appliance once")


def test_a_missing_or_half_configured_certificate_fails(app, run_cli, stopped, tmp_path):
    app.config["TLS_CERT"], app.config["TLS_KEY"] = str(tmp_path / "nowhere.pem"), str(tmp_path / "nowhere.key")
    code, results = run_doctor(run_cli)
    assert code == 1 and "nowhere.pem: cannot read it: No such file" in only(results, "certificate")["detail"]
    app.config["TLS_KEY"] = ""
    code, results = run_doctor(run_cli)
    assert code == 1 and only(results, "certificate")["detail"] == "TLS_CERT and TLS_KEY must be set together"


# -- DNS and PTR ---------------------------------------------------------------------------------
def test_a_hostname_without_an_address_fails(run_cli, stopped, dns_server):
    dns_server.records.pop((f"{HOSTNAME}.", "A"))
    code, results = run_doctor(run_cli)
    dns_check = only(results, "dns")
    assert code == 1 and dns_check["status"] == "FAIL"
    assert dns_check["detail"] == f"{HOSTNAME} has no A or AAAA record" and "publish an A record" in dns_check["hint"]


@pytest.mark.parametrize(
    ("ptr", "a", "detail", "hint"),
    [
        (
            None,
            OUT_IP,
            f"{OUT_IP} has no PTR record; it should be {HOSTNAME}",
            "set its reverse DNS (PTR) to relay.test",
        ),
        ("vps-5.cloud.test", OUT_IP, f"{OUT_IP} has PTR vps-5.cloud.test; it should be {HOSTNAME}", "reverse DNS"),
        (
            HOSTNAME,
            "127.0.0.9",
            f"{OUT_IP} has PTR {HOSTNAME}, but {HOSTNAME} resolves to 127.0.0.9, not {OUT_IP}",
            f"publish an A record {HOSTNAME} -> {OUT_IP}",
        ),
    ],
)
def test_reverse_dns_must_name_the_hostname_and_be_confirmed_forward(
    app, run_cli, dns_server, probe_mx, ptr, a, detail, hint
):
    tls.ensure(app.config)
    dns_server.a(HOSTNAME, a)
    if ptr:
        dns_server.ptr(OUT_IP, ptr)
    dns_server.mx(PROBE, (10, "mx.probe.test"))
    dns_server.a("mx.probe.test", MX_IP)
    code, results = run_doctor(run_cli)
    check = only(results, "ptr")
    assert code == 1 and (check["status"], check["target"]) == ("FAIL", OUT_IP)
    assert check["detail"] == detail and hint in check["hint"]


def test_a_private_outbound_address_found_by_itself_is_a_warning_not_a_lookup(
    run_cli, stopped, dns_server, monkeypatch
):
    monkeypatch.setattr(doctor, "outbound_ip", lambda: "10.20.30.40")
    code, results = run_doctor(run_cli, ip=None)
    assert code == 0
    ptr = only(results, "ptr")
    assert ptr["status"] == "WARN" and "10.20.30.40 is not public" in ptr["detail"]
    assert ptr["hint"] == "behind NAT? pass --ip with the public address"
    assert only(results, "blocklists") | {"hint": ""} == {
        "check": "blocklists",
        "target": "10.20.30.40",
        "status": "OK",
        "detail": "private address, not checked",
        "hint": "",
    }
    assert not [q for q in dns_server.queries if q[1] == "PTR" or "spamhaus" in q[0]]


def test_an_address_that_is_not_an_ip_is_refused(run_cli):
    result = run_cli("doctor", "--ip", "relay.test")
    assert result.exit_code == 2 and "'relay.test' is not an IP address" in result.output


# -- outbound ------------------------------------------------------------------------------------
def test_a_blocked_port_25_fails_and_suggests_a_smarthost(run_cli, stopped, dns_server, delivery_port):
    dns_server.records[("mx.probe.test.", "A")] = ["127.0.0.4"]  # nothing listens there
    code, results = run_doctor(run_cli)
    check = only(results, "outbound")
    assert code == 1 and check["status"] == "FAIL"
    assert check["detail"] == (
        f"outbound port {delivery_port} seems blocked (many clouds block it): "
        f"mx.probe.test [127.0.0.4]:{delivery_port} refused the connection"
    )
    assert "SMARTHOST" in check["hint"]


def test_an_mx_that_refuses_us_at_the_greeting_fails_with_its_reply(run_cli, stopped, dns_server, delivery_port):
    import socket

    refuser = socket.create_server(("127.0.0.6", delivery_port))
    dns_server.records[("mx.probe.test.", "A")] = ["127.0.0.6"]

    def greet_and_close():
        conn, _ = refuser.accept()
        with conn:
            conn.sendall(b"554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org\r\n")
            conn.recv(1024)

    threading.Thread(target=greet_and_close, daemon=True).start()
    try:
        code, results = run_doctor(run_cli)
    finally:
        refuser.close()
    check = only(results, "outbound")
    assert code == 1 and check["status"] == "FAIL"
    assert "greets '554 5.7.1 Service unavailable; client host blocked" in check["detail"]
    assert "refuses this machine" in check["hint"]


def test_the_probe_mx_lookup_timing_out_is_a_warning(run_cli, stopped, dns_server):
    dns_server.time_out(PROBE)
    code, results = run_doctor(run_cli)
    check = only(results, "outbound")
    assert code == 0 and check["status"] == "WARN"
    assert check["detail"].startswith(f"could not check: the MX lookup of {PROBE} failed")


SMARTHOST_PORT = free_port()


@pytest.mark.parametrize(
    ("password", "trust", "status", "words"),
    [
        ("secret", True, "OK", "certificate verified, AUTH as relay@isp accepted"),
        ("wrong", True, "FAIL", "smarthost refused our AUTH: 535 5.7.8"),
        ("secret", False, "FAIL", "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_with_a_smarthost_its_tls_and_credentials_are_checked_instead_of_port_25(
    app, run_cli, stopped, sink_mx, tls_ca, dns_server, password, trust, status, words
):
    sink_mx("127.0.0.1", port=SMARTHOST_PORT, auth=("relay@isp", "secret"), name="smarthost.test")
    app.config["SMARTHOST"] = f"smtp://relay%40isp:{password}@127.0.0.1:{SMARTHOST_PORT}"
    app.config["SMARTHOST_CA_FILE"] = str(tls_ca.ca) if trust else ""
    code, results = run_doctor(run_cli)
    check = only(results, "outbound")
    assert (check["status"], check["target"]) == (status, f"smtp://127.0.0.1:{SMARTHOST_PORT}")
    assert words in check["detail"]
    assert code == (0 if status == "OK" else 1)
    assert not [q for q in dns_server.queries if PROBE in q[0]]  # no MX probe with a smarthost


# -- blocklists ----------------------------------------------------------------------------------
def test_a_listing_on_a_blocklist_fails(run_cli, stopped, dns_server):
    dns_server.a(f"5.0.0.127.{address.BLOCKLISTS[0]}", "127.0.0.2")
    code, results = run_doctor(run_cli)
    lists = {r["target"]: r for r in results if r["check"] == "blocklists"}
    assert code == 1
    assert lists["zen.spamhaus.org"]["status"] == "FAIL"
    assert lists["zen.spamhaus.org"]["detail"] == f"{OUT_IP} is listed on zen.spamhaus.org (127.0.0.2)"
    assert "check.spamhaus.org" in lists["zen.spamhaus.org"]["hint"]
    assert lists["bl.spamcop.net"]["status"] == lists["b.barracudacentral.org"]["status"] == "OK"


def test_a_blocklist_that_refuses_the_resolver_is_a_warning(run_cli, stopped, dns_server):
    dns_server.a(f"5.0.0.127.{address.BLOCKLISTS[0]}", "127.255.255.254")
    code, results = run_doctor(run_cli)
    zen = next(r for r in results if r["target"] == "zen.spamhaus.org")
    assert code == 0 and zen["status"] == "WARN"
    assert zen["detail"] == "could not check zen.spamhaus.org: the resolver is refused (127.255.255.254)"
    assert "public resolvers" in zen["hint"]


def test_dns_timeouts_are_warnings_and_never_crash(run_cli, stopped, dns_server):
    for name in (HOSTNAME, "5.0.0.127.in-addr.arpa", PROBE, f"5.0.0.127.{address.BLOCKLISTS[1]}"):
        dns_server.time_out(name)
    code, results = run_doctor(run_cli)
    assert code == 0
    for check in ("dns", "ptr", "outbound"):
        assert only(results, check)["status"] == "WARN" and "could not check" in only(results, check)["detail"]
    spamcop = next(r for r in results if r["target"] == "bl.spamcop.net")
    assert spamcop["status"] == "WARN" and "DNS timeout" in spamcop["detail"]


def test_dnsbl_names_reverse_the_address():
    assert address.dnsbl_name("192.0.2.99", "zen.spamhaus.org") == "99.2.0.192.zen.spamhaus.org"
    assert address.dnsbl_name("2001:db8::1", "zen.spamhaus.org") == (
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org"
    )
