"""Test my setup: the dashboard makes a check address, the public result page (a real HTTP client on the
real web server) waits for the message and then shows its grade; the domain page's BIMI, PTR and
blocklist fragment."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from appliance.models import AuditEntry, Domain
from tests.support.checker import send_direct


@pytest.fixture
def overrides(overrides, dns_server):
    return {**overrides, "DNS_SERVERS": dns_server.spec, "DNS_TIMEOUT": 1}


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_test_my_setup_makes_an_address_whose_page_shows_the_grade_without_login(client, live_url, smtp_server):
    assert "Test my setup" in client.get("/check/").get_data(as_text=True)
    made = client.form("/check/")
    assert made.status_code == 302
    path = made.headers["Location"]
    token = path.rsplit("/", 1)[1]
    assert AuditEntry.select().where(AuditEntry.action == "check.new").count() == 1

    status, page = fetch(live_url + path)  # no session: the signed link is enough
    address = f"check-{token}@relay.test"
    assert status == 200 and f'value="{address}"' in page and 'data-status="waiting"' in page
    assert 'hx-trigger="every 3s"' in page

    data = b"From: ann@elsewhere.test\r\nSubject: Win a free prize\r\n\r\n<p>hi</p>\r\n"
    assert send_direct(smtp_server.mx_port, address, data, "ann@elsewhere.test")[0] == 250

    status, fragment = fetch(f"{live_url}{path}/findings")
    assert status == 200 and 'data-status="graded"' in fragment and "hx-trigger" not in fragment
    assert 'id="grade"' in fragment and 'data-key="subject" data-status="warn"' in fragment
    assert "free, win" in fragment

    listed = client.get("/check/").get_data(as_text=True)
    assert f'<a href="{path}">{address}</a>' in listed and '<tr data-status="graded">' in listed

    assert fetch(f"{live_url}/check/{'a' * 32}")[0] == 404  # a token that is not ours
    # A changed signature: not the last character, whose low bits may not count, and never the same one.
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert fetch(f"{live_url}/check/{tampered}")[0] == 404


def test_a_viewer_cannot_make_a_check_address(viewer_client):
    page = viewer_client.get("/check/").get_data(as_text=True)
    assert "New check address</button>" not in page
    assert viewer_client.form("/check/").status_code == 403


def test_the_domain_page_loads_bimi_ptr_and_blocklists(client, dns_server):
    client.form("/domains/", {"name": "shop.example"})
    domain = Domain.get(Domain.name == "shop.example")
    page = client.get(f"/domains/{domain.id}").get_data(as_text=True)
    assert f'hx-get="/domains/{domain.id}/reputation" hx-trigger="load"' in page

    dns_server.add("_dmarc.shop.example", "TXT", '"v=DMARC1; p=none"')
    dns_server.add("default._bimi.shop.example", "TXT", '"v=BIMI1; l=https://shop.example/logo.svg"')
    fragment = client.get(f"/domains/{domain.id}/reputation").get_data(as_text=True)
    assert 'data-key="bimi" data-status="fail"' in fragment and "p=quarantine or p=reject" in fragment
    assert 'data-key="ptr"' in fragment and 'data-key="blocklists"' in fragment

    dns_server.records[("_dmarc.shop.example.", "TXT")] = ['"v=DMARC1; p=reject"']
    fragment = client.get(f"/domains/{domain.id}/reputation").get_data(as_text=True)
    assert 'data-key="bimi" data-status="pass"' in fragment
