"""In headless Chromium: a message received at the sink is opened, a link in it is clicked, and the click
shows in the message page and on the analytics chart."""

from __future__ import annotations

import email
import email.policy

import pytest

from appliance import admins
from tests.support.mail import send
from tests.support.relay import relay_overrides
from tests.support.tracking import events_of, newsletter
from tests.support.wait import wait_for
from tests.support.web import served

from .conftest import ADMIN, sign_in

pytest.importorskip("playwright.sync_api")


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def live_url(app):
    """The web server on WEB_LISTEN, where the message's tracking links point."""
    with served(app, app.config["WEB_LISTEN"]) as url:
        yield url


def test_a_reader_clicks_a_link_of_the_received_message_and_the_admin_sees_it_in_the_timeline_and_the_chart(
    app,
    relay,
    account,
    dns_server,
    sink_mx,
    shop_domain,
    live_url,
    page,
):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink = sink_mx("127.0.0.3")
    with app.app_context():
        admins.create(*ADMIN)
    msg = newsletter()
    target = f"{live_url}/health"  # a link on loopback, so the browser can follow it to its end
    msg.get_body(("html",)).set_content(
        f'<html><body><p><a id="go" href="{target}">Our sale</a></p></body></html>', subtype="html"
    )
    send(relay, account, msg)
    (received,) = wait_for(lambda: sink.messages)
    body = email.message_from_bytes(received.data, policy=email.policy.default).get_body(("html",))

    page.set_content(body.get_content())  # the reader opens the message (its pixel loads)
    with page.expect_navigation():
        page.click("#go")
    assert page.url == target
    wait_for(lambda: events_of(app, "clicked"))

    failed = []
    page.on("response", lambda r: r.status >= 400 and failed.append(r.url))
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")
    page.goto(f"/messages/{received.queue_id}")
    timeline = page.inner_text("#events")
    assert "clicked" in timeline and target in timeline and "opened" in timeline
    page.click("nav >> text=Analytics")
    clicked = page.locator("#chart-hourly rect.clicked title", has_text="1 clicked")
    assert clicked.count() == 1
    assert page.inner_text("#top-links").count(target) == 1
    assert [url for url in failed if not url.endswith("/favicon.ico")] == []  # the JSON page's favicon.ico
