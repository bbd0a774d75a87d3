"""Integration guides on an account's pages, filled with its real settings, and run as shown.

HOSTNAME is `localhost` here so that the clients, separate processes that do not share the test's
name resolution, reach the appliance by the name its certificate is checked against. The only
changes made to a snippet before it runs are the steps the page asks of the user: the CA
certificate is saved at the path the guides name (here: the CA's real path is put in its place),
and each file is saved where the guide says (here: in the test's directory). Every message sent
must reach the sink MX of example.org through the appliance's delivery workers.
"""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import accounts
from appliance.models import Message, SmtpAccount
from appliance.web.guides import CA_PATH, HOSTED, PASSWORD_PLACEHOLDER, RECIPIENT
from tests.support import ROOT
from tests.support.process import process_env
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for

from .conftest import CHROMIUM, sign_in

PASSWORD = re.compile(r'id="smtp-password" type="text" value="([A-Za-z0-9]{24})"')
CLIENTS = ROOT / "tests" / "clients"
SYMFONY_MAILER = Path("/usr/share/php/Symfony/Component/Mailer/autoload.php")
PHPMAILER = Path("/usr/share/php/libphp-phpmailer/autoload.php")
SENDER = "noreply@shop.test"  # the verified domain gives the guides' sender
HANG_GUARD = 90  # seconds: a guard against a hung client, not an assertion about speed
EVERY_GUIDE = {
    "wordpress",
    "woocommerce",
    "magento",
    "prestashop",
    "joomla",
    "drupal",
    "opencart",
    *(key for key, _ in HOSTED),
    "phpmailer",
    "laravel",
    "symfony",
    "django",
    "ghost",
    "nodemailer",
    "aspnet",
    "msmtp",
    "swaks",
    "curl",
    "device",
    "outlook",
    "salesforce",
}

needs_php = pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed")
needs_symfony = pytest.mark.skipif(not SYMFONY_MAILER.exists(), reason="php-symfony-mailer is not installed")
needs_phpmailer = pytest.mark.skipif(not PHPMAILER.exists(), reason="libphp-phpmailer is not installed")
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (CLIENTS / "node_modules" / "nodemailer").is_dir(),
    reason="node or tests/clients/node_modules is missing (scripts/test.sh runs npm ci)",
)


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides({**overrides, "HOSTNAME": "localhost"}, dns_server, delivery_port)


@pytest.fixture
def sink(dns_server, sink_mx):
    """example.org's MX: an aiosmtpd sink on 127.0.0.3."""
    dns_server.mx("example.org", (10, "mx.example.org"))
    dns_server.a("mx.example.org", "127.0.0.3")
    return sink_mx("127.0.0.3")


def snippets(body: str) -> dict[str, str]:
    return {
        key: html.unescape(code) for key, code in re.findall(r'<code data-guide="([a-z]+)">(.*?)</code>', body, re.S)
    }


def notes(body: str) -> dict[str, str]:
    pattern = r'<code data-guide="([a-z]+)">.*?</code></pre>\s*(?:<p class="hint">(.*?)</p>)?'
    return {key: html.unescape(note) for key, note in re.findall(pattern, body, re.S)}


def fields(code: str) -> dict[str, str]:
    """A settings screen's guide: `Name:  value` a line."""
    return dict(re.match(r"(.+?):\s{2,}(.*)$", line).groups() for line in code.splitlines())


@dataclass
class Created:
    page: str
    password: str
    response: object
    ca: Path  # the CA certificate that the page offers for download, where the test keeps it
    sink: object

    @property
    def guides(self) -> dict[str, str]:
        return snippets(self.page)

    @property
    def notes(self) -> dict[str, str]:
        return notes(self.page)

    def shown(self, key: str) -> str:
        """A guide's text as shown, with the CA saved at the path the guides name."""
        return self.guides[key].replace(CA_PATH, str(self.ca))

    def command(self, key: str) -> list[str]:
        return shlex.split(self.shown(key))

    def save(self, key: str, path: Path) -> Path:
        path.write_text(self.shown(key) + "\n")
        return path

    def delivered(self, subject: str):
        """The message with this subject as the sink MX received it from the appliance."""

        def find():
            return next((m for m in self.sink.messages if f"Subject: {subject}\r\n".encode() in m.data), None)

        message = wait_for(find, timeout=HANG_GUARD)
        assert message, f"{subject!r} did not reach the sink MX: {[m.data[:200] for m in self.sink.messages]}"
        assert (message.mail_from, message.rcpts) == (SENDER, [RECIPIENT])
        return message


@pytest.fixture
def created(client, relay, shop_domain, sink) -> Created:
    """Create an account in the dashboard; its page shows the password once, with the guides."""
    response = client.form(
        "/accounts/new", {"name": "Guide shop", "priority": "3", "active": "on"}, follow_redirects=True
    )
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert 'href="/accounts/ca.pem"' in body
    return Created(body, PASSWORD.search(body).group(1), response, relay.smtp.ca, sink)


def run(args, *, env=None, **kwargs) -> subprocess.CompletedProcess:
    """Run a client with no inherited trust-store override; stdin is empty unless ``input`` is given."""
    base = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS")}
    if "input" not in kwargs:
        kwargs["stdin"] = subprocess.DEVNULL
    return subprocess.run(
        args, capture_output=True, text=True, timeout=HANG_GUARD, env={**base, **(env or {})}, **kwargs
    )


def test_the_password_page_fills_every_guide_with_the_real_credentials(created):
    password, guides = created.password, created.guides
    assert created.response.headers["Cache-Control"] == "no-store"
    assert set(guides) == EVERY_GUIDE
    username = SmtpAccount.get(SmtpAccount.name == "Guide shop").username
    port = int(re.search(r"MAIL_PORT=(\d+)", guides["laravel"]).group(1))
    assert (
        f"MAIL_HOST=localhost\nMAIL_PORT={port}\nMAIL_USERNAME={username}\nMAIL_PASSWORD={password}"
        in guides["laravel"]
    )
    assert guides["symfony"] == f"MAILER_DSN=smtp://{username}:{password}@localhost:{port}"
    assert f'"pass": "{password}"' in guides["ghost"] and '"requireTLS": true' in guides["ghost"]
    assert all(password in code for key, code in guides.items()), "a guide without the password"
    # The sender in each guide or its note; Salesforce routes by the sender's domain.
    assert [key for key, code in guides.items() if SENDER not in code + created.notes[key]] == ["salesforce"]
    assert f"MAIL_FROM_ADDRESS={SENDER}" in guides["laravel"]
    assert f"$mail->SMTPOptions = ['ssl' => ['cafile' => '{CA_PATH}']];" in guides["phpmailer"]


def test_every_settings_screen_guide_carries_the_values_under_the_platforms_field_names(created):
    """The platforms that cannot run here: each field its screen names holds the account's value."""
    password, port = created.password, int(re.search(r"MAIL_PORT=(\d+)", created.guides["laravel"]).group(1))
    username = SmtpAccount.get(SmtpAccount.name == "Guide shop").username
    common = {"host": "localhost", "port": str(port), "user": username, "password": password, "sender": SENDER}
    expected = {
        "wordpress": {
            "SMTP Host": "host",
            "SMTP Port": "port",
            "SMTP Username": "user",
            "SMTP Password": "password",
            "From Email": "sender",
            "Mailer": "=Other SMTP",
            "Encryption": "=TLS",
        },
        "woocommerce": {
            "\u201cFrom\u201d address": "sender",
            "SMTP Host": "host",
            "SMTP Port": "port",
            "SMTP Username": "user",
            "SMTP Password": "password",
        },
        "magento": {
            "Transport": "=SMTP",
            "Host": "host",
            "Port": "port",
            "SSL": "=TLS",
            "Authentication": "=Login",
            "Username": "user",
            "Password": "password",
            "Sender Email": "sender",
        },
        "prestashop": {
            "Mail domain name": "=shop.test",
            "SMTP server": "host",
            "SMTP username": "user",
            "SMTP password": "password",
            "Encryption": "=TLS",
            "Port": "port",
            "Shop email": "sender",
        },
        "joomla": {
            "Mailer": "=SMTP",
            "From Email": "sender",
            "SMTP Host": "host",
            "SMTP Port": "port",
            "SMTP Security": "=STARTTLS",
            "SMTP Authentication": "=Yes",
            "SMTP Username": "user",
            "SMTP Password": "password",
        },
        "drupal": {
            "SMTP server": "host",
            "SMTP port": "port",
            "Use encrypted protocol": "=Use TLS",
            "Username": "user",
            "Password": "password",
            "E-mail from address": "sender",
        },
        "opencart": {
            "Mail Engine": "=SMTP",
            "SMTP Hostname": "=tls://localhost",
            "SMTP Username": "user",
            "SMTP Password": "password",
            "SMTP Port": "port",
        },
        **{
            key: {
                "SMTP Server (Host)": "host",
                "Port": "port",
                "Encryption": "=TLS / STARTTLS",
                "Login (User)": "user",
                "Password": "password",
                "Sender (From field)": "sender",
            }
            for key, _ in HOSTED
        },
        "device": {
            "SMTP server": "host",
            "Port": "port",
            "Security": "=STARTTLS",
            "User name": "user",
            "Password": "password",
            "Sender address": "sender",
        },
        "outlook": {
            "Email Address": "sender",
            "Outgoing mail server (SMTP)": "host",
            "User Name": "user",
            "Password": "password",
            "Outgoing server (SMTP)": f"={port} (Advanced tab)",
            "Use the following type of encrypted connection": "=STARTTLS",
        },
        "salesforce": {
            "Host": "host",
            "Port": "port",
            "TLS Setting": "=Required Verify",
            "Username": "user",
            "Password": "password",
            "Sender Domain (Email Domain Filter)": "=shop.test",
        },
    }
    for key, labels in expected.items():
        shown = fields(created.guides[key])
        want = {label: value[1:] if value.startswith("=") else common[value] for label, value in labels.items()}
        assert {label: shown.get(label) for label in want} == want, key
    aspnet = json.loads(created.guides["aspnet"])["SmtpSettings"]
    assert aspnet == {
        "Server": "localhost",
        "Port": port,
        "Username": username,
        "Password": password,
        "UseSSL": False,
        "UseStartTls": True,
        "From": SENDER,
    }
    assert "tls:// prefix turns STARTTLS on" in created.notes["opencart"] and SENDER in created.notes["opencart"]


def test_the_account_page_shows_a_placeholder_and_the_ca_to_download(app, client, smtp_server, shop_domain):
    with app.app_context():
        account, password = accounts.create("Blog")
        SmtpAccount.update(authorized_senders="news@shop.test").where(SmtpAccount.id == account.id).execute()
    body = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    guides = snippets(body)
    assert password not in body
    assert set(guides) == EVERY_GUIDE
    assert all(PASSWORD_PLACEHOLDER in code for code in guides.values()), "a guide without the placeholder"
    assert f'EMAIL_HOST_PASSWORD = "{PASSWORD_PLACEHOLDER}"' in guides["django"]
    assert 'DEFAULT_FROM_EMAIL = "news@shop.test"' in guides["django"]  # the account's own sender
    assert fields(guides["magento"])["Sender Email"] == "news@shop.test"
    assert 'href="/accounts/ca.pem"' in body
    ca = client.get("/accounts/ca.pem")
    assert ca.status_code == 200 and ca.get_data() == smtp_server.ca.read_bytes()
    assert "appliance-ca.pem" in ca.headers["Content-Disposition"]


def test_a_subdomain_entry_gives_the_guides_a_sender_at_the_domain_itself(app, client, smtp_server, shop_domain):
    with app.app_context():
        account, _ = accounts.create("Blog")
        SmtpAccount.update(authorized_domains="*.shop.test").where(SmtpAccount.id == account.id).execute()
    guides = snippets(client.get(f"/accounts/{account.id}").get_data(as_text=True))
    assert 'DEFAULT_FROM_EMAIL = "noreply@shop.test"' in guides["django"]
    assert not any("*." in code for code in guides.values())


def test_an_implicit_tls_port_alone_turns_every_guide_to_ssl(app, client, smtp_server, shop_domain, overrides):
    app.config["SMTP_LISTEN"] = overrides["SMTP_LISTEN"].split(",")[1]  # the /tls listener only
    with app.app_context():
        account, _ = accounts.create("Legacy")
    guides = snippets(client.get(f"/accounts/{account.id}").get_data(as_text=True))
    assert "MAIL_SCHEME=smtps" in guides["laravel"] and guides["symfony"].startswith("MAILER_DSN=smtps://")
    assert fields(guides["joomla"])["SMTP Security"] == "SSL/TLS"
    assert fields(guides["opencart"])["SMTP Hostname"] == "ssl://localhost"
    assert fields(guides["magento"])["SSL"] == "SSL" and fields(guides["wordpress"])["Encryption"] == "SSL"
    assert "tls_starttls   off" in guides["msmtp"] and "--tlsc" in guides["swaks"]
    assert '"secure": true' in guides["ghost"] and "EMAIL_USE_SSL = True" in guides["django"]


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_the_swaks_guide_sends_as_shown(created):
    proc = run(created.command("swaks"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "250 Ok: queued as" in proc.stdout
    assert Message.get().mail_from == SENDER
    created.delivered(re.search(r"^ ~> Subject: (.*)$", proc.stdout, re.M).group(1))  # sent over TLS (~>)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_guide_sends_as_shown(created, tmp_path):
    (tmp_path / "message.eml").write_bytes(b"From: noreply@shop.test\r\nSubject: curl guide\r\n\r\nHello\r\n")
    proc = run(created.command("curl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Message.get().subject == "curl guide"
    created.delivered("curl guide")


def test_the_django_guide_sends_as_shown(created, overrides, tmp_path):
    created.save("django", tmp_path / "guide_settings.py")
    send = textwrap.dedent("""
        import django
        django.setup()
        from django.core.mail import send_mail
        print(send_mail("Django guide", "Hello", None, ["you@example.org"]))
    """)
    env = {
        **process_env(overrides),
        "DJANGO_SETTINGS_MODULE": "guide_settings",
        "PYTHONPATH": str(tmp_path),
        "SSL_CERT_FILE": str(created.ca),
    }  # the guide's note: trust the CA this way
    assert f"SSL_CERT_FILE={CA_PATH}" in created.notes["django"]
    proc = run([sys.executable, "-c", send], env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr
    message = Message.get()
    assert (message.subject, message.mail_from) == ("Django guide", SENDER)
    created.delivered("Django guide")


def php_with_the_guides_ca(created, key: str) -> list[str]:
    """php with the php.ini setting the guide's note asks for (openssl.cafile), on the command line."""
    setting = re.search(r"openssl\.cafile=(\S+) in php\.ini", created.notes[key]).group(1).rstrip(".")
    return ["php", "-d", f"openssl.cafile={setting.replace(CA_PATH, str(created.ca))}"]


def php_result(proc) -> dict:
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"the PHP client printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@needs_php
@needs_symfony
def test_the_laravel_guide_sends_through_symfony_mailer_as_shown(created, tmp_path):
    env_file = created.save("laravel", tmp_path / ".env")
    proc = run(
        [
            *php_with_the_guides_ca(created, "laravel"),
            str(CLIENTS / "symfony_mailer_send.php"),
            "laravel",
            str(env_file),
            "",
            RECIPIENT,
            "Laravel guide",
        ]
    )
    out = php_result(proc)
    assert proc.returncode == 0 and out["ok"], out
    assert "STARTTLS" in out["debug"] and "250 Ok: queued as" in out["debug"]
    created.delivered("Laravel guide")


@needs_php
@needs_symfony
def test_the_symfony_dsn_guide_sends_as_shown(created, tmp_path):
    env_file = created.save("symfony", tmp_path / ".env")
    sender = re.search(r"Send from (\S+)\.", created.notes["symfony"]).group(1)
    proc = run(
        [
            *php_with_the_guides_ca(created, "symfony"),
            str(CLIENTS / "symfony_mailer_send.php"),
            "symfony",
            str(env_file),
            sender,
            RECIPIENT,
            "Symfony guide",
        ]
    )
    out = php_result(proc)
    assert proc.returncode == 0 and out["ok"], out
    assert "STARTTLS" in out["debug"]
    created.delivered("Symfony guide")


@needs_php
@needs_symfony
def test_symfony_mailer_without_the_guides_ca_refuses_the_certificate(created, tmp_path):
    """The note's php.ini setting is what makes it work: without it the certificate is refused."""
    env_file = created.save("symfony", tmp_path / ".env")
    proc = run(
        [
            "php",
            str(CLIENTS / "symfony_mailer_send.php"),
            "symfony",
            str(env_file),
            SENDER,
            RECIPIENT,
            "Symfony untrusted",
        ]
    )
    out = php_result(proc)
    assert proc.returncode == 1 and "certificate verify failed" in out["error"], out
    assert Message.select().count() == 0


@needs_php
@needs_phpmailer
def test_the_wordpress_mu_plugin_guide_sends_through_phpmailer_as_shown(created, tmp_path):
    plugin = created.save("phpmailer", tmp_path / "appliance-smtp.php")
    proc = run(["php", str(CLIENTS / "wordpress_phpmailer_send.php"), str(plugin), RECIPIENT, "WordPress guide"])
    out = php_result(proc)
    assert proc.returncode == 0 and out["ok"], out
    assert Message.get(Message.id == out["transaction_id"]).mail_from == SENDER  # the hook's sender, not WordPress's
    created.delivered("WordPress guide")


@needs_node
def test_the_ghost_guide_sends_through_nodemailer_as_shown(created, tmp_path):
    config = tmp_path / "config.production.json"
    config.write_text(f"{{\n{created.shown('ghost').strip()[1:-1]}\n}}\n")  # the "mail" block in Ghost's file
    extra_ca = re.search(r"NODE_EXTRA_CA_CERTS=(\S+) in", created.notes["ghost"]).group(1)
    proc = run(
        ["node", str(CLIENTS / "ghost_send.js"), str(config), RECIPIENT, "Ghost guide"],
        env={"NODE_EXTRA_CA_CERTS": extra_ca.replace(CA_PATH, str(created.ca))},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["response"].startswith("250 Ok: queued as")
    created.delivered("Ghost guide")


@needs_node
def test_the_nodemailer_guide_runs_as_shown(created, tmp_path):
    script = created.save("nodemailer", tmp_path / "send.js")
    proc = run(["node", str(script)], env={"NODE_PATH": str(CLIENTS / "node_modules")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("250 Ok: queued as")
    created.delivered("Hello")


@pytest.fixture
def msmtp_home(created, tmp_path) -> dict:
    """The msmtp guide saved as ~/.msmtprc, readable by its owner only (as the guide says)."""
    rc = created.save("msmtp", tmp_path / ".msmtprc")
    rc.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return {"HOME": str(tmp_path)}


@pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp is not installed")
def test_the_msmtp_guide_sends_its_own_test_message_as_shown(created, msmtp_home):
    test_command = re.search(r"Test it with (.*? \| msmtp \S+)\. ", created.notes["msmtp"]).group(1)
    proc = run(["sh", "-c", test_command], env=msmtp_home)
    assert proc.returncode == 0, proc.stderr
    created.delivered("test")


@pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp is not installed")
def test_the_msmtp_guide_delivers_a_cron_jobs_output_called_as_cron_calls_sendmail(created, msmtp_home):
    """cron pipes a job's output, headed To: MAILTO, to `sendmail -FCronDaemon -i -B8BITMIME -oem MAILTO`."""
    output = f"From: root (Cron Daemon)\nTo: {RECIPIENT}\nSubject: Cron <root@shop> backup.sh\n\nbackup done\n"
    proc = run(["msmtp", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", RECIPIENT], env=msmtp_home, input=output)
    assert proc.returncode == 0, proc.stderr
    message = created.delivered("Cron <root@shop> backup.sh")
    assert b"backup done" in message.data
    assert Message.get().from_header == f"CronDaemon <{SENDER}>"  # set_from_header on: "From: root" is refused


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")
def test_in_the_browser_every_platforms_guide_opens_with_the_real_values_and_the_password_once(
    app, relay, shop_domain, sink, admin, page
):
    sign_in(page, *admin)
    page.wait_for_selector("h1:text('Overview')")
    page.goto("/accounts/new")
    page.fill("input[name=name]", "Browser shop")
    page.click("text=Create account")
    password = page.input_value("#smtp-password")
    username = SmtpAccount.get(SmtpAccount.name == "Browser shop").username
    for key in sorted(EVERY_GUIDE):
        assert not page.is_visible(f"[data-guide={key}]"), key
        page.click(f"#guide-{key} summary")
        text = page.inner_text(f"[data-guide={key}]")
        assert all(value in text for value in ("localhost", username, password)), key
        assert SENDER in text or key in ("symfony", "opencart", "salesforce"), key  # in a note; the domain
    account_page = page.url
    page.goto(f"/accounts/{SmtpAccount.get(SmtpAccount.name == 'Browser shop').id}")
    assert password not in page.content() and account_page != page.url
    page.click("#guide-magento summary")
    assert fields(page.inner_text("[data-guide=magento]"))["Password"] == PASSWORD_PLACEHOLDER
