"""Per-destination pacing: provider groups by recipient domain and MX name, hourly (spread over the
hour), daily and session caps, new-IP and warmed-up figures, the back-off after a remote rate-limit
reply; hours simulated with the test clock, sinks on 127.0.0.x."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import queue
from appliance.delivery import pace
from appliance.delivery.route import Route, Target
from appliance.models import Delivery, ProviderGroup, SendCount
from appliance.policy import groups, warmup
from tests.support.mail import deliveries, store, submit
from tests.support.process import cli_json
from tests.support.relay import relay_overrides
from tests.support.sinks import Sink, SinkHandler
from tests.support.wait import wait_for

# Late in the hour, so that an hourly cap spread over the hour's minutes is all available.
NOON = dt.datetime(2025, 6, 2, 12, 59, 30)
TOP_OF_HOUR = dt.datetime(2025, 6, 2, 12, 0, 30)
WORKSPACE = Route("workspace.test", (Target("aspmx.l.google.com", "127.0.0.3", 25),))


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def at_noon(test_clock):
    test_clock.value = NOON
    return test_clock


@pytest.fixture
def workspace_mx(dns_server):
    """workspace.test is a company on Google Workspace: its MX hosts are Google's."""
    dns_server.mx("workspace.test", (1, "aspmx.l.google.com"), (5, "alt1.aspmx.l.google.com"))
    dns_server.a("aspmx.l.google.com", "127.0.0.3")
    dns_server.a("alt1.aspmx.l.google.com", "127.0.0.3")


def settle(message_ids, predicate):
    return wait_for(lambda: predicate([d for m in message_ids for d in deliveries(m)]))


def test_a_google_workspace_domain_is_paced_as_its_own_group_and_waits_for_the_next_hour(
    relay, account, workspace_mx, sink_mx, at_noon
):
    groups.save_group("google-workspace", hourly_cap=2)
    sink = sink_mx("127.0.0.3")
    sent = [submit(relay, account, [f"person{i}@workspace.test"]) for i in range(3)]

    def two_delivered_one_paced(rows):
        statuses = sorted(d.status for d in rows)
        return statuses == ["deferred", "delivered", "delivered"] and rows

    rows = settle(sent, two_delivered_one_paced)
    assert rows, [(d.status, d.last_reply) for m in sent for d in deliveries(m)]
    (paced,) = [d for d in rows if d.status == "deferred"]
    assert paced.last_reply == "pacing: google-workspace reached its hourly cap of 2"
    assert paced.next_attempt_at == dt.datetime(2025, 6, 2, 13, 0) and paced.attempts == 0
    assert len(sink.messages) == 2
    assert SendCount.get(SendCount.provider == "google-workspace").count == 2
    assert not SendCount.select().where(SendCount.provider == "gmail").exists()  # counted apart from gmail

    at_noon.advance(3600)  # 13:59:30: the next hour's window is open
    assert queue.sweep(relay.queue) == 1
    assert settle(sent, lambda rows: all(d.status == "delivered" for d in rows))
    assert len(sink.messages) == 3


class RateLimitingHandler(SinkHandler):
    """Answers RCPT of ratelimit… with Gmail's 421 4.7.28, like a provider that wants us slower."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("ratelimit"):
            return "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@pytest.fixture
def rate_limiting_mx(workspace_mx, delivery_port):
    sink = Sink("127.0.0.3", delivery_port)
    sink.handler = sink.controller.handler = RateLimitingHandler("127.0.0.3")
    sink.start()
    yield sink
    sink.stop()


def test_a_421_rate_limit_reply_slows_the_group_down_for_a_while(relay, account, rate_limiting_mx, at_noon, run_cli):
    groups.save_group("google-workspace", hourly_cap=4)
    first = submit(relay, account, ["ratelimit@workspace.test"])
    (row,) = settle([first], lambda rows: all(d.status == "deferred" for d in rows) and rows)
    assert row.last_code == 421 and "4.7.28" in row.last_reply and row.attempts == 1

    gmail = ProviderGroup.get(ProviderGroup.name == "google-workspace")
    assert gmail.throttled_until == NOON + dt.timedelta(seconds=900) and gmail.throttle_strikes == 1
    assert "4.7.28" in gmail.throttle_reply
    (shown,) = [p for p in cli_json(run_cli("providers", "list", "--json")) if p["name"] == "google-workspace"]
    assert shown["throttled"] and "4.7.28" in shown["throttle_reply"]

    # Slowed down: half of the hourly cap of 4, and one of them was the rate-limited attempt. One
    # message to two recipients, so that one task decides both (two tasks could race for the
    # group's single session instead).
    later = [submit(relay, account, [f"later{i}@workspace.test" for i in range(2)])]
    rows = settle(later, lambda rows: sorted(d.status for d in rows) == ["deferred", "delivered"] and rows)
    assert rows, [(d.status, d.last_reply) for m in later for d in deliveries(m)]
    (paced,) = [d for d in rows if d.status == "deferred"]
    assert paced.last_reply == (
        "pacing: google-workspace reached its hourly cap of 2 (slowed down after its rate-limit reply)"
    )

    queue.cancel([Delivery.get_by_id(row.id)])  # that recipient would only be refused again
    at_noon.advance(3600)  # the slow-down is over and a new hour has begun
    queue.sweep(relay.queue)
    assert settle(later, lambda rows: all(d.status == "delivered" for d in rows))


def test_greylisting_does_not_slow_a_group_down(relay, account, workspace_mx, sink_mx):
    sink_mx("127.0.0.3")
    message_id = submit(relay, account, ["greylist@workspace.test"])
    assert settle([message_id], lambda rows: all(d.status == "deferred" for d in rows))
    assert ProviderGroup.get(ProviderGroup.name == "google-workspace").throttled_until is None


def test_with_every_session_of_a_group_open_a_delivery_waits_a_minute(app, at_noon):
    groups.save_group("google-workspace", session_cap=1)
    busy = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert busy.admit(queue.claim(store(app, ["a"]), 300))  # holds gmail's one session
    try:
        (row,) = queue.claim(store(app, ["b"]), 300)
        assert pace.Gate(app.config, "workspace.test", WORKSPACE).admit([row]) == []
    finally:
        busy.close()
    row = Delivery.get_by_id(row.id)
    assert (row.status, row.last_reply) == ("deferred", "pacing: google-workspace has its 1 concurrent session(s) open")
    assert row.next_attempt_at == NOON + dt.timedelta(minutes=1)
    assert pace.SESSIONS.busy("google-workspace") == 0


def test_within_the_hourly_cap_higher_priority_goes_first_and_a_share_is_kept_for_lower_priority(app, at_noon):
    groups.save_group("google-workspace", hourly_cap=10)
    low = store(app, [f"low{i}" for i in range(15)], priority=5)
    high = store(app, [f"high{i}" for i in range(15)], priority=1)
    gate = pace.Gate(app.config, "workspace.test", WORKSPACE)
    admitted = gate.admit(queue.claim(low + high, 300))
    gate.close()
    assert [d.priority for d in admitted] == [1] * 9 + [5]
    waiting = Delivery.select().where(Delivery.status == "deferred")
    assert waiting.count() == 20 and {d.last_reply.split(":")[0] for d in waiting} == {"pacing"}


def test_lower_priority_uses_the_whole_cap_when_higher_priority_traffic_is_light(app, at_noon):
    groups.save_group("google-workspace", hourly_cap=10)
    ids = store(app, [f"low{i}" for i in range(12)], priority=5)
    gate = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(gate.admit(queue.claim(ids, 300))) == 10
    gate.close()


def test_hourly_counts_live_in_the_database_so_a_new_process_keeps_counting(app, at_noon):
    groups.save_group("google-workspace", hourly_cap=3)
    first = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(first.admit(queue.claim(store(app, ["a", "b"]), 300))) == 2
    first.close()
    pace.SESSIONS.__init__()  # what a restart leaves: no in-memory state
    second = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(second.admit(queue.claim(store(app, ["c", "d"]), 300))) == 1
    second.close()


def test_an_hourly_cap_goes_out_spread_over_the_hour_not_in_one_burst(app, test_clock):
    test_clock.value = TOP_OF_HOUR
    groups.save_group("google-workspace", hourly_cap=120)  # two a minute
    ids = store(app, [f"r{i}" for i in range(5)])
    gate = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(gate.admit(queue.claim(ids, 300))) == 2
    gate.close()
    waiting = list(Delivery.select().where(Delivery.status == "deferred"))
    assert len(waiting) == 3 and {d.next_attempt_at for d in waiting} == {dt.datetime(2025, 6, 2, 12, 1)}
    assert waiting[0].last_reply == (
        "pacing: google-workspace: its hourly cap of 120 is spread over the hour, 2 by 12:00"
    )
    test_clock.advance(60)  # 12:01:30: two more
    gate = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(gate.admit(queue.claim([d.id for d in waiting], 300))) == 2
    gate.close()


def test_a_group_daily_cap_holds_across_the_hours_of_a_day(app, at_noon):
    groups.save_group("google-workspace", hourly_cap=None, daily_cap=3)
    gate = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(gate.admit(queue.claim(store(app, ["a", "b"]), 300))) == 2
    gate.close()
    at_noon.advance(3600)  # another hour, the same day
    rows = queue.claim(store(app, ["c", "d"]), 300)
    gate = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(gate.admit(rows)) == 1
    gate.close()
    (row,) = Delivery.select().where(Delivery.status == "deferred")
    assert (row.last_reply, row.next_attempt_at) == (
        "pacing: google-workspace reached its daily cap of 3",
        dt.datetime(2025, 6, 3),
    )


def test_a_group_moves_to_its_warmed_up_cap_as_the_warm_up_plan_progresses(app, at_noon, run_cli):
    groups.save_group("google-workspace", hourly_new=2, hourly_warm=4)
    warmup.set_warmup(enabled=True, start_date=NOON.date(), steps="1:1000,3:2000,5:3000")
    ids = store(app, [f"r{i}" for i in range(10)])
    gate = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(gate.admit(queue.claim(ids, 300))) == 2  # day 1: the new-IP figure
    gate.close()
    (shown,) = [p for p in cli_json(run_cli("providers", "list", "--json")) if p["name"] == "google-workspace"]
    assert (shown["hourly_cap"], shown["hourly_new"], shown["hourly_warm"], shown["stage"]) == (2, 2, 4, "auto")

    at_noon.advance(2 * 86400)  # day 3: half-way through the plan's steps
    gate = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(gate.admit(queue.claim(ids, 300))) == 3
    gate.close()
    at_noon.advance(2 * 86400)  # day 5: warmed up, even once the warm-up's daily cap is turned off
    warmup.set_warmup(enabled=False)
    gate = pace.Gate(app.config, "workspace.test", WORKSPACE)
    assert len(gate.admit(queue.claim(ids, 300))) == 4
    gate.close()

    pinned = cli_json(run_cli("providers", "set", "google-workspace", "--stage", "new", "--json"))
    assert (pinned["stage"], pinned["hourly_cap"]) == ("new", 2)


def test_the_cli_lists_and_changes_provider_groups(run_cli):
    listed = cli_json(run_cli("providers", "list", "--json"))
    assert [p["name"] for p in listed] == [
        "gmail",
        "google-workspace",
        "aol",
        "yahoo",
        "outlook",
        "microsoft-365",
        "icloud",
        "default",
    ]
    assert "gmail-smtp-in.l.google.com" in listed[0]["mx_hosts"] and "*.google.com" in listed[1]["mx_hosts"]
    assert (listed[0]["hourly_cap"], listed[0]["hourly_warm"], listed[0]["daily_cap"]) == (500, 5000, 50000)
    changed = cli_json(run_cli("providers", "set", "gmail", "--hourly", "250", "--sessions", "none", "--json"))
    assert (changed["hourly_cap"], changed["hourly_new"], changed["hourly_warm"], changed["session_cap"]) == (
        250,
        250,
        250,
        None,
    )
    changed = cli_json(
        run_cli("providers", "set", "gmail", "--hourly-warm", "4000", "--daily", "none", "--stage", "warm", "--json")
    )
    assert (changed["hourly_cap"], changed["daily_cap"], changed["stage"]) == (4000, None, "warm")
    created = cli_json(
        run_cli(
            "providers",
            "set",
            "fastmail",
            "--domains",
            "fastmail.com,fastmail.fm",
            "--mx",
            "*.messagingengine.com",
            "--hourly",
            "100",
            "--json",
        )
    )
    assert created["domains"] == ["fastmail.com", "fastmail.fm"]
    names = [p["name"] for p in cli_json(run_cli("providers", "list", "--json"))]
    assert names[-2:] == ["fastmail", "default"]  # matched before the catch-all
    bad = run_cli("providers", "set", "gmail", "--hourly", "lots")
    assert bad.exit_code != 0 and "whole number" in bad.output
    bad = run_cli("providers", "set", "gmail", "--stage", "lukewarm")
    assert bad.exit_code != 0 and "lukewarm" in bad.output
