"""Domains pages: add, records with copy buttons, "Check DNS" through htmx against the test DNS
server, rotation."""

from __future__ import annotations

import pytest

from appliance import dkim, domains
from appliance.models import Domain
from tests.support.wait import wait_for


@pytest.fixture
def overrides(overrides, dns_server):
    return {**overrides, "DNS_SERVERS": dns_server.spec, "DNS_TIMEOUT": 1}


def publish(dns_server, domain: Domain) -> None:
    for record in domains.records(domain, "relay.test"):
        value = dkim.zone_value(record.value) if record.type == "TXT" else record.value
        dns_server.add(record.name, record.type, value)


def test_adding_a_domain_shows_its_records_with_copy_buttons(client):
    response = client.form("/domains/", {"name": "Shop.Example"})
    domain = Domain.get(Domain.name == "shop.example")
    assert response.headers["Location"] == f"/domains/{domain.id}"
    page = client.get(f"/domains/{domain.id}").get_data(as_text=True)
    for record in domains.records(domain, "relay.test"):
        assert f'value="{record.name}"' in page
        assert f'data-copy="value-{record.key}-0"' in page and f'id="value-{record.key}-0"' in page
    first, second = domains.records(domain, "relay.test")[0].strings
    assert f'"{first}" "{second}"' in page  # the DKIM value split into strings of at most 255 bytes
    assert "not checked yet" in page and "not verified" in page


def test_a_bad_domain_name_is_refused_with_the_reason(client):
    response = client.form("/domains/", {"name": "no spaces please"})
    assert response.status_code == 400 and "is not a domain name" in response.get_data(as_text=True)


def test_check_dns_runs_in_the_background_and_the_fragment_turns_every_record_green(client, dns_server):
    client.form("/domains/", {"name": "shop.example"})
    domain = Domain.get(Domain.name == "shop.example")
    publish(dns_server, domain)
    started = client.form(f"/domains/{domain.id}/check", headers={"HX-Request": "true"})
    assert started.status_code == 200 and 'id="records"' in started.get_data(as_text=True)
    wait_for(lambda: not domains.checking(domain.id))
    fragment = client.get(f"/domains/{domain.id}/records").get_data(as_text=True)
    assert fragment.count('data-status="pass"') == 7 and "hx-trigger" not in fragment
    assert Domain.get_by_id(domain.id).verified


def test_a_failing_record_shows_its_reason(client, dns_server):
    client.form("/domains/", {"name": "shop.example"})
    domain = Domain.get(Domain.name == "shop.example")
    publish(dns_server, domain)
    dns_server.records[("_dmarc.shop.example.", "TXT")] = ['"v=DMARC1; p=none"']
    client.form(f"/domains/{domain.id}/check")
    wait_for(lambda: not domains.checking(domain.id))
    page = client.get(f"/domains/{domain.id}").get_data(as_text=True)
    assert 'data-record="dmarc" data-status="fail"' in page and "DMARC policy none" in page


def test_rotate_shows_the_new_dkim_records(client):
    client.form("/domains/", {"name": "shop.example"})
    domain = Domain.get(Domain.name == "shop.example")
    client.form(f"/domains/{domain.id}/rotate")
    rotated = Domain.get_by_id(domain.id)
    assert rotated.next_selector
    page = client.get(f"/domains/{domain.id}").get_data(as_text=True)
    assert f"{rotated.next_selector}-rsa._domainkey.shop.example" in page and "new key" in page


def test_a_viewer_sees_the_records_but_cannot_check_or_add(client, viewer_client):
    client.form("/domains/", {"name": "shop.example"})
    domain = Domain.get(Domain.name == "shop.example")
    page = viewer_client.get(f"/domains/{domain.id}").get_data(as_text=True)
    assert "_domainkey.shop.example" in page and "Check DNS</button>" not in page
    assert viewer_client.form(f"/domains/{domain.id}/check").status_code == 403
