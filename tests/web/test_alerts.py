"""Alerts page, the badge in the menu, acknowledging."""

from __future__ import annotations

import re

from appliance import alerts
from appliance.models import Alert


def test_open_alerts_show_on_the_page_and_as_a_badge_in_the_menu(app, client):
    alerts.raise_alert(app.config, "dns-record-broken", "domain shop.example", "SPF: missing")
    alerts.raise_alert(app.config, "dns-record-broken", "domain shop.example", "SPF: still missing")
    alerts.raise_alert(app.config, "domain-unverified", "domain shop.example", "DKIM gone", severity="critical")
    page = client.get("/").get_data(as_text=True)
    assert re.search(r'id="alert-count"[^>]*>2<', page)
    listing = client.get("/alerts/").get_data(as_text=True)
    assert "SPF: still missing" in listing and "DKIM gone" in listing
    assert re.search(
        r"<td>dns-record-broken</td><td>domain shop.example</td><td>SPF: still missing</td><td>2</td>", listing
    )


def test_acknowledging_an_alert_removes_it_from_the_open_list_and_the_badge(app, client):
    alert = alerts.raise_alert(app.config, "dns-record-broken", "domain shop.example", "SPF: missing")
    assert client.form(f"/alerts/{alert.id}/ack").status_code == 302
    assert Alert.get_by_id(alert.id).acknowledged_by == "admin@relay.test"
    assert 'id="alert-count"' not in client.get("/").get_data(as_text=True)
    assert "All quiet" in client.get("/alerts/").get_data(as_text=True)
    assert "acknowledged by admin@relay.test" in client.get("/alerts/?all=1").get_data(as_text=True)


def test_acknowledge_all_closes_every_open_alert(app, client):
    for n in range(3):
        alerts.raise_alert(app.config, "dns-record-broken", f"domain d{n}.example", "SPF: missing")
    client.form("/alerts/ack")
    assert alerts.open_count() == 0


def test_a_viewer_cannot_acknowledge(app, viewer_client):
    alert = alerts.raise_alert(app.config, "dns-record-broken", "domain shop.example", "SPF: missing")
    assert viewer_client.form(f"/alerts/{alert.id}/ack").status_code == 403
    assert not Alert.get_by_id(alert.id).acknowledged
