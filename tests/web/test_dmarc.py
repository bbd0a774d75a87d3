"""The DMARC page, read over real HTTP from the app served on loopback: the reports mailed over SMTP
to the report address (tests/support/dmarc.py), each source with its PTR from the test DNS server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

import pytest
import requests

from appliance.models import DmarcReport
from tests.support.dmarc import GOOGLE_RECORDS, google_report, microsoft_report, record, report_xml, send
from tests.support.relay import relay_overrides
from tests.support.web import served

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _shop(shop_domain):
    """shop.test, the domain of the reports, is a sending domain of the appliance."""


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def ptr(dns_server):
    dns_server.ptr("192.0.2.10", "relay.shop.test")
    dns_server.ptr("198.51.100.7", "o1.mailer.example")
    dns_server.time_out(ipaddress.ip_address("203.0.113.66").reverse_pointer)  # shown without a name


def signed_in(url: str, admin) -> requests.Session:
    """A requests session signed in to the dashboard served at ``url``, as a browser would be."""
    session = requests.Session()
    token = CSRF.search(session.get(f"{url}/login", timeout=10).text).group(1)
    answer = session.post(
        f"{url}/login", data={"csrf_token": token, "email": admin[0], "password": admin[1]}, timeout=10
    )
    assert answer.ok and "/login" not in answer.url
    return session


def test_the_dmarc_page_shows_each_source_with_its_ptr_and_flags_the_failing_ones(
    app, smtp_server, admin, ptr, test_clock
):

    test_clock.value = dt.datetime(2025, 12, 5, 9, 0)
    assert send(smtp_server, google_report(report_xml("google.com", "1", GOOGLE_RECORDS), "1"))[0] == 250
    microsoft = report_xml("Enterprise Outlook", "7d3c0e2a", [record("192.0.2.10", 40)])
    assert send(smtp_server, microsoft_report(microsoft))[0] == 250
    with served(app) as url:
        session = signed_in(url, admin)
        page = session.get(f"{url}/dmarc/", params={"domain": "shop.test", "days": "7"}, timeout=30)
        assert page.status_code == 200
        html = page.text
        assert "shop.test, 2025-12-04" in html
        assert "168 messages from 3 sources" in html and "8 failed DMARC" in html
        rows = {
            ip: re.search(
                rf"<tr class=\"(\w+)\">\s*<td><code>{re.escape(ip)}</code></td>\s*<td>([^<]*)</td>\s*<td>(\d+)</td>",
                html,
            )
            for ip in ("192.0.2.10", "198.51.100.7", "203.0.113.66")
        }
        assert rows["192.0.2.10"].groups() == ("aligned", "relay.shop.test", "160")  # Google's 120, Microsoft's 40
        assert rows["198.51.100.7"].groups() == ("flagged", "o1.mailer.example", "5")
        assert rows["203.0.113.66"].groups() == ("flagged", "—", "3")
        assert "passes SPF or DKIM as mailer.example but not aligned" in html  # a forgotten sender
        assert "no SPF or DKIM passes: someone spoofing the domain" in html
        with app.app_context():
            report = DmarcReport.get(DmarcReport.org_name == "google.com")
        detail = session.get(f"{url}/dmarc/reports/{report.id}", timeout=10)
        assert detail.status_code == 200 and "mailer.example (s1): pass" in detail.text
        assert session.get(f"{url}/dmarc/reports/999999", timeout=10).status_code == 404
        assert "DMARC reports" in session.get(f"{url}/", timeout=10).text  # in the menu
