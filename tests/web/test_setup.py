"""The setup page and `appliance setup`: the first steps of a new appliance, each with what mends it;
in Chromium from a first sign-in to a verified domain (records published in the test DNS) and a
delivered test message."""

from __future__ import annotations

import json
import re

import pytest

from appliance import dkim, domains
from appliance.models import Domain, Message
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for

from .conftest import ADMIN, CHROMIUM, shot, sign_in

STEPS = ["hostname", "public-url", "account", "sender", "first-message"]


def done(page: str, section: str) -> bool:
    return re.search(rf'id="{section}" data-done="(true|false)"', page).group(1) == "true"


def test_a_new_appliance_shows_every_step_to_do_with_what_mends_it(app, client):
    page = client.get("/setup/").get_data(as_text=True)
    assert "4 of 5 first steps left" in page  # HOSTNAME relay.test is a name; the rest is to do
    assert done(page, "hostname") and not done(page, "public-url") and not done(page, "domain")
    assert "APPLIANCE_PUBLIC_URL=https://relay.test" in page and f"{app.config['DATA_DIR']}/appliance.toml" in page
    assert 'action="/setup/domain"' in page and 'action="/setup/test"' in page
    overview = client.get("/").get_data(as_text=True)
    assert 'id="setup-callout"' in overview and "4 first steps of the set-up left" in overview


def test_a_localhost_name_is_the_first_thing_the_page_says(app, client):
    app.config["HOSTNAME"] = "localhost"
    page = client.get("/setup/").get_data(as_text=True)
    assert not done(page, "hostname") and "HOSTNAME &#39;localhost&#39; is not a public name" in page
    assert "APPLIANCE_HOSTNAME=mail.example.com" in page


def test_adding_the_domain_comes_back_to_its_records_and_a_bad_name_is_explained(app, client):
    bad = client.form("/setup/domain", {"name": "not a domain"})
    assert bad.status_code == 400 and 'role="alert"' in bad.get_data(as_text=True)
    added = client.form("/setup/domain", {"name": "Shop.test"})
    assert added.status_code == 302 and added.headers["Location"] == "/setup/#domain"
    page = client.get("/setup/").get_data(as_text=True)
    assert "Publish these records for <strong>shop.test</strong>" in page
    assert 'hx-trigger="every 10s"' in page and 'data-record="dkim"' in page  # checked live


def test_the_test_message_form_sends_one_and_opens_its_page(app, client):
    bad = client.form("/setup/test", {"recipient": "nobody"})
    assert bad.status_code == 400 and "is not an email address" in bad.get_data(as_text=True)
    sent = client.form("/setup/test", {"recipient": "me@example.test"})
    message = Message.get(Message.subject == "Test message from relay.test")
    assert sent.status_code == 302 and sent.headers["Location"] == f"/messages/{message.id}"


def test_a_viewer_sees_the_steps_but_has_no_forms(viewer_client):
    page = viewer_client.get("/setup/").get_data(as_text=True)
    assert "first steps left" in page and 'action="/setup/domain"' not in page
    assert viewer_client.form("/setup/test", {"recipient": "me@example.test"}).status_code == 403


def test_the_cli_prints_the_same_steps_and_exits_1_until_they_are_done(app, run_cli):
    result = run_cli("setup", "--json")
    assert result.exit_code == 1
    steps = json.loads(result.output)
    assert [s["step"] for s in steps] == STEPS
    assert [s["done"] for s in steps] == [True, False, False, False, False]
    assert steps[2]["todo"] == 'create an SMTP account: appliance accounts create "My shop"'
    text = run_cli("setup").output
    assert "to do  account" in text and "4 step(s) left" in text


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")
def test_in_the_browser_from_a_first_sign_in_to_a_verified_domain_and_a_delivered_test(
    app, page, admin, relay, dns_server, sink_mx
):
    dns_server.a("relay.test", "127.0.0.1")
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink = sink_mx("127.0.0.3")
    sign_in(page, *ADMIN)
    page.click("#setup-callout a")
    page.fill("#domain input[name=name]", "shop.test")
    page.click("text=Add domain")
    page.wait_for_selector("#records [data-record=dkim]")
    assert page.locator("#domain .badge.step-warn").count() == 1  # to do: nothing is published yet
    shot(page, "setup-domain")

    domain = Domain.get(Domain.name == "shop.test")
    for record in domains.records(domain, "relay.test"):  # what the admin publishes at the DNS provider
        dns_server.add(
            record.name, record.type, dkim.zone_value(record.value) if record.type == "TXT" else record.value
        )
    # The page checks again by itself: every record turns green without a click.
    page.wait_for_selector("#records [data-record=dkim][data-status=pass]", timeout=45_000)
    assert wait_for(lambda: Domain.get_by_id(domain.id).verified, timeout=30)

    page.goto("/setup/")
    assert page.get_attribute("#domain", "data-done") == "true"
    page.click("#account >> text=Create an SMTP account")
    page.fill("input[name=name]", "Web shop")
    page.click("text=Create account")
    page.wait_for_selector("#smtp-password")

    page.goto("/setup/")
    page.fill("#test input[name=recipient]", "bob@example.test")
    page.click("text=Send a test message")
    page.wait_for_selector("h2:text('Deliveries')")
    (received,) = wait_for(lambda: sink.messages, timeout=30)
    assert received.rcpts == ["bob@example.test"] and b"Test message from relay.test" in received.data
    page.goto("/setup/")
    assert page.inner_text("#setup-left").startswith("1 of 5 first steps left")
    flags = {
        s: page.get_attribute(f"#{s}", "data-done") for s in ("hostname", "public-url", "domain", "account", "test")
    }
    assert flags == {"hostname": "true", "public-url": "false", "domain": "true", "account": "true", "test": "true"}
    shot(page, "setup")


def test_records_for_a_host_name_only_this_machine_knows_come_with_a_warning(app, client, run_cli):
    added = run_cli("domains", "add", "shop.test", "--json")
    assert json.loads(added.output)["warning"] == ""  # relay.test is a name others can look up
    assert 'id="hostname-warning"' not in client.get("/domains/1").get_data(as_text=True)

    app.config["HOSTNAME"] = "localhost"
    shown = run_cli("domains", "show", "shop.test")
    assert "WARNING: HOSTNAME is 'localhost', a name only this machine knows" in shown.output
    assert "v=spf1 a:localhost" in shown.output  # the records, and the warning above them
    page = client.get("/domains/1").get_data(as_text=True)
    assert 'id="hostname-warning"' in page and "set APPLIANCE_HOSTNAME" in page
