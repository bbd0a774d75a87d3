"""The alert center: repeats fold into one alert, acknowledging opens a new one, new alerts are mailed
to ALERT_EMAILS through the appliance's own queue, and the `appliance alerts` commands."""

from __future__ import annotations

import pytest

from appliance import alerts
from appliance.models import Alert, Delivery, Message
from tests.support.process import cli_json


@pytest.fixture
def overrides(overrides):
    return {**overrides, "ALERT_EMAILS": "ops@shop.test; boss@shop.test"}


def test_repeats_of_an_open_alert_fold_into_its_count_and_last_seen(app, test_clock):
    first = alerts.raise_alert(app.config, "dns-record-broken", "domain a.test", "SPF: missing")
    test_clock.advance(60)
    again = alerts.raise_alert(app.config, "dns-record-broken", "domain a.test", "SPF: several SPF records")
    assert again.id == first.id and again.count == 2
    assert (again.last_seen - again.first_seen).total_seconds() == 60
    assert again.text == "SPF: several SPF records"
    other = alerts.raise_alert(app.config, "dns-record-broken", "domain b.test", "DMARC: missing")
    assert other.id != first.id and alerts.open_count() == 2


def test_a_new_alert_is_mailed_to_the_admins_once_through_the_queue(app):
    alerts.raise_alert(app.config, "domain-unverified", "domain a.test", "DKIM gone", severity=alerts.CRITICAL)
    alerts.raise_alert(app.config, "domain-unverified", "domain a.test", "DKIM still gone")
    (message,) = Message.select()
    assert message.subject == "[critical] domain-unverified: domain a.test"
    assert sorted(d.rcpt for d in Delivery.select()) == ["boss@shop.test", "ops@shop.test"]
    assert {d.status for d in Delivery.select()} == {"queued"}


def test_acknowledging_closes_an_alert_and_a_repeat_opens_a_new_one(app):
    first = alerts.raise_alert(app.config, "unauthorized-sender-blocked", "account 1.shop.smtp", "x@evil.test")
    assert alerts.acknowledge([first.id], "admin@relay.test") == 1
    assert alerts.open_count() == 0
    second = alerts.raise_alert(app.config, "unauthorized-sender-blocked", "account 1.shop.smtp", "x@evil.test")
    assert second.id != first.id and second.count == 1
    assert Alert.get_by_id(first.id).acknowledged_by == "admin@relay.test"


def test_the_alerts_commands_list_as_json_and_acknowledge(app, run_cli):
    alerts.raise_alert(app.config, "dns-record-broken", "domain a.test", "SPF: missing")
    (row,) = cli_json(run_cli("alerts", "list", "--json"))
    assert (row["kind"], row["subject"], row["count"], row["acknowledged"]) == (
        "dns-record-broken",
        "domain a.test",
        1,
        False,
    )
    assert run_cli("alerts", "ack", str(row["id"])).output.strip() == "acknowledged 1 alert"
    assert cli_json(run_cli("alerts", "list", "--json")) == []
    assert [r["acknowledged_by"] for r in cli_json(run_cli("alerts", "list", "--all", "--json"))] == ["cli"]
    missing = run_cli("alerts", "ack", "999")
    assert missing.exit_code != 0 and "no open alert among 999" in missing.stderr
