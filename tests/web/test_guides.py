"""Integration guides on an account's pages, filled with its real settings, and run as shown.

HOSTNAME is `localhost` here so that the clients, separate processes that do not share the test's
name resolution, reach the appliance by the name its certificate is checked against. The only
change made to a snippet before it runs is the step the page asks of the user: the CA certificate
is saved at the path the guides name (here: the CA's real path is put in its place).
"""

from __future__ import annotations

import html
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import accounts
from appliance.models import Message, SmtpAccount
from appliance.web.guides import CA_PATH, PASSWORD_PLACEHOLDER
from tests.conftest import process_env

PASSWORD = re.compile(r'id="smtp-password" type="text" value="([A-Za-z0-9]{24})"')
HANG_GUARD = 90  # seconds: a guard against a hung client, not an assertion about speed


@pytest.fixture
def overrides(overrides):
    return {**overrides, "HOSTNAME": "localhost"}


def snippets(page: str) -> dict[str, str]:
    return {key: html.unescape(code)
            for key, code in re.findall(r'<code data-guide="([a-z]+)">(.*?)</code>', page, re.S)}


@dataclass
class Created:
    page: str
    password: str
    response: object
    ca: Path  # the CA certificate that the page offers for download, where the test keeps it

    @property
    def guides(self) -> dict[str, str]:
        return snippets(self.page)

    def command(self, key: str) -> list[str]:
        """A shell snippet as shown, with the CA saved at the path the guides name."""
        return shlex.split(self.guides[key].replace(CA_PATH, str(self.ca)))


@pytest.fixture
def created(client, smtp_server, shop_domain) -> Created:
    """Create an account in the dashboard; its page shows the password once, with the guides."""
    response = client.form("/accounts/new", {"name": "Guide shop", "priority": "3", "active": "on"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'href="/accounts/ca.pem"' in page
    return Created(page, PASSWORD.search(page).group(1), response, smtp_server.ca)


def run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=HANG_GUARD, stdin=subprocess.DEVNULL,
                          **kwargs)


def test_the_password_page_fills_every_guide_with_the_real_credentials(created):
    password, guides = created.password, created.guides
    assert created.response.headers["Cache-Control"] == "no-store"
    assert set(guides) == {"wordpress", "phpmailer", "laravel", "symfony", "django", "ghost", "nodemailer",
                           "swaks", "curl", "device"}
    username = SmtpAccount.get(SmtpAccount.name == "Guide shop").username
    port = int(re.search(r"MAIL_PORT=(\d+)", guides["laravel"]).group(1))
    assert f"MAIL_HOST=localhost\nMAIL_PORT={port}\nMAIL_USERNAME={username}\nMAIL_PASSWORD={password}" in guides[
        "laravel"]
    assert guides["symfony"] == f"MAILER_DSN=smtp://{username}:{password}@localhost:{port}"
    assert f'"pass": "{password}"' in guides["ghost"] and '"requireTLS": true' in guides["ghost"]
    assert all(password in code for key, code in guides.items()), "a guide without the password"
    assert "noreply@shop.test" in guides["laravel"]  # the verified domain gives the sender
    assert f"$mail->SMTPOptions = ['ssl' => ['cafile' => '{CA_PATH}']];" in guides["phpmailer"]


def test_the_account_page_shows_a_placeholder_and_the_ca_to_download(app, client, smtp_server, shop_domain):
    with app.app_context():
        account, password = accounts.create("Blog")
        SmtpAccount.update(authorized_senders="news@shop.test").where(SmtpAccount.id == account.id).execute()
    page = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    guides = snippets(page)
    assert password not in page
    assert f"EMAIL_HOST_PASSWORD = \"{PASSWORD_PLACEHOLDER}\"" in guides["django"]
    assert 'DEFAULT_FROM_EMAIL = "news@shop.test"' in guides["django"]  # the account's own sender
    assert 'href="/accounts/ca.pem"' in page
    ca = client.get("/accounts/ca.pem")
    assert ca.status_code == 200 and ca.get_data() == smtp_server.ca.read_bytes()
    assert "appliance-ca.pem" in ca.headers["Content-Disposition"]


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_the_swaks_guide_sends_as_shown(created):
    proc = run(created.command("swaks"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "250 Ok: queued as" in proc.stdout
    assert Message.get().mail_from == "noreply@shop.test"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_guide_sends_as_shown(created, tmp_path):
    (tmp_path / "message.eml").write_bytes(b"From: noreply@shop.test\r\nSubject: curl guide\r\n\r\nHello\r\n")
    proc = run(created.command("curl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Message.get().subject == "curl guide"


def test_the_django_guide_sends_as_shown(created, overrides, tmp_path):
    (tmp_path / "guide_settings.py").write_text(created.guides["django"] + "\n")
    send = textwrap.dedent("""
        import django
        django.setup()
        from django.core.mail import send_mail
        print(send_mail("Django guide", "Hello", None, ["you@example.org"]))
    """)
    env = {**process_env(overrides), "DJANGO_SETTINGS_MODULE": "guide_settings", "PYTHONPATH": str(tmp_path),
           "SSL_CERT_FILE": str(created.ca)}  # the guide's note: trust the CA this way
    proc = run([sys.executable, "-c", send], env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr
    message = Message.get()
    assert (message.subject, message.mail_from) == ("Django guide", "noreply@shop.test")
