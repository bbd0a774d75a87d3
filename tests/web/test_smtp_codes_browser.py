"""In headless Chromium: a bounce's code in the message timeline leads to its entry in the reference."""

from __future__ import annotations

import pytest

from appliance import accounts, admins
from tests.support.wait import wait_for

from .conftest import ADMIN, CHROMIUM, shot, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")


def test_a_bounce_code_in_the_timeline_opens_its_meaning_and_what_to_do(delivering, app, page, relay, sending_domain):
    with app.app_context():
        admins.create(*ADMIN)
        account, password = accounts.create("Web shop")
    with relay.smtp.submission() as client:
        client.login(account.username, password)
        client.sendmail(
            "shop@shop.test", ["unknown@example.com"], b"From: shop@shop.test\r\nSubject: Order 9\r\n\r\nThanks\r\n"
        )

    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")
    page.goto("/messages/")
    assert wait_for(lambda: page.reload() or page.query_selector("#log .status-bounced"))
    page.click("#log tr:has-text('Order 9') a")
    page.click("a.code-link:has-text('5.1.1')")
    page.wait_for_url("**/smtp-codes/#code-5.1.1")
    entry = page.locator("[id='code-5.1.1']")
    assert "The mailbox does not exist" in entry.inner_text()
    assert entry.is_visible()
    page.go_back()
    page.click("a.code-link:has-text('550')")
    page.wait_for_url("**/smtp-codes/#code-550")
    assert "Remove the address from your list" in page.locator("#code-550").inner_text()
    shot(page, "smtp-codes")
    assert page.console_errors == [], page.console_errors
