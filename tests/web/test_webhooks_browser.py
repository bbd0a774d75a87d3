"""In headless Chromium: add a webhook in the dashboard, copy its secret, send a test event that a
real receiver on 127.0.0.1 gets signed, and see the call on the endpoint's page."""

from __future__ import annotations

import pytest

from appliance import admins
from tests.support.wait import wait_for
from tests.support.webhooks import Receiver, signature_ok

from .conftest import ADMIN, CHROMIUM, shot, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")


@pytest.fixture
def overrides(overrides):
    return {**overrides, "WEBHOOK_ALLOW_PRIVATE": True, "WORKERS": 2, "WORKER_POLL_INTERVAL": 0.05}


def test_an_admin_adds_a_webhook_sends_a_test_event_and_sees_the_call(app, page):
    from appliance.serve import QueueService

    receiver = Receiver().start()
    workers = QueueService(app.config)
    workers.start()
    try:
        with app.app_context():
            admins.create(*ADMIN)
        sign_in(page, *ADMIN)
        page.wait_for_selector("h1:text('Overview')")
        page.click("nav >> text=Webhooks")
        page.wait_for_selector("text=No webhook yet.")
        page.fill("input[name=url]", receiver.url)
        page.check("input[name=events][value=bounced]")
        page.click("button:text('Add webhook')")
        secret = page.input_value("#webhook-secret")
        assert secret.startswith("whsec_")
        shot(page, "webhook-created")

        page.click("text=Send a test event and see its calls")
        page.click("button:text('Send a test event')")
        page.wait_for_selector("text=A test event is on its way")
        (call,) = wait_for(lambda: receiver.calls)
        assert signature_ok(secret, call) and call.payload["type"] == "webhook.test"
        for _ in range(50):  # the call is recorded just after the receiver answered
            page.reload()
            if page.locator("td .step-pass").count():
                break
        assert page.locator("td .step-pass").first.inner_text() == "200"
        assert secret not in page.content()
        shot(page, "webhook")
        assert page.console_errors == []
    finally:
        workers.stop()
        receiver.stop()
