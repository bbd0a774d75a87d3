"""In headless Chromium: set a quota and a warm-up plan in the dashboard, send mail, see their effect in the log."""

from __future__ import annotations

import pytest

from appliance import accounts, admins
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for

from .conftest import ADMIN, CHROMIUM, shot, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


def test_a_quota_and_a_warm_up_plan_set_in_the_dashboard_hold_and_defer_mail_in_the_log(
    app, page, relay, sending_domain, dns_server, sink_mx
):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink = sink_mx("127.0.0.3")
    with app.app_context():
        admins.create(*ADMIN)
        account, password = accounts.create("Web shop")

    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")

    # A quota of 2 recipients per hour; over it, mail is held until the hour turns.
    page.goto(f"/accounts/{account.id}")
    page.fill("input[name=limit_hour]", "2")
    page.select_option("select[name=action_hour]", "hold")
    page.click("button:text('Save quotas')")
    page.wait_for_selector("text=0 / 2 (0 %)")

    # A warm-up plan whose first day allows a single delivery.
    page.click("nav >> text=Sending policy")
    page.check("input[name=enabled]")
    page.fill("input[name=steps]", "1:1,2:")
    page.click("button:text('Save warm-up')")
    page.wait_for_selector("text=On: day 1, today's cap 1, 0 sent today.")
    shot(page, "policy")

    with relay.smtp.submission() as client:
        client.login(account.username, password)
        for n in range(3):
            client.sendmail(
                "shop@shop.test",
                [f"customer{n}@example.test"],
                f"From: shop@shop.test\r\nSubject: Order {n}\r\n\r\nThanks\r\n".encode(),
            )
    assert wait_for(lambda: len(sink.messages) == 1)

    page.goto("/messages/")
    page.wait_for_selector("#log .status-delivered")
    page.wait_for_selector("#log .status-deferred")
    assert page.inner_text("tr:has-text('Order 2') .badge") == "held"
    shot(page, "messages-policy")
    page.click("#log tr:has(.status-deferred) a")  # Order 0 or 1: whichever came second
    page.wait_for_selector("text=warmup: IP warm-up: today's cap of 1 is reached")
    page.goto("/messages/")
    page.click("tr:has-text('Order 2') a")
    page.wait_for_selector("text=held: quota-hour until")
    page.goto(f"/accounts/{account.id}")
    page.wait_for_selector("text=3 / 2 (100 %)")
    assert page.console_errors == [], page.console_errors
