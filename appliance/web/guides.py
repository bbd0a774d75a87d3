"""Integration guides on an account's pages: each client's settings filled in with the account's real
host, port and username, a sender it may use, and its password on the page that shows it once.

The snippets follow docs/clients.md, whose clients tests/smtp/test_real_clients.py drives for real;
tests/web/test_guides.py runs every snippet that can run here (Symfony Mailer with the Laravel and
Symfony forms, PHPMailer, Django, Ghost's Nodemailer settings, Nodemailer, msmtp, swaks, curl)
exactly as a page shows it, and checks the fields of the settings screens that cannot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from .. import senders, tls
from ..models import Domain, Sender, SmtpAccount
from ..policy import acceptance
from . import connection

PASSWORD_PLACEHOLDER = "YOUR-SMTP-PASSWORD"
CA_PATH = "/etc/ssl/appliance-ca.pem"  # where the guides ask to copy the local CA on a client machine
RECIPIENT = "you@example.org"


@dataclass(frozen=True)
class Guide:
    key: str
    title: str
    where: str  # where the snippet goes: a file, or the menu path to the platform's settings screen
    code: str
    note: str = ""
    group: str = ""  # the heading the guide is listed under


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
        own_ca=not tls.publicly_trusted(settings),
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
    return f"noreply@{domains[0].removeprefix(acceptance.SUBDOMAINS)}"


def _fields(*pairs: tuple[str, object]) -> str:
    """Settings to type into a form, one `Name:  value` a line, the values aligned."""
    width = max(len(name) for name, _ in pairs) + 3  # the colon and two spaces
    return "\n".join(f"{name + ':':<{width}}{value}" for name, value in pairs)


SCREENS = "Shops and CMS: their settings screens"
CODE = "Frameworks and code"
SHELL = "Command line, cron, printers and devices"
CLIENTS = "Mail clients and CRM"
# Hosted shops and integrators that MessageFlow's knowledge base lists, whose settings screens it
# does not show: their fields carry the names of its universal parameter table (docs/clients.md).
HOSTED = (
    ("idosell", "IdoSell"),
    ("shoper", "Shoper"),
    ("atomstore", "AtomStore"),
    ("selly", "Selly"),
    ("sote", "SOTE"),
    ("efitness", "eFitness"),
    ("base", "Base"),
)


def guides(v: Values) -> list[Guide]:
    return [*_screens(v), *_code(v), *_shell(v), *_clients(v)]


def _encryption(v: Values, starttls: str, implicit: str) -> str:
    return implicit if v.implicit else starttls


def _screens(v: Values) -> list[Guide]:
    domain = v.sender.rpartition("@")[2]
    hosted = [
        Guide(
            key,
            name,
            f"{name}'s SMTP (outgoing mail) settings",
            _fields(
                ("SMTP Server (Host)", v.host),
                ("Port", v.port),
                ("Encryption", _encryption(v, "TLS / STARTTLS", "SSL")),
                ("Login (User)", v.username),
                ("Password", v.password),
                ("Sender (From field)", v.sender),
            ),
            group=SCREENS,
        )
        for key, name in HOSTED
    ]
    return [
        Guide(
            "wordpress",
            "WordPress",
            "WP Mail SMTP → Settings (FluentSMTP, Post SMTP: the same fields)",
            _fields(
                ("From Email", v.sender),
                ("Mailer", "Other SMTP"),
                ("SMTP Host", v.host),
                ("Encryption", _encryption(v, "TLS", "SSL")),
                ("SMTP Port", v.port),
                ("Auto TLS", "on"),
                ("Authentication", "on"),
                ("SMTP Username", v.username),
                ("SMTP Password", v.password),
            ),
            group=SCREENS,
        ),
        Guide(
            "woocommerce",
            "WooCommerce",
            "WooCommerce → Settings → Emails, then WordPress's SMTP plugin",
            _fields(
                ("\u201cFrom\u201d address", v.sender),
                ("SMTP Host", v.host),
                ("SMTP Port", v.port),
                ("Encryption", _encryption(v, "TLS", "SSL")),
                ("SMTP Username", v.username),
                ("SMTP Password", v.password),
            ),
            "WooCommerce sends through WordPress: set its sender here and the SMTP fields in the "
            "WordPress guide's plugin.",
            group=SCREENS,
        ),
        Guide(
            "magento",
            "Magento (Adobe Commerce)",
            "Stores → Configuration → Advanced → System → Mail Sending Settings",
            _fields(
                ("Transport", "SMTP"),
                ("Host", v.host),
                ("Port", v.port),
                ("SSL", _encryption(v, "TLS", "SSL")),
                ("Authentication", "Login"),
                ("Username", v.username),
                ("Password", v.password),
                ("Sender Email", v.sender),
            ),
            "Sender Email is under Stores → Configuration → General → Store Email Addresses. Before "
            "Magento 2.4.8, the MagePal SMTP extension adds the same fields.",
            group=SCREENS,
        ),
        Guide(
            "prestashop",
            "PrestaShop",
            "Advanced Parameters → E-mail",
            _fields(
                ("Mail method", "Set my own SMTP parameters (for advanced users ONLY)"),
                ("Mail domain name", domain),
                ("SMTP server", v.host),
                ("SMTP username", v.username),
                ("SMTP password", v.password),
                ("Encryption", _encryption(v, "TLS", "SSL")),
                ("Port", v.port),
                ("Shop email", v.sender),
            ),
            "Shop email is under Shop Parameters → Contact → Stores.",
            group=SCREENS,
        ),
        Guide(
            "joomla",
            "Joomla!",
            "System → Global Configuration → Server → Mail",
            _fields(
                ("Send Mail", "Yes"),
                ("Mailer", "SMTP"),
                ("From Email", v.sender),
                ("SMTP Host", v.host),
                ("SMTP Port", v.port),
                ("SMTP Security", _encryption(v, "STARTTLS", "SSL/TLS")),
                ("SMTP Authentication", "Yes"),
                ("SMTP Username", v.username),
                ("SMTP Password", v.password),
            ),
            group=SCREENS,
        ),
        Guide(
            "drupal",
            "Drupal",
            "Configuration → System → SMTP Authentication Support (the SMTP module)",
            _fields(
                ("Turn this module on or off", "On"),
                ("SMTP server", v.host),
                ("SMTP port", v.port),
                ("Use encrypted protocol", _encryption(v, "Use TLS", "Use SSL")),
                ("Username", v.username),
                ("Password", v.password),
                ("E-mail from address", v.sender),
            ),
            group=SCREENS,
        ),
        Guide(
            "opencart",
            "OpenCart",
            "System → Settings → your store → Mail",
            _fields(
                ("Mail Engine", "SMTP"),
                ("SMTP Hostname", f"{'ssl' if v.implicit else 'tls'}://{v.host}"),
                ("SMTP Username", v.username),
                ("SMTP Password", v.password),
                ("SMTP Port", v.port),
            ),
            f"The tls:// prefix turns STARTTLS on (ssl:// is TLS from the first byte). The sender is the "
            f"store's E-Mail on the Store tab: {v.sender}.",
            group=SCREENS,
        ),
        *hosted,
    ]


def _code(v: Values) -> list[Guide]:
    dsn_user, dsn_password = quote(v.username, safe=""), quote(v.password, safe="")
    scheme = "smtps" if v.implicit else "smtp"
    secure = "ssl" if v.implicit else "tls"
    php_ca = f"\n    $mail->SMTPOptions = ['ssl' => ['cafile' => '{CA_PATH}']];" if v.own_ca else ""
    php_ini_ca = f"Trust the CA with openssl.cafile={CA_PATH} in php.ini." if v.own_ca else ""
    node_ca = f"\n  tls: {{ ca: fs.readFileSync({json.dumps(CA_PATH)}) }}," if v.own_ca else ""
    return [
        Guide(
            "phpmailer",
            "WordPress without a plugin (PHPMailer)",
            "wp-content/mu-plugins/appliance-smtp.php",
            f"<?php\nadd_action('phpmailer_init', function ($mail) {{\n    $mail->isSMTP();\n"
            f"    $mail->Host = '{v.host}';\n    $mail->Port = {v.port};\n    $mail->SMTPSecure = '{secure}';\n"
            f"    $mail->SMTPAuth = true;\n    $mail->Username = '{v.username}';\n"
            f"    $mail->Password = '{v.password}';{php_ca}\n    $mail->From = '{v.sender}';\n}});",
            group=CODE,
        ),
        Guide(
            "laravel",
            "Laravel",
            ".env",
            f"MAIL_MAILER=smtp\nMAIL_HOST={v.host}\nMAIL_PORT={v.port}\n"
            + ("MAIL_SCHEME=smtps\n" if v.implicit else "")
            + f"MAIL_USERNAME={v.username}\nMAIL_PASSWORD={v.password}\nMAIL_FROM_ADDRESS={v.sender}",
            php_ini_ca,
            group=CODE,
        ),
        Guide(
            "symfony",
            "Symfony Mailer",
            ".env",
            f"MAILER_DSN={scheme}://{dsn_user}:{dsn_password}@{v.host}:{v.port}",
            " ".join(
                filter(
                    None,
                    [
                        f"Send from {v.sender}.",
                        "" if v.implicit else "STARTTLS is used automatically on this port.",
                        php_ini_ca,
                    ],
                )
            ),
            group=CODE,
        ),
        Guide(
            "django",
            "Django",
            "settings.py",
            f'EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"\nEMAIL_HOST = "{v.host}"\n'
            f"EMAIL_PORT = {v.port}\n"
            + ("EMAIL_USE_SSL = True\n" if v.implicit else "EMAIL_USE_TLS = True\n")
            + f'EMAIL_HOST_USER = "{v.username}"\nEMAIL_HOST_PASSWORD = "{v.password}"\n'
            f'DEFAULT_FROM_EMAIL = "{v.sender}"',
            f"Trust the CA with SSL_CERT_FILE={CA_PATH} in the process's environment." if v.own_ca else "",
            group=CODE,
        ),
        Guide(
            "ghost",
            "Ghost",
            "config.production.json",
            json.dumps(
                {
                    "mail": {
                        "from": v.sender,
                        "transport": "SMTP",
                        "options": {
                            "host": v.host,
                            "port": v.port,
                            "secure": v.implicit,
                            "requireTLS": not v.implicit,
                            "auth": {"user": v.username, "pass": v.password},
                        },
                    }
                },
                indent=2,
            ),
            f"Trust the CA with NODE_EXTRA_CA_CERTS={CA_PATH} in Ghost's environment." if v.own_ca else "",
            group=CODE,
        ),
        Guide(
            "nodemailer",
            "Node.js (Nodemailer)",
            "send.js",
            f'const fs = require("fs");\nconst nodemailer = require("nodemailer");\n\n'
            f"const transporter = nodemailer.createTransport({{\n  host: {json.dumps(v.host)},\n"
            f"  port: {v.port},\n  secure: {json.dumps(v.implicit)},{node_ca}\n"
            f"  auth: {{ user: {json.dumps(v.username)}, pass: {json.dumps(v.password)} }},\n}});\n\n"
            f"transporter.sendMail({{ from: {json.dumps(v.sender)}, to: {json.dumps(RECIPIENT)}, "
            f'subject: "Hello", text: "Sent through the relay." }})\n'
            f"  .then((info) => console.log(info.response));",
            group=CODE,
        ),
        Guide(
            "aspnet",
            "ASP.NET Core",
            "appsettings.json (read by your mail service)",
            json.dumps(
                {
                    "SmtpSettings": {
                        "Server": v.host,
                        "Port": v.port,
                        "Username": v.username,
                        "Password": v.password,
                        "UseSSL": v.implicit,
                        "UseStartTls": not v.implicit,
                        "From": v.sender,
                    }
                },
                indent=2,
            ),
            group=CODE,
        ),
    ]


def _shell(v: Values) -> list[Guide]:
    scheme = "smtps" if v.implicit else "smtp"
    curl_ca = f" --cacert {CA_PATH}" if v.own_ca else ""
    swaks_ca = f" --tls-ca-path {CA_PATH}" if v.own_ca else ""
    return [
        Guide(
            "msmtp",
            "msmtp (cron, scripts, print and scan servers)",
            "/etc/msmtprc, or ~/.msmtprc with chmod 600",
            f"defaults\nauth           on\ntls            on\n"
            f"tls_starttls   {'off' if v.implicit else 'on'}\n"
            f"tls_trust_file {CA_PATH if v.own_ca else 'system'}\n\n"
            f"account        appliance\nhost           {v.host}\nport           {v.port}\n"
            f"user           {v.username}\npassword       {v.password}\nfrom           {v.sender}\n"
            f"set_from_header on\n\n"
            f"account default : appliance",
            f"Test it with printf 'Subject: test\\n\\nHello\\n' | msmtp {RECIPIENT}. With the msmtp-mta "
            f"package msmtp is the system's sendmail: cron mails each job's output to MAILTO through it, "
            f"and so do CUPS and scanner daemons that call sendmail. set_from_header on replaces the From: "
            f"header they write (cron's is root) with the account's sender.",
            group=SHELL,
        ),
        Guide(
            "swaks",
            "swaks (a test from the command line)",
            "a shell",
            f"swaks --server {v.host}:{v.port} {'--tlsc' if v.implicit else '--tls'} --tls-verify{swaks_ca} "
            f"--auth LOGIN --auth-user {v.username} --auth-password '{v.password}' "
            f"--from {v.sender} --to {RECIPIENT}",
            group=SHELL,
        ),
        Guide(
            "curl",
            "curl",
            "a shell (message.eml holds the message, headers first)",
            f"curl --url {scheme}://{v.host}:{v.port} --ssl-reqd{curl_ca} --user '{v.username}:{v.password}' "
            f"--mail-from {v.sender} --mail-rcpt {RECIPIENT} --upload-file message.eml",
            group=SHELL,
        ),
        Guide(
            "device",
            "Printers, scanners and other devices",
            "the device's e-mail settings",
            _fields(
                ("SMTP server", v.host),
                ("Port", v.port),
                ("Security", "SSL/TLS" if v.implicit else "STARTTLS"),
                ("Authentication", "on (LOGIN or PLAIN)"),
                ("User name", v.username),
                ("Password", v.password),
                ("Sender address", v.sender),
            ),
            "A device that cannot log in can use an IP-only account (created with its address).",
            group=SHELL,
        ),
    ]


def _clients(v: Values) -> list[Guide]:
    return [
        Guide(
            "outlook",
            "Outlook",
            "File → Account Settings → Account Settings → Change → More Settings",
            _fields(
                ("Email Address", v.sender),
                ("Outgoing mail server (SMTP)", v.host),
                ("My outgoing server (SMTP) requires authentication", "on: Log on using"),
                ("User Name", v.username),
                ("Password", v.password),
                ("Outgoing server (SMTP)", f"{v.port} (Advanced tab)"),
                ("Use the following type of encrypted connection", _encryption(v, "STARTTLS", "SSL/TLS")),
            ),
            "The appliance only sends: the account's incoming server stays its own mailbox's.",
            group=CLIENTS,
        ),
        Guide(
            "salesforce",
            "Salesforce",
            "Setup → Email → Email Relays, then Email Domain Filters",
            _fields(
                ("Host", v.host),
                ("Port", v.port),
                ("TLS Setting", "Required Verify"),
                ("Enable SMTP Auth", "on"),
                ("Username", v.username),
                ("Password", v.password),
                ("Sender Domain (Email Domain Filter)", v.sender.rpartition("@")[2]),
            ),
            "Salesforce connects from its own servers: the appliance must be reachable from the internet "
            "with a publicly trusted certificate (TLS_CERT), on port 25, 587, 10025 or 11025.",
            group=CLIENTS,
        ),
    ]
