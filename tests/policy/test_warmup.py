"""IP warm-up: the plan's daily cap on all deliveries, day boundaries through the test clock, priority first."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import clock, queue
from appliance.delivery import pace
from appliance.delivery.route import Route, Target
from appliance.models import Delivery
from appliance.policy import warmup
from tests.support.mail import store
from tests.support.process import cli_json

DAY1 = dt.datetime(2025, 6, 2, 9, 0)
ELSEWHERE = Route("example.test", (Target("mx.example.test", "127.0.0.3", 25),))


@pytest.fixture
def day_one(test_clock):
    test_clock.value = DAY1
    return test_clock


def send_due(app, domain="example.test", route=ELSEWHERE) -> list[Delivery]:
    """Claim every due delivery and pass it through the pace step; return the ones let through."""
    due = [
        d.id
        for d in Delivery.select().where(
            Delivery.status.in_(["queued", "deferred"]) & (Delivery.next_attempt_at <= clock.now())
        )
    ]
    gate = pace.Gate(app.config, domain, route)
    try:
        admitted = gate.admit(queue.claim(due, 300))
    finally:
        gate.close()
    Delivery.update(status="delivered").where(Delivery.id.in_([d.id for d in admitted])).execute()
    return admitted


def test_the_daily_cap_follows_the_plan_and_the_rest_waits_for_the_next_day(app, day_one):
    warmup.set_warmup(enabled=True, start_date=DAY1.date(), steps="1:2,2:3,3:")
    store(app, [f"n{i}" for i in range(5)], domain="example.test")
    store(app, ["urgent"], priority=1, domain="example.test")

    first = send_due(app)
    assert [d.priority for d in first] == [1, 3]  # priority mail goes first within the cap
    waiting = list(Delivery.select().where(Delivery.status == "deferred"))
    assert len(waiting) == 4
    assert {(d.last_reply, d.next_attempt_at) for d in waiting} == {
        ("warmup: IP warm-up: today's cap of 2 is reached", dt.datetime(2025, 6, 3))
    }

    day_one.advance(14 * 3600 + 59 * 60)  # 23:59, still day 1
    assert send_due(app) == []
    day_one.advance(60)  # midnight: day 2, cap 3
    assert len(send_due(app)) == 3
    day_one.advance(86400)  # day 3: the plan is done, no cap
    assert len(send_due(app)) == 1
    assert not Delivery.select().where(Delivery.status == "deferred").exists()


def test_the_warm_up_counts_all_traffic_across_provider_groups(app, day_one):
    warmup.set_warmup(enabled=True, start_date=DAY1.date(), steps="1:3")
    store(app, ["a", "b"], domain="example.test")
    assert len(send_due(app)) == 2
    store(app, ["c", "d"], domain="workspace.test")
    gmail_route = Route("workspace.test", (Target("aspmx.l.google.com", "127.0.0.3", 25),))
    assert len(send_due(app, "workspace.test", gmail_route)) == 1


def test_a_disabled_warm_up_or_a_smarthost_lets_everything_through(app, day_one):
    warmup.set_warmup(enabled=False, start_date=DAY1.date(), steps="1:1")
    store(app, ["a", "b"], domain="example.test")
    assert len(send_due(app)) == 2
    warmup.set_warmup(enabled=True)
    store(app, ["c", "d"], domain="example.test")
    upstream = Route("smarthost", (Target("smtp.upstream.test", "127.0.0.3", 587),), smarthost=object())
    assert len(send_due(app, route=upstream)) == 2


def test_within_the_warm_up_cap_lower_priority_keeps_a_reserved_share(app, day_one):
    warmup.set_warmup(enabled=True, start_date=DAY1.date(), steps="1:20")
    store(app, [f"bulk{i}" for i in range(30)], priority=5, domain="example.test")
    store(app, [f"order{i}" for i in range(30)], priority=2, domain="example.test")
    admitted = send_due(app)
    assert [d.priority for d in admitted] == [2] * 18 + [5] * 2  # 10 % of 20 kept for the lower lane


def test_the_cli_sets_and_shows_the_plan(run_cli, day_one):
    shown = cli_json(run_cli("warmup", "show", "--json"))
    assert (shown["enabled"], shown["plan"]) == (False, "1:1000,4:5000,7:10000,11:25000,15:50000,21:100000")
    result = cli_json(run_cli("warmup", "set", "--enable", "--start", "2025-05-29", "--json"))
    assert (result["enabled"], result["day"], result["today_cap"]) == (True, 5, 5000)
    changed = cli_json(run_cli("warmup", "set", "--plan", "1:100, 3:", "--json"))
    assert changed["steps"] == [{"first_day": 1, "daily_cap": 100}, {"first_day": 3, "daily_cap": None}]
    assert changed["today_cap"] is None
    bad = run_cli("warmup", "set", "--plan", "2:100")
    assert bad.exit_code != 0 and "day 1" in bad.output
    policy = cli_json(run_cli("policy", "show", "--json"))
    assert policy["warmup"]["enabled"] and policy["reputation_thresholds"]["hold_bounce"] == 0.1
