"""Real mail clients, with their default certificate verification, send through the appliance.

Each client talks to the real listeners over a loopback socket and is told to trust only the
appliance's generated CA (the name checked is HOSTNAME, 'relay.test'); nothing turns verification
off. A client that does not trust the CA must fail, which proves verification is on. The client
binaries come from Debian packages (php-cli, libphp-phpmailer, swaks, curl, nodejs/npm) and from
tests/clients/package.json; scripts/test.sh installs them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

CLIENTS = ROOT / "tests" / "clients"
PHPMAILER = Path("/usr/share/php/libphp-phpmailer/autoload.php")
HOSTNAME = "relay.test"  # the smtp_server fixture's HOSTNAME, named in its certificate
ULID = r"[0-9A-HJKMNP-TV-Z]{26}"
QUEUED = re.compile(rf"250 Ok: queued as ({ULID})")
SENDER = "shop@shop.test"
RECIPIENT = "customer@example.com"
# A guard against a hung client, not an assertion about speed.
HANG_GUARD = 90

needs_php = pytest.mark.skipif(
    shutil.which("php") is None or not PHPMAILER.exists(),
    reason="php-cli and libphp-phpmailer are not installed (scripts/test.sh installs them)",
)
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (CLIENTS / "node_modules" / "nodemailer").is_dir(),
    reason="node or tests/clients/node_modules is missing (scripts/test.sh runs npm ci)",
)
needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run one client to completion, capturing what it says."""
    return subprocess.run(args, capture_output=True, text=True, timeout=HANG_GUARD, env=env, stdin=subprocess.DEVNULL)


def client_env(**extra: str) -> dict[str, str]:
    """The environment without any inherited trust-store override, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS")}
    env.update(extra)
    return env


def cli_json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def json_output(proc: subprocess.CompletedProcess) -> dict:
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"client printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def stored(run_cli, subject: str, message_id: str | None = None) -> dict:
    """Find the accepted message by subject via the CLI and check what every client must get right."""
    rows = [m for m in cli_json(run_cli("messages", "list", "--json")) if m["subject"] == subject]
    assert len(rows) == 1, f"expected one message with subject {subject!r}, found {len(rows)}"
    if message_id is not None:
        assert rows[0]["id"] == message_id
    message = cli_json(run_cli("messages", "show", rows[0]["id"], "--json"))
    assert [r["address"] for r in message["recipients"]] == [RECIPIENT]
    assert message["subject"] == subject
    assert message["mail_from"] == SENDER
    assert message["tls"].startswith("TLS"), message["tls"]
    return message


def queued_id(text: str) -> str:
    match = QUEUED.search(text)
    assert match, f"no '250 Ok: queued as <ULID>' in:\n{text}"
    return match.group(1)


# -- PHPMailer (WordPress, WooCommerce) -----------------------------------------------------------
def phpmailer(smtp_server, account, subject: str, *, mode: str, trust_ca: bool = True, auth_type: str = ""):
    username, password = account
    cfg = {
        "host": "127.0.0.1",
        "port": smtp_server.starttls_port if mode == "starttls" else smtp_server.tls_port,
        "mode": mode,
        "peer_name": HOSTNAME,
        "cafile": str(smtp_server.ca) if trust_ca else "",
        "username": username,
        "password": password,
        "from": SENDER,
        "to": RECIPIENT,
        "subject": subject,
        "auth_type": auth_type,
    }
    proc = run(["php", str(CLIENTS / "phpmailer_send.php"), json.dumps(cfg)], env=client_env())
    return proc, json_output(proc)


@needs_php
@pytest.mark.parametrize(
    ("mode", "auth_type"),
    [("starttls", ""), ("smtps", ""), ("starttls", "PLAIN")],
    ids=["starttls-login", "smtps-login", "starttls-plain"],
)
def test_phpmailer_sends_over_verified_tls_and_reads_the_queue_id(smtp_server, account, run_cli, mode, auth_type):
    subject = f"PHPMailer over {mode} {auth_type or 'default auth'}"
    proc, out = phpmailer(smtp_server, account, subject, mode=mode, auth_type=auth_type)
    assert proc.returncode == 0 and out["ok"], out
    transcript = "\n".join(out["transcript"])
    # PHPMailer's own parser read the id from our reply (its SendGrid-style "Ok: queued as" pattern).
    assert re.fullmatch(ULID, out["transaction_id"] or ""), out
    assert queued_id(transcript) == out["transaction_id"]
    # With no AuthType PHPMailer picks LOGIN first when offered: that exercises the LOGIN challenges.
    assert f"AUTH {auth_type or 'LOGIN'}" in transcript
    stored(run_cli, subject, out["transaction_id"])


@needs_php
def test_phpmailer_that_does_not_trust_the_ca_refuses_the_certificate(smtp_server, account, run_cli):
    proc, out = phpmailer(smtp_server, account, "PHPMailer untrusted", mode="smtps", trust_ca=False)
    assert proc.returncode == 1 and not out["ok"]
    assert "certificate verify failed" in "\n".join(out["transcript"]) + (out["error"] or "")
    assert cli_json(run_cli("messages", "list", "--json")) == []


# -- Nodemailer (Ghost) ---------------------------------------------------------------------------
def nodemailer(
    smtp_server,
    account,
    subject: str,
    *,
    secure: bool,
    trust_ca: bool = True,
    auth_method: str = "",
):
    username, password = account
    cfg = {
        "host": "127.0.0.1",
        "port": smtp_server.tls_port if secure else smtp_server.starttls_port,
        "secure": secure,
        "servername": HOSTNAME,
        "ca": str(smtp_server.ca) if trust_ca else "",
        "username": username,
        "password": password,
        "from": SENDER,
        "to": RECIPIENT,
        "subject": subject,
        "auth_method": auth_method,
    }
    proc = run(["node", str(CLIENTS / "nodemailer_send.js"), json.dumps(cfg)], env=client_env())
    return proc, json_output(proc)


@needs_node
@pytest.mark.parametrize(
    ("secure", "auth_method"),
    [(False, ""), (True, ""), (True, "LOGIN")],
    ids=["starttls-default-plain", "implicit-default-plain", "implicit-login"],
)
def test_nodemailer_sends_over_verified_tls_and_sees_the_queue_id(smtp_server, account, run_cli, secure, auth_method):
    subject = f"Nodemailer secure={secure} {auth_method or 'default auth'}"
    proc, out = nodemailer(smtp_server, account, subject, secure=secure, auth_method=auth_method)
    assert proc.returncode == 0 and out["ok"], out
    # Nodemailer prefers PLAIN unless told otherwise.
    assert any(line.startswith(f"AUTH {auth_method or 'PLAIN'}") for line in out["transcript"]), out["transcript"]
    stored(run_cli, subject, queued_id(out["response"]))


@needs_node
def test_nodemailer_that_does_not_trust_the_ca_refuses_the_certificate(smtp_server, account, run_cli):
    proc, out = nodemailer(smtp_server, account, "Nodemailer untrusted", secure=False, trust_ca=False)
    assert proc.returncode == 1 and not out["ok"]
    assert "certificate" in out["error"], out
    assert cli_json(run_cli("messages", "list", "--json")) == []


# -- Django ---------------------------------------------------------------------------------------
def django_send(smtp_server, account, subject: str, *, use_ssl: bool, trust_ca: bool = True):
    username, password = account
    cfg = {
        "host": HOSTNAME,
        "port": smtp_server.tls_port if use_ssl else smtp_server.starttls_port,
        "use_tls": not use_ssl,
        "use_ssl": use_ssl,
        "username": username,
        "password": password,
        "from": SENDER,
        "to": RECIPIENT,
        "subject": subject,
    }
    # Django uses ssl.create_default_context(): OpenSSL's SSL_CERT_FILE is the ordinary way to trust a CA.
    env = client_env(SSL_CERT_FILE=str(smtp_server.ca)) if trust_ca else client_env()
    return run([sys.executable, str(CLIENTS / "django_send.py"), json.dumps(cfg)], env=env)


@pytest.mark.parametrize("use_ssl", [False, True], ids=["EMAIL_USE_TLS", "EMAIL_USE_SSL"])
def test_django_smtp_backend_sends_over_verified_tls(smtp_server, account, run_cli, use_ssl):
    subject = f"Django use_ssl={use_ssl}"
    proc = django_send(smtp_server, account, subject, use_ssl=use_ssl)
    assert proc.returncode == 0, proc.stderr
    assert json_output(proc) == {"ok": True, "sent": 1}
    stored(run_cli, subject)


def test_django_that_does_not_trust_the_ca_refuses_the_certificate(smtp_server, account, run_cli):
    proc = django_send(smtp_server, account, "Django untrusted", use_ssl=False, trust_ca=False)
    assert proc.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr
    assert cli_json(run_cli("messages", "list", "--json")) == []


# -- swaks ----------------------------------------------------------------------------------------
def swaks(smtp_server, account, subject: str, *, auth: str, implicit: bool = False, trust_ca: bool = True):
    username, password = account
    port = smtp_server.tls_port if implicit else smtp_server.starttls_port
    args = [
        "swaks",
        "--server",
        f"127.0.0.1:{port}",
        "--helo",
        "client.test",
        "--from",
        SENDER,
        "--to",
        RECIPIENT,
        "--header",
        f"Subject: {subject}",
        "--auth",
        auth,
        "--auth-user",
        username,
        "--auth-password",
        password,
        "--tlsc" if implicit else "--tls",
        "--tls-verify",
        "--tls-sni",
        HOSTNAME,
        "--timeout",
        "30",
    ]
    if trust_ca:
        args += ["--tls-ca-path", str(smtp_server.ca)]
    return run(args, env=client_env())


@needs_swaks
@pytest.mark.parametrize(
    ("auth", "implicit"),
    [("PLAIN", False), ("LOGIN", False), ("LOGIN", True)],
    ids=["starttls-plain", "starttls-login", "implicit-login"],
)
def test_swaks_sends_over_verified_tls(smtp_server, account, run_cli, auth, implicit):
    subject = f"swaks {auth} implicit={implicit}"
    proc = swaks(smtp_server, account, subject, auth=auth, implicit=implicit)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"AUTH {auth}" in proc.stdout
    stored(run_cli, subject, queued_id(proc.stdout))


@needs_swaks
def test_swaks_that_does_not_trust_the_ca_refuses_the_certificate(smtp_server, account, run_cli):
    proc = swaks(smtp_server, account, "swaks untrusted", auth="PLAIN", trust_ca=False)
    assert proc.returncode != 0
    assert "certificate verify failed" in proc.stdout + proc.stderr
    assert cli_json(run_cli("messages", "list", "--json")) == []


# -- curl: the LOGIN challenges it can read (aiosmtpd#566) ----------------------------------------
def curl(
    smtp_server,
    account,
    subject: str,
    tmp_path,
    *,
    auth: str,
    implicit: bool = False,
    trust_ca: bool = True,
):
    username, password = account
    port = smtp_server.tls_port if implicit else smtp_server.starttls_port
    message = tmp_path / "message.eml"
    message.write_bytes(f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n\r\nSent by curl.\r\n".encode())
    args = [
        "curl",
        "--silent",
        "--show-error",
        "--verbose",
        "--url",
        f"{'smtps' if implicit else 'smtp'}://{HOSTNAME}:{port}",
        "--resolve",
        f"{HOSTNAME}:{port}:127.0.0.1",
        "--user",
        f"{username}:{password}",
        "--login-options",
        f"AUTH={auth}",
        "--mail-from",
        SENDER,
        "--mail-rcpt",
        RECIPIENT,
        "--upload-file",
        str(message),
        "--max-time",
        "60",
    ]
    if not implicit:
        args.append("--ssl-reqd")
    if trust_ca:
        args += ["--cacert", str(smtp_server.ca)]
    return run(args, env=client_env())


@needs_curl
@pytest.mark.parametrize(
    ("auth", "implicit"),
    [("LOGIN", False), ("PLAIN", False), ("LOGIN", True)],
    ids=["starttls-login", "starttls-plain", "smtps-login"],
)
def test_curl_sends_over_verified_tls_with_login_and_plain(smtp_server, account, run_cli, tmp_path, auth, implicit):
    subject = f"curl {auth} implicit={implicit}"
    proc = curl(smtp_server, account, subject, tmp_path, auth=auth, implicit=implicit)
    assert proc.returncode == 0, proc.stderr
    assert f"> AUTH {auth}" in proc.stderr
    stored(run_cli, subject, queued_id(proc.stderr))


@needs_curl
def test_curl_sees_login_challenges_without_nul_bytes_that_go_clients_also_accept(smtp_server, account, tmp_path):
    """Regression for aiosmtpd#566: its challenges "User Name\\0" / "Password\\0" made Go's
    common loginAuth (an exact match on "Username:" / "Password:") and strict clients abort AUTH."""
    proc = curl(smtp_server, account, "curl challenges", tmp_path, auth="LOGIN")
    assert proc.returncode == 0, proc.stderr
    challenges = re.findall(r"^< 334 (\S+)", proc.stderr, flags=re.MULTILINE)
    assert [base64.b64decode(c) for c in challenges] == [b"Username:", b"Password:"], proc.stderr


@needs_curl
def test_curl_that_does_not_trust_the_ca_refuses_the_certificate(smtp_server, account, run_cli, tmp_path):
    proc = curl(smtp_server, account, "curl untrusted", tmp_path, auth="PLAIN", trust_ca=False)
    assert proc.returncode == 60, proc.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert cli_json(run_cli("messages", "list", "--json")) == []
