"""Listeners and first start: what listens where, what is generated once, what is skipped."""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from appliance import accounts, tls
from appliance.listeners import Listener, parse_listeners
from appliance.serve import start_smtp

from .conftest import free_port, process_env, read_banner

ROOT = Path(__file__).resolve().parent.parent


def test_listener_specs_are_parsed_with_their_modes():
    assert parse_listeners("587/starttls, 127.0.0.1:465/tls,[::1]:2526/starttls/mx,25/starttls") == [
        Listener(None, 587, "starttls", False),
        Listener("127.0.0.1", 465, "tls", False),
        Listener("::1", 2526, "starttls", True),
        Listener(None, 25, "starttls", True),
    ]


@pytest.mark.parametrize("spec", ["587", "587/ssl", "host:99999/tls", "587/starttls;465/tls"])
def test_a_listener_spec_that_makes_no_sense_is_refused(spec):
    with pytest.raises(ValueError, match="SMTP_LISTEN: cannot read"):
        parse_listeners(spec)


def test_a_port_in_use_is_reported_and_skipped_while_the_others_work(app):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port, good_port = busy.getsockname()[1], free_port()
    app.config["SMTP_LISTEN"] = f"127.0.0.1:{busy_port}/starttls,127.0.0.1:{good_port}/starttls"
    service, _ = start_smtp(app.config)
    try:
        assert [(str(listener), "in use" in reason) for listener, reason in service.failed] == [
            (f"127.0.0.1:{busy_port}/starttls", True)
        ]
        with smtplib.SMTP("127.0.0.1", good_port, timeout=10) as client:
            assert client.ehlo()[0] == 250
    finally:
        service.stop()
        busy.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_clients_are_authorized_by_ipv6_networks(app):
    port = free_port()
    app.config["SMTP_LISTEN"] = f"[::1]:{port}/starttls"
    with app.app_context():
        account, password = accounts.create("v6", networks=["::1/128"])
    service, files = start_smtp(app.config)
    try:
        with smtplib.SMTP("::1", port, timeout=10) as client:
            client.starttls(context=_no_name_check(files.ca))
            assert client.login(account.username, password)[0] == 235
    finally:
        service.stop()


def _no_name_check(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # ::1 is in the certificate, but smtplib passes the host only for SNI
    return ctx


def test_supplied_tls_cert_and_key_are_used_instead_of_generated_ones(tmp_path, app):
    supplied = tls.ensure({"TLS_CERT": "", "TLS_KEY": "", "HOSTNAME": "relay.test",
                           "DATA_DIR": str(tmp_path / "elsewhere")})
    app.config.update(TLS_CERT=str(supplied.cert), TLS_KEY=str(supplied.key))
    service, files = start_smtp(app.config)
    try:
        assert files.ca is None and not (Path(app.config["DATA_DIR"]) / "tls").exists()
        port = service.bound[0][1][0][1]
        with smtplib.SMTP("relay.test", port, timeout=10) as client:
            client.starttls(context=ssl.create_default_context(cafile=str(supplied.ca)))
            assert client.ehlo()[0] == 250
    finally:
        service.stop()


def _start_and_read_banner(overrides: dict, prefix: tuple[str, ...] = ()) -> str:
    proc = subprocess.Popen([*prefix, sys.executable, "app.py"], cwd=ROOT, env=process_env(overrides),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.strip().startswith("create an SMTP account"):
            break
    proc.terminate()
    proc.wait(timeout=10)
    return "".join(lines)


def test_first_start_generates_keys_and_an_admin_and_a_second_start_reuses_them(overrides):
    data = Path(overrides["DATA_DIR"])
    first = _start_and_read_banner(overrides)
    for port in [p.split(":")[1].split("/")[0] for p in overrides["SMTP_LISTEN"].split(",")]:
        assert f"listening on 127.0.0.1:{port}" in first
    assert "first admin login (shown once): admin@relay.test / " in first
    assert "appliance accounts create" in first
    assert f"local CA {data / 'tls' / 'ca.pem'}" in first
    names = ("secret_key", "tls/ca.pem", "tls/server.pem", "tls/server.key")
    generated = {name: (data / name).read_bytes() for name in names}
    cert = x509.load_pem_x509_certificate(generated["tls/server.pem"])
    alternative_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "relay.test" in alternative_names.get_values_for_type(x509.DNSName)
    assert oct((data / "tls" / "server.key").stat().st_mode & 0o777) == "0o600"

    second = _start_and_read_banner(overrides)
    assert "first admin login" not in second
    assert {name: (data / name).read_bytes() for name in generated} == generated


def test_serve_with_an_unreadable_listener_setting_exits_with_a_message(overrides):
    overrides["SMTP_LISTEN"] = "587/ssl"
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=process_env(overrides),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "SMTP_LISTEN: cannot read '587/ssl'" in done.stderr


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux setpriv to drop CAP_NET_BIND_SERVICE")
def test_a_privileged_port_without_the_capability_is_skipped_with_the_reason(overrides):
    port = free_port()
    overrides["SMTP_LISTEN"] = f"127.0.0.1:26/starttls,127.0.0.1:{port}/starttls"
    no_bind = ("setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service")
    banner = _start_and_read_banner(overrides, no_bind)
    assert ("SMTP 127.0.0.1:26/starttls NOT listening: Permission denied "
            "(ports below 1024 need root or CAP_NET_BIND_SERVICE)") in banner
    assert f"listening on 127.0.0.1:{port}" in banner


def test_a_busy_dashboard_port_is_reported_and_smtp_keeps_working(overrides):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    overrides["WEB_LISTEN"] = f"127.0.0.1:{busy.getsockname()[1]}"
    smtp_port = int(overrides["SMTP_LISTEN"].split(",")[0].split(":")[1].split("/")[0])
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=process_env(overrides),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = read_banner(proc)
        assert f"dashboard: NOT listening on {overrides['WEB_LISTEN']}: Address already in use" in banner
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            assert client.ehlo()[0] == 250
        proc.terminate()  # SIGTERM: listeners close and the process ends cleanly
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        busy.close()
