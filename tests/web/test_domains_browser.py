"""In real headless Chromium: add a domain, see its records, publish them in the test DNS server,
press "Check DNS" and watch every record turn green (htmx swaps the polled fragment)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from appliance import admins, dkim, domains
from appliance.models import Domain

from .conftest import ADMIN, shot, sign_in


@pytest.fixture
def overrides(overrides, dns_server):
    return {**overrides, "DNS_SERVERS": dns_server.spec, "DNS_TIMEOUT": 1}


def test_an_admin_adds_a_domain_publishes_its_records_and_watches_check_dns_turn_them_green(app, page, dns_server):
    with app.app_context():
        admins.create(*ADMIN)
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")

    page.click("nav >> text=Domains")
    page.fill("input[name=name]", "shop.example")
    page.click("button:text('Add domain')")
    page.wait_for_selector("h1:text('shop.example')")
    assert page.locator("#records tbody tr").count() == 7
    assert page.locator("#records [data-status=unchecked]").count() == 7
    # BIMI, PTR and the blocklists load after the page (the doctor's lookups): here BIMI warns, none published
    expect(page.locator("#reputation tr[data-key=bimi][data-status=warn]")).to_have_count(1, timeout=20_000)
    shot(page, "domain-records")

    domain = Domain.get(Domain.name == "shop.example")
    for record in domains.records(domain, "relay.test"):
        shown = page.input_value(f"tr[data-record={record.key}] textarea")
        assert shown == (dkim.zone_value(record.value) if record.type == "TXT" else record.value)
        dns_server.add(page.input_value(f"tr[data-record={record.key}] input"), record.type, shown)

    page.click("button:text('Check DNS')")
    expect(page.locator("#records [data-status=pass]")).to_have_count(7, timeout=20_000)
    assert page.is_visible("#records >> text=mail from shop.example is accepted and DKIM-signed")
    shot(page, "domain-checked")
    assert page.console_errors == [], page.console_errors
