"""Integration guides on an account's pages: each client's settings filled in with the account's real
host, port and username, a sender it may use, and its password on the page that shows it once.

The snippets follow docs/clients.md, whose clients tests/test_real_clients.py drives for real;
tests/web/test_guides.py runs the swaks, curl and Django snippets exactly as a page shows them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from .. import senders
from ..models import Domain, Sender, SmtpAccount
from . import connection

PASSWORD_PLACEHOLDER = "YOUR-SMTP-PASSWORD"
CA_PATH = "/etc/ssl/appliance-ca.pem"  # where the guides ask to copy the local CA on a client machine
RECIPIENT = "you@example.org"


@dataclass(frozen=True)
class Guide:
    key: str
    title: str
    where: str  # where the snippet goes
    code: str
    note: str = ""


@dataclass(frozen=True)
class Values:
    host: str
    port: int
    implicit: bool  # TLS from the first byte (465) rather than STARTTLS
    username: str
    password: str
    sender: str
    own_ca: bool  # the certificate comes from the appliance's local CA: clients must trust CA_PATH


def values(settings: dict, account: SmtpAccount, password: str | None) -> Values:
    ports = connection.submission_ports(settings)
    port = next((p for p in ports if p.mode == "starttls"), ports[0] if ports else None)
    return Values(
        host=settings["HOSTNAME"],
        port=port.port if port else 587,
        implicit=bool(port and port.mode == "tls"),
        username=account.username,
        password=password or PASSWORD_PLACEHOLDER,
        sender=example_sender(account),
        own_ca=not settings["TLS_CERT"],
    )


def example_sender(account: SmtpAccount) -> str:
    """An address this account may send as: one it is authorized for, else a verified one."""
    authorized = senders.lines(account.authorized_senders)
    if authorized:
        return authorized[0]
    domains = senders.lines(account.authorized_domains)
    if not domains:
        domain = Domain.select(Domain.name).where(Domain.verified).order_by(Domain.id).first()
        if domain is None:
            sender = Sender.select(Sender.email).where(Sender.verified_at.is_null(False)).order_by(Sender.id).first()
            return sender.email if sender else "you@your-verified-domain.example"
        domains = [domain.name]
    return f"noreply@{domains[0]}"


def _fields(*pairs: tuple[str, object]) -> str:
    """Settings to type into a form, one `Name:  value` a line, the values aligned."""
    width = max(len(name) for name, _ in pairs) + 3  # the colon and two spaces
    return "\n".join(f"{name + ':':<{width}}{value}" for name, value in pairs)


def guides(v: Values) -> list[Guide]:
    secure, tls_word = ("ssl", "SSL") if v.implicit else ("tls", "TLS")
    dsn_user, dsn_password = quote(v.username, safe=""), quote(v.password, safe="")
    scheme = "smtps" if v.implicit else "smtp"
    php_ca = f"\n    $mail->SMTPOptions = ['ssl' => ['cafile' => '{CA_PATH}']];" if v.own_ca else ""
    node_ca = f"\n  tls: {{ ca: fs.readFileSync({json.dumps(CA_PATH)}) }}," if v.own_ca else ""
    curl_ca = f" --cacert {CA_PATH}" if v.own_ca else ""
    swaks_ca = f" --tls-ca-path {CA_PATH}" if v.own_ca else ""
    return [
        Guide("wordpress", "WordPress / WooCommerce", "WP Mail SMTP, FluentSMTP or Post SMTP: \"Other SMTP\"",
              _fields(("SMTP host", v.host), ("SMTP port", v.port), ("Encryption", tls_word),
                      ("Authentication", "on"), ("SMTP username", v.username), ("SMTP password", v.password),
                      ("From email", v.sender))),
        Guide("phpmailer", "WordPress without a plugin (PHPMailer)", "wp-content/mu-plugins/appliance-smtp.php",
              f"<?php\nadd_action('phpmailer_init', function ($mail) {{\n    $mail->isSMTP();\n"
              f"    $mail->Host = '{v.host}';\n    $mail->Port = {v.port};\n    $mail->SMTPSecure = '{secure}';\n"
              f"    $mail->SMTPAuth = true;\n    $mail->Username = '{v.username}';\n"
              f"    $mail->Password = '{v.password}';{php_ca}\n}});"),
        Guide("laravel", "Laravel", ".env",
              f"MAIL_MAILER=smtp\nMAIL_HOST={v.host}\nMAIL_PORT={v.port}\n"
              + ("MAIL_SCHEME=smtps\n" if v.implicit else "")
              + f"MAIL_USERNAME={v.username}\nMAIL_PASSWORD={v.password}\nMAIL_FROM_ADDRESS={v.sender}"),
        Guide("symfony", "Symfony Mailer", ".env",
              f"MAILER_DSN={scheme}://{dsn_user}:{dsn_password}@{v.host}:{v.port}",
              "STARTTLS is used automatically on port 587." if not v.implicit else ""),
        Guide("django", "Django", "settings.py",
              f'EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"\nEMAIL_HOST = "{v.host}"\n'
              f"EMAIL_PORT = {v.port}\n"
              + ("EMAIL_USE_SSL = True\n" if v.implicit else "EMAIL_USE_TLS = True\n")
              + f'EMAIL_HOST_USER = "{v.username}"\nEMAIL_HOST_PASSWORD = "{v.password}"\n'
              f'DEFAULT_FROM_EMAIL = "{v.sender}"',
              f"Trust the CA with SSL_CERT_FILE={CA_PATH} in the process's environment." if v.own_ca else ""),
        Guide("ghost", "Ghost", "config.production.json",
              json.dumps({"mail": {"from": v.sender, "transport": "SMTP", "options": {
                  "host": v.host, "port": v.port, "secure": v.implicit, "requireTLS": not v.implicit,
                  "auth": {"user": v.username, "pass": v.password}}}}, indent=2),
              f"Trust the CA with NODE_EXTRA_CA_CERTS={CA_PATH} in Ghost's environment." if v.own_ca else ""),
        Guide("nodemailer", "Node.js (Nodemailer)", "your code",
              f"const transporter = nodemailer.createTransport({{\n  host: {json.dumps(v.host)},\n"
              f"  port: {v.port},\n  secure: {json.dumps(v.implicit)},{node_ca}\n"
              f"  auth: {{ user: {json.dumps(v.username)}, pass: {json.dumps(v.password)} }},\n}});"),
        Guide("swaks", "swaks (a test from the command line)", "a shell",
              f"swaks --server {v.host}:{v.port} {'--tlsc' if v.implicit else '--tls'} --tls-verify{swaks_ca} "
              f"--auth LOGIN --auth-user {v.username} --auth-password '{v.password}' "
              f"--from {v.sender} --to {RECIPIENT}"),
        Guide("curl", "curl", "a shell (message.eml holds the message, headers first)",
              f"curl --url {scheme}://{v.host}:{v.port} --ssl-reqd{curl_ca} --user '{v.username}:{v.password}' "
              f"--mail-from {v.sender} --mail-rcpt {RECIPIENT} --upload-file message.eml"),
        Guide("device", "Printers, scanners and other devices", "the device's e-mail settings",
              _fields(("SMTP server", v.host), ("Port", v.port), ("Security", "SSL/TLS" if v.implicit else "STARTTLS"),
                      ("Authentication", "on (LOGIN or PLAIN)"), ("User name", v.username),
                      ("Password", v.password), ("Sender address", v.sender)),
              "A device that cannot log in can use an IP-only account (created with its address)."),
    ]
