"""Listeners and first start: what listens where, what is generated once, what is skipped."""

from __future__ import annotations

import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from appliance import accounts, tls
from appliance.listeners import Listener, parse_listeners
from appliance.models import Domain, Message
from appliance.serve import start_smtp, startup_banner
from tests.support import ROOT
from tests.support.ports import free_port, free_port_range
from tests.support.process import process_env, read_banner
from tests.support.relay import HOSTNAME


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


def test_port_ranges_are_parsed_next_to_single_ports():
    assert parse_listeners("1025-5000/starttls,127.0.0.1:25000-25010/tls/mx,[::1]:5001/starttls,20-30/starttls") == [
        Listener(None, 1025, "starttls", False, 5000),
        Listener("127.0.0.1", 25000, "tls", True, 25010),
        Listener("::1", 5001, "starttls", False),
        Listener(None, 20, "starttls", False, 30),  # holding 25 does not make a range MX-facing
    ]
    assert parse_listeners("127.0.0.1:2525/starttls,[::1]:2525/starttls")  # two addresses, no overlap


BAD_LISTEN = {
    "reversed": ("5000-1025/starttls", "'5000-1025/starttls': a range goes from a lower port to a higher one"),
    "port 0": ("0/starttls", "'0/starttls': port 0 is not in 1-65535"),
    "past 65535": ("65000-65536/tls", "'65000-65536/tls': port 65536 is not in 1-65535"),
    "overlap": ("1025-5000/starttls,2525/starttls", "'2525/starttls' overlaps '*:1025-5000/starttls'"),
    "overlap on one address": (
        "127.0.0.1:25000-25010/starttls,25010-25020/tls",
        "'25010-25020/tls' overlaps '127.0.0.1:25000-25010/starttls'",
    ),
    "too large": ("1-65535/starttls", "'1-65535/starttls': 65535 ports, a range holds at most 5000"),
    "unknown mode": ("1025-5000/ssl", "'1025-5000/ssl': unknown mode 'ssl' (starttls or tls)"),
}


@pytest.mark.parametrize("spec, sentence", BAD_LISTEN.values(), ids=BAD_LISTEN.keys())
def test_a_bad_port_range_is_refused_with_a_sentence(spec, sentence):
    with pytest.raises(ValueError, match=f"^SMTP_LISTEN: (cannot read )?{re.escape(sentence)}"):
        parse_listeners(spec)


@pytest.mark.parametrize("name", ["reversed", "overlap", "too large", "unknown mode"])
def test_serve_with_a_bad_port_range_exits_with_the_sentence_and_no_traceback(overrides, name):
    spec, sentence = BAD_LISTEN[name]
    overrides["SMTP_LISTEN"] = spec
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=process_env(overrides), capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and sentence in done.stderr and "Traceback" not in done.stderr


def test_a_port_range_takes_mail_on_each_of_its_ports_and_is_one_banner_line(app, account):
    ports = free_port_range(11)
    busy = socket.socket()  # one port of the range taken by someone else: reported, the rest work
    busy.bind(("127.0.0.1", ports[7]))
    busy.listen()
    app.config["SMTP_LISTEN"] = f"127.0.0.1:{ports[0]}-{ports[-1]}/starttls"
    service, files = start_smtp(app.config)
    try:
        banner = startup_banner(app.config, service, files, None, web_url="-").splitlines()
        assert [line for line in banner if line.startswith("  SMTP")] == [
            f"  SMTP starttls listening on 127.0.0.1:{ports[0]}-{ports[-1]}",
            f"  SMTP 127.0.0.1:{ports[0]}-{ports[-1]}/starttls NOT listening: Address already in use (port {ports[7]})",
        ]
        for port in (ports[0], ports[5], ports[-1]):
            with smtplib.SMTP(HOSTNAME, port, local_hostname="client.test", timeout=10) as client:
                client.starttls(context=ssl.create_default_context(cafile=str(files.ca)))
                client.login(*account)
                client.sendmail(
                    "shop@shop.test",
                    ["alice@example.test"],
                    f"From: shop@shop.test\r\nTo: alice@example.test\r\nSubject: port {port}\r\n\r\nHello.\r\n",
                )
        with app.app_context():
            assert sorted(m.subject for m in Message.select()) == sorted(
                f"port {p}" for p in (ports[0], ports[5], ports[-1])
            )
    finally:
        service.stop()
        busy.close()


def test_the_dashboard_keeps_serving_when_a_range_puts_its_files_past_1024(overrides):
    # select() cannot watch a file descriptor above 1023: a dashboard server waiting in it dies
    # ("filedescriptor out of range in select()") once a range of ports has taken the low ones.
    ports = free_port_range(1100)
    overrides["SMTP_LISTEN"] += f",127.0.0.1:{ports[0]}-{ports[-1]}/starttls"
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=process_env(overrides),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_banner(proc)
        web = overrides["WEB_LISTEN"]
        for _ in range(3):
            with urllib.request.urlopen(f"http://{web}/health", timeout=10) as response:
                assert response.status == 200
        with smtplib.SMTP("127.0.0.1", ports[-1], timeout=10) as client:
            assert client.ehlo()[0] == 250
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=20)


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
    supplied = tls.ensure(
        {"TLS_CERT": "", "TLS_KEY": "", "HOSTNAME": "relay.test", "DATA_DIR": str(tmp_path / "elsewhere")}
    )
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


@pytest.fixture
def store_delivered(app):
    """Record a message as delivered (the banner only asks whether one was)."""

    def store() -> None:
        from appliance import db, intake
        from appliance.models import Delivery

        item = intake.prepare(
            b"From: shop@shop.test\r\nSubject: Hi\r\n\r\nhi\r\n",
            mail_from="shop@shop.test",
            rcpts=["bob@example.test"],
            hostname=HOSTNAME,
            client_ip="127.0.0.1",
            client_helo="client.test",
            tls="",
            username=None,
            account_id=None,
            account_priority=3,
        )
        with db.atomic_write():
            intake.store(item)
        Delivery.update(status="delivered").execute()

    return store


def _start_and_read_banner(overrides: dict, prefix: tuple[str, ...] = ()) -> str:
    proc = subprocess.Popen(
        [*prefix, sys.executable, "app.py"],
        cwd=ROOT,
        env=process_env(overrides),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.strip().startswith(("first admin login", "admins:")):  # the banner's last line
            break
    proc.terminate()
    proc.wait(timeout=10)
    return "".join(lines)


def test_the_banners_next_steps_follow_what_is_still_to_do(app, overrides, run_cli, store_delivered):
    first = _start_and_read_banner(overrides)
    steps = [line.strip() for line in first.splitlines() if line.strip().startswith("next: ")]
    assert [s.split(":")[1].strip().split()[0] for s in steps] == ["set", "create", "verify", "send"]
    assert "APPLIANCE_PUBLIC_URL" in steps[0] and "APPLIANCE_HOSTNAME" not in first  # relay.test is a real name

    assert run_cli("accounts", "create", "Shop").exit_code == 0
    assert run_cli("domains", "add", "shop.test").exit_code == 0
    second = _start_and_read_banner({**overrides, "PUBLIC_URL": "https://relay.test"})
    assert "APPLIANCE_PUBLIC_URL" not in second and "accounts create" not in second
    assert "next: publish the DNS records of shop.test (appliance domains show shop.test)" in second

    Domain.update(verified=True).where(Domain.name == "shop.test").execute()  # as if its DKIM record were found
    store_delivered()
    third = _start_and_read_banner({**overrides, "PUBLIC_URL": "https://relay.test"})
    assert "next:" not in third and "set-up: every first step is done" in third


def test_a_hostname_that_only_this_machine_knows_is_the_first_step(overrides):
    banner = _start_and_read_banner({**overrides, "HOSTNAME": "localhost"})
    assert "next: set APPLIANCE_HOSTNAME to this machine's public name (now localhost)" in banner


def test_first_start_generates_keys_and_an_admin_and_a_second_start_reuses_them(overrides):
    data = Path(overrides["DATA_DIR"])
    first = _start_and_read_banner(overrides)
    for port in [p.split(":")[1].split("/")[0] for p in overrides["SMTP_LISTEN"].split(",")]:
        assert f"listening on 127.0.0.1:{port}" in first
    assert "first admin login (shown once): admin@relay.test / " in first
    assert first.index("verify who may send") < first.index("first admin login")  # the password comes last
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
    assert second.splitlines()[-1].startswith("  admins: the first login was shown at the first start")
    assert {name: (data / name).read_bytes() for name in generated} == generated


def test_the_banner_s_cli_line_finds_the_same_data_from_another_folder_and_elsewhere_it_says_none(overrides, tmp_path):
    banner = _start_and_read_banner(overrides)
    (line,) = [line for line in banner.splitlines() if "the CLI from any folder:" in line]
    exports = dict(re.findall(r'(\w+)="([^"]*)"', line))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    base = {k: v for k, v in process_env(overrides).items() if k != "APPLIANCE_DATA_DIR"}
    env = base | {
        "PATH": exports["PATH"].replace("$PATH", "/usr/bin:/bin"),
        "APPLIANCE_DATA_DIR": exports["APPLIANCE_DATA_DIR"],
    }
    created = subprocess.run(
        ["appliance", "accounts", "create", "My shop"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    listed = subprocess.run(
        [Path(sys.executable).with_name("appliance"), "accounts", "list"],
        cwd=ROOT,
        env=process_env(overrides),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "my-shop.smtp" in listed.stdout  # the appliance's own data, seen from its folder
    lost = subprocess.run(
        ["appliance", "accounts", "list"],
        cwd=elsewhere,
        env=base | {"PATH": env["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lost.returncode == 1 and f"no appliance data in {elsewhere / 'data'}" in lost.stderr
    assert not (elsewhere / "data").exists()


def test_serve_with_an_unreadable_listener_setting_exits_with_a_message(overrides):
    overrides["SMTP_LISTEN"] = "587/ssl"
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=process_env(overrides), capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "SMTP_LISTEN: cannot read '587/ssl'" in done.stderr


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs util-linux setpriv to drop CAP_NET_BIND_SERVICE")
def test_a_privileged_port_without_the_capability_is_skipped_with_the_reason(overrides):
    port = free_port()
    overrides["SMTP_LISTEN"] = f"127.0.0.1:26/starttls,127.0.0.1:{port}/starttls"
    no_bind = ("setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service")
    banner = _start_and_read_banner(overrides, no_bind)
    assert (
        "SMTP 127.0.0.1:26/starttls NOT listening: Permission denied "
        "(ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    ) in banner
    assert f"listening on 127.0.0.1:{port}" in banner


def test_a_busy_dashboard_port_is_reported_and_smtp_keeps_working(overrides):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    overrides["WEB_LISTEN"] = f"127.0.0.1:{busy.getsockname()[1]}"
    smtp_port = int(overrides["SMTP_LISTEN"].split(",")[0].split(":")[1].split("/")[0])
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=process_env(overrides),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
