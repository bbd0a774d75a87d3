"""In real headless Chromium: Test my setup makes a check address, and its result page, waiting, shows
the grade once a message arrives on port 25 (htmx polls the fragment)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from appliance import admins
from tests.support.checker import send_direct

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

    data = b"From: ann@elsewhere.test\r\nSubject: Hello\r\n\r\nHello\r\n"
    assert send_direct(smtp_server.mx_port, address, data, "ann@elsewhere.test")[0] == 250

    expect(page.locator("#grade")).to_be_visible(timeout=20_000)
    assert page.locator("#check-result tr[data-key=tls][data-status=fail]").count() == 1
    shot(page, "check-result")
    assert page.console_errors == [], page.console_errors
