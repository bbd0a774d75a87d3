"""In headless Chromium: a Google report mailed to the report address over SMTP shows on the DMARC
page, the failing sources flagged, and its report's page lists every record."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.support.dmarc import GOOGLE_RECORDS, google_report, report_xml, send

from .conftest import ADMIN, CHROMIUM, shot, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")


@pytest.fixture(autouse=True)
def _shop(shop_domain):
    """shop.test, the domain of the reports, is a sending domain of the appliance."""


def test_an_admin_reads_who_sends_as_the_domain(app, smtp_server, admin, page, test_clock):
    test_clock.value = dt.datetime(2025, 12, 5, 9, 0)
    assert send(smtp_server, google_report(report_xml("google.com", "77", GOOGLE_RECORDS), "77"))[0] == 250
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")
    page.click("nav >> text=DMARC reports")
    page.wait_for_selector("h2:text('shop.test, 2025-12-04')")
    assert page.locator("tr.flagged").count() == 2 and page.locator("tr.aligned").count() == 1
    assert page.locator("tr.flagged").first.locator("td").first.inner_text() == "198.51.100.7"  # most messages first
    shot(page, "dmarc")
    page.click("text=77")
    page.wait_for_selector("h1:text('DMARC report from google.com')")
    assert page.locator("tbody tr").count() == 3
    assert page.console_errors == [], page.console_errors
