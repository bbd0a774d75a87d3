"""The dashboard in real headless Chromium (Debian `chromium`, driven by Playwright from PyPI).

Screenshots of the main pages land in tests/screenshots/ (see docs/dashboard.md).
"""

from __future__ import annotations

import re

import pytest

from appliance import admins
from tests.support.wait import wait_for

from .conftest import ADMIN, CHROMIUM, shot, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")


def _smtp_port(app, index: int) -> int:
    return int(app.config["SMTP_LISTEN"].split(",")[index].split(":")[1].split("/")[0])


def test_an_admin_signs_in_creates_an_account_sends_mail_and_tests_the_connection(
    delivering, app, page, relay, sending_domain
):
    smtp_server = relay.smtp
    with app.app_context():
        admins.create(*ADMIN)

    # First sign-in: every page sends a stranger to the login form.
    page.goto("/")
    assert page.url.endswith("/login?next=/")
    shot(page, "login")
    page.fill("input[name=email]", ADMIN[0])
    page.fill("input[name=password]", ADMIN[1])
    page.click("button[type=submit]")
    page.wait_for_selector("h1:text('Overview')")
    shot(page, "overview-empty")

    # Create an account: its password is shown exactly once.
    page.click("text=Create an SMTP account")
    page.fill("input[name=name]", "Web shop")
    page.click("text=Create account")
    first_password = page.input_value("#smtp-password")
    assert re.fullmatch(r"[A-Za-z0-9]{24}", first_password)
    shot(page, "account-created")
    page.goto("/accounts/")
    assert first_password not in page.content()
    shot(page, "accounts")

    # Reset it: confirm, then a new password shown once.
    page.click("text=Web shop")
    page.click("text=Reset password…")
    page.click("button:text('Reset password')")
    password = page.input_value("#smtp-password")
    assert password != first_password
    # The integration guides carry the new password; each opens on a click.
    assert not page.is_visible("[data-guide=laravel]")
    page.click("#guide-laravel summary")
    assert f"MAIL_PASSWORD={password}" in page.inner_text("[data-guide=laravel]")
    shot(page, "account-guides")

    # IP authorization: a bad rule is explained, a good one is saved.
    page.click("text=Account settings and connection test")
    page.fill("textarea[name=ip_rules]", "10.0.0.0/33")
    page.click("button:text('Save')")
    assert page.is_visible("text=Not an IP address or network: '10.0.0.0/33'")
    page.fill("textarea[name=ip_rules]", "127.0.0.1\n192.0.2.0/24")
    page.click("button:text('Save')")
    page.wait_for_selector("text=Saved.")
    assert page.input_value("textarea[name=ip_rules]") == "127.0.0.1/32\n192.0.2.0/24"
    account_url = page.url.split("?")[0]
    username = page.inner_text("#connection-settings dd code >> nth=1")
    assert username.endswith(".web-shop.smtp")

    # Watch the log: the first page polls, so a message sent now appears without a reload.
    page.goto("/messages/")
    page.wait_for_selector("text=No message yet.")
    with smtp_server.submission() as client:
        client.login(username, password)
        client.sendmail(
            "shop@shop.test", ["bob@example.com"], b"From: shop@shop.test\r\nSubject: Browser <hello>\r\n\r\nhi\r\n"
        )
    page.wait_for_selector("text=Browser <hello>")
    shot(page, "messages")
    page.click("#log tbody a")
    page.wait_for_selector("h2:text('Deliveries')")
    assert page.is_visible("text=bob@example.com")
    # The delivery workers hand it to the sink MX; the detail shows the attempt and explains it.
    wait_for(lambda: delivering.messages)
    page.reload()
    attempt = page.locator("ol.timeline li").first
    assert "to mx.example.com [127.0.0.3]" in attempt.inner_text()
    assert attempt.locator(".badge").inner_text() == "delivered"
    assert attempt.locator("code").first.inner_text().startswith("250")
    shot(page, "message-detail")

    # The connection test runs connect → EHLO → STARTTLS → AUTH and swaps in its result (htmx).
    page.goto(account_url)
    page.select_option("select[name=port]", str(_smtp_port(app, 0)))
    page.fill("input[name=password]", password)
    page.click("button:text('Test connection')")
    page.wait_for_selector("text=AUTH: OK")
    assert page.is_visible("text=STARTTLS: OK")
    assert page.url.split("?")[0] == account_url  # swapped in place, no navigation
    shot(page, "connection-test")

    page.goto("/suppressions/")
    shot(page, "suppressions")
    page.goto("/")
    shot(page, "overview")
    assert page.console_errors == [], page.console_errors  # no CSP violation, no htmx error


def test_deleting_from_the_list_confirms_then_removes_the_row_in_place(app, page):
    with app.app_context():
        admins.create(*ADMIN)
    from appliance import accounts

    accounts.create("Old shop")
    sign_in(page, *ADMIN)
    page.goto("/accounts/")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.click("#accounts button:text('Delete')")
    page.wait_for_selector("#accounts tr[id^=account-]", state="detached")
    assert dialogs and "Delete the account Old shop?" in dialogs[0]
    assert page.url.endswith("/accounts/")
    assert page.console_errors == []


def test_an_expired_session_sends_the_polling_log_to_the_login_page(app, page):
    with app.app_context():
        admins.create(*ADMIN)
    sign_in(page, *ADMIN)
    page.goto("/messages/")
    page.context.clear_cookies()
    page.wait_for_url("**/login")
    assert page.is_visible("h1:text('Sign in')")
    assert page.locator("#log").count() == 0
