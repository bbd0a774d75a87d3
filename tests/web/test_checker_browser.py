"""In real headless Chromium: Test my setup makes a check address, and its result page, waiting, shows
the grade once a message arrives on port 25 (htmx polls the fragment)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from appliance import admins
from tests.support.smtputil import RawSMTP

from .conftest import ADMIN, shot, sign_in


@pytest.fixture
def overrides(overrides, dns_server):
    return {**overrides, "DNS_SERVERS": dns_server.spec, "DNS_TIMEOUT": 1}


def test_the_result_page_waits_for_the_message_then_shows_its_grade(app, page, smtp_server):
    with app.app_context():
        admins.create(*ADMIN)
    sign_in(page, *ADMIN)
    page.click("nav >> text=Test my setup")
    page.click("button:text('New check address')")
    address = page.input_value("#check-address")
    assert address.startswith("check-") and address.endswith("@relay.test")
    assert page.is_visible("text=Waiting for the message")

    raw = RawSMTP("127.0.0.1", smtp_server.mx_port)
    raw.cmd("EHLO client.test")
    raw.cmd("MAIL FROM:<ann@elsewhere.test>")
    assert raw.cmd(f"RCPT TO:<{address}>")[0] == 250
    raw.cmd("DATA")
    raw.send(b"From: ann@elsewhere.test\r\nSubject: Hello\r\n\r\nHello\r\n.\r\n")
    assert raw.reply()[0] == 250
    raw.close()

    expect(page.locator("#grade")).to_be_visible(timeout=20_000)
    assert page.locator("#check-result tr[data-key=tls][data-status=fail]").count() == 1
    shot(page, "check-result")
    assert page.console_errors == [], page.console_errors
