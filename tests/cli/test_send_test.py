"""`appliance send-test RECIPIENT` (DESIGN §4): a test message through the real queue to a sink MX."""

from __future__ import annotations

import json

import pytest

from tests.support.relay import relay_overrides


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def example_mx(dns_server, sink_mx):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    return sink_mx("127.0.0.3", starttls=True)


def test_a_delivered_test_message_exits_0_and_shows_the_attempt(relay, run_cli, example_mx):
    result = run_cli("send-test", "bob@example.test", "--wait", "30")
    assert result.exit_code == 0, result.output
    assert "-> bob@example.test: delivered 250 2.0.0 Ok: queued as 127.0.0.3-1" in result.output
    assert "via mx.example.test [127.0.0.3], TLSv1.3" in result.output
    (received,) = example_mx.handler.messages
    assert received.rcpts == ["bob@example.test"] and received.mail_from == "postmaster@relay.test"
    assert b"Subject: Test message from relay.test" in received.data


def test_a_bounced_test_message_exits_1_with_the_remote_reply_in_json(relay, run_cli, example_mx):
    result = run_cli("send-test", "unknown@example.test", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["recipients"][0]["status"] == "bounced"
    (attempt,) = data["attempts"]
    assert (attempt["code"], attempt["enhanced_code"], attempt["mx_host"]) == (550, "5.1.1", "mx.example.test")
    assert example_mx.handler.messages == []


def test_without_a_running_appliance_it_says_the_message_waits(run_cli):
    result = run_cli("send-test", "bob@example.test", "--wait", "0.5")
    assert result.exit_code == 1
    assert "-> bob@example.test: queued" in result.output
    assert "not sent yet: is the appliance running?" in result.output


def test_a_bad_address_is_refused_before_anything_is_queued(run_cli):
    result = run_cli("send-test", "not an address")
    assert result.exit_code == 1 and "is not an email address" in result.output
    assert json.loads(run_cli("messages", "list", "--json").output) == []


def test_a_deferred_test_message_says_deferred_and_when_it_is_tried_again(relay, run_cli, example_mx):
    result = run_cli("send-test", "greylist@example.test", "--wait", "30")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "status: deferred" in lines
    (recipient,) = [line for line in lines if line.startswith("  -> greylist@example.test")]
    assert recipient.startswith("  -> greylist@example.test: deferred 451 4.7.1 Greylisted, try again later")
    assert "next attempt " in recipient
