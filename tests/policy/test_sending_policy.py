"""The sending policy's pure rules, without sockets or a database: quotas, groups, lanes, warm-up, reputation."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.policy import sending as sp

NOW = dt.datetime(2025, 3, 14, 15, 9, 26)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("minute", dt.datetime(2025, 3, 14, 15, 9), dt.datetime(2025, 3, 14, 15, 10)),
        ("hour", dt.datetime(2025, 3, 14, 15), dt.datetime(2025, 3, 14, 16)),
        ("day", dt.datetime(2025, 3, 14), dt.datetime(2025, 3, 15)),
        ("month", dt.datetime(2025, 3, 1), dt.datetime(2025, 4, 1)),
    ],
)
def test_each_quota_period_is_a_fixed_window_around_now(period, start, end):
    assert sp.window(period, NOW) == (start, end)


def test_a_quota_is_read_from_period_limit_and_action_and_the_action_defaults_to_defer():
    assert sp.parse_quota("hour=100:hold") == sp.Quota("hour", 100, "hold")
    assert sp.parse_quota(" Day=5 ") == sp.Quota("day", 5, "defer")
    assert str(sp.Quota("month", 9, "reject")) == "month=9:reject"


def test_a_quota_may_count_one_stream_only():
    assert sp.parse_quota("Broadcast/day=5000:hold") == sp.Quota("day", 5000, "hold", "broadcast")
    assert str(sp.Quota("day", 5000, "hold", "broadcast")) == "broadcast/day=5000:hold"
    quotas = [sp.Quota("day", 10, "reject", "broadcast")]
    decision = sp.quota_decision(quotas, {("broadcast", "day"): 10}, NOW)
    assert (decision.reason, decision.action) == ("quota-broadcast-day", "reject")
    assert "10 recipients per day of broadcast mail" in decision.reply
    assert sp.quota_decision(quotas, {("", "day"): 10, ("broadcast", "day"): 9}, NOW) is None


def test_a_list_send_counts_its_members_and_is_refused_when_they_would_cross_a_quota():
    quotas = [sp.Quota("day", 100, "reject")]
    assert sp.quota_decision(quotas, {("", "day"): 40}, NOW, adding=60) is None
    assert sp.quota_decision(quotas, {("", "day"): 40}, NOW, adding=61).reason == "quota-day"


def test_of_two_holds_the_one_released_last_is_kept():
    early = sp.QuotaDecision("250", "quota-hour", "hold", dt.datetime(2025, 3, 14, 16))
    late = sp.QuotaDecision("250", "quota-day", "hold", dt.datetime(2025, 3, 15))
    by_admin = sp.QuotaDecision("250", "reputation-hold", "hold", None)
    assert sp.later_hold(early, late) is late and sp.later_hold(late, early) is late
    assert sp.later_hold(early, by_admin) is by_admin and sp.later_hold(None, early) is early


@pytest.mark.parametrize("text", ["week=1", "hour=x", "hour=5:bounce", "hour=-1", "bulk/day=5", "/day=5:hold"])
def test_a_quota_that_cannot_be_read_says_how_to_write_it(text):
    with pytest.raises(sp.PolicyError):
        sp.parse_quota(text)


def test_below_every_quota_a_message_passes():
    quotas = [sp.Quota("hour", 10, "reject"), sp.Quota("day", 50, "defer")]
    assert sp.quota_decision(quotas, {("", "hour"): 9, ("", "day"): 49}, NOW) is None


def test_of_several_quotas_reached_the_strictest_action_wins():
    quotas = [sp.Quota("minute", 1, "hold"), sp.Quota("hour", 1, "defer"), sp.Quota("day", 5, "reject")]
    assert sp.quota_decision(quotas, {("", "minute"): 1, ("", "hour"): 1}, NOW).reply.startswith("451 4.7.1")
    decision = sp.quota_decision(quotas, {("", "minute"): 1, ("", "hour"): 1, ("", "day"): 5}, NOW)
    assert (decision.action, decision.reason) == ("reject", "quota-day")
    assert decision.reply.startswith("550 5.7.1") and "5 recipients per day" in decision.reply


def test_held_mail_is_released_when_the_last_reached_hold_window_opens():
    quotas = [sp.Quota("minute", 1, "hold"), sp.Quota("hour", 3, "hold")]
    decision = sp.quota_decision(quotas, {("", "minute"): 1, ("", "hour"): 3}, NOW)
    assert (decision.action, decision.reason, decision.release_at) == (
        "hold",
        "quota-hour",
        dt.datetime(2025, 3, 14, 16),
    )
    assert decision.reply.startswith("250")


@pytest.mark.parametrize(("used", "level"), [(79, None), (80, 80), (99, 80), (100, 100), (130, 100)])
def test_quota_alerts_fire_at_eighty_and_at_one_hundred_per_cent(used, level):
    assert sp.alert_level(sp.Quota("day", 100, "defer"), used) == level


def test_a_destination_is_recognised_by_recipient_domain_then_by_mx_host_name():
    groups = list(sp.DEFAULT_GROUPS)
    assert sp.match_group(groups, "GMail.com", []).name == "gmail"
    assert sp.match_group(groups, "yahoo.co.uk", []).name == "yahoo"
    assert sp.match_group(groups, "hotmail.fr", []).name == "outlook"
    assert sp.match_group(groups, "gmail.com", ["gmail-smtp-in.l.google.com"]).name == "gmail"
    assert sp.match_group(groups, "company.test", ["alt1.gmail-smtp-in.l.google.com"]).name == "gmail"
    assert sp.match_group(groups, "company.test", ["aspmx.l.google.com."]).name == "google-workspace"
    assert sp.match_group(groups, "company.test", ["smtp.google.com"]).name == "google-workspace"
    assert sp.match_group(groups, "company.test", ["company-test.mail.protection.outlook.com"]).name == "microsoft-365"
    assert sp.match_group(groups, "company.test", ["outlook-com.olc.protection.outlook.com"]).name == "outlook"
    assert sp.match_group(groups, "aol.com", ["mx-aol.mail.gm0.yahoodns.net"]).name == "aol"
    assert sp.match_group(groups, "company.test", ["mx-aol.mail.gm0.yahoodns.net"]).name == "aol"
    assert sp.match_group(groups, "company.test", ["mx.company.test"]).name == "default"


@pytest.mark.parametrize(
    ("code", "enhanced", "text", "expected"),
    [
        (421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail", True),
        (421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred", True),
        (451, "4.7.500", "Server busy. Please try again later", True),
        (450, "4.7.28", "Gmail has detected an unusual rate", True),
        (451, "4.7.1", "Greylisted, try again later", False),
        (452, "4.2.2", "Mailbox full", False),
        (550, "5.7.1", "rate limited for good", False),
    ],
)
def test_a_rate_limit_reply_is_told_apart_from_greylisting_and_other_failures(code, enhanced, text, expected):
    assert sp.is_rate_limit(code, enhanced, text) is expected


def test_the_back_off_doubles_with_each_strike_up_to_a_ceiling():
    lengths = [(sp.throttle_until(n, NOW, 900) - NOW).total_seconds() for n in (1, 2, 3, 9)]
    assert lengths == [900, 1800, 3600, 900 * 16]


# The knowledge base's table (mySMTP, "SMTP Limits, Sending Rates & Optimization", section 3):
# per hour for a new IP (Gmail's 500-1,000 taken at its lower end), per hour once warmed up, per day.
PROVIDER_TABLE = {
    "gmail": (500, 5000, 50000),
    "yahoo": (1000, 10000, 100000),
    "outlook": (500, 3000, 30000),
    "aol": (500, 5000, 50000),
    "icloud": (500, 2000, 10000),
}


def test_the_default_provider_caps_are_the_knowledge_base_table():
    defaults = {g.name: (g.hourly_new, g.hourly_warm, g.daily_cap) for g in sp.DEFAULT_GROUPS}
    assert {name: defaults[name] for name in PROVIDER_TABLE} == PROVIDER_TABLE
    # The table says "Varies" for tenants: their consumer sibling's hourly figures, counted apart.
    assert defaults["google-workspace"] == (500, 5000, None)
    assert defaults["microsoft-365"] == (500, 3000, None)
    assert defaults["default"] == (None, None, None)
    assert all(g.stage == "auto" for g in sp.DEFAULT_GROUPS)


def test_a_group_moves_from_its_new_ip_to_its_warmed_up_hourly_cap_as_the_warm_up_progresses():
    gmail = next(g for g in sp.DEFAULT_GROUPS if g.name == "gmail")
    assert [sp.hourly_cap(gmail, p) for p in (0, 0.2, 0.5, 1)] == [500, 1400, 2750, 5000]
    pinned = sp.Group("gmail", hourly_new=500, hourly_warm=5000, stage="warm")
    assert sp.hourly_cap(pinned, 0) == 5000
    assert sp.hourly_cap(sp.Group("x", hourly_new=500, hourly_warm=5000, stage="new"), 1) == 500
    uncapped_when_warm = sp.Group("x", hourly_new=100, hourly_warm=None)
    assert (sp.hourly_cap(uncapped_when_warm, 0.9), sp.hourly_cap(uncapped_when_warm, 1)) == (100, None)
    with pytest.raises(sp.PolicyError):
        sp.parse_stage("lukewarm")


def test_warm_up_progress_counts_the_plan_steps_reached():
    start = dt.date(2025, 3, 1)
    days = {
        day: sp.progress(sp.DEFAULT_WARMUP, start, start + dt.timedelta(days=day - 1)) for day in (1, 4, 15, 21, 40)
    }
    assert days == {1: 0.0, 4: 0.2, 15: 0.8, 21: 1.0, 40: 1.0}


def test_an_hourly_cap_is_spread_evenly_over_the_hour():
    top = dt.datetime(2025, 3, 14, 15, 0, 5)
    assert [sp.spread(600, top.replace(minute=m)) for m in (0, 1, 29, 59)] == [10, 20, 300, 600]
    assert sp.spread(5, top) == 1  # at least one at any moment
    wait = sp.paced(3, group="gmail", cap=600, used=10, waiting={}, low_share=0.1, now=top, throttled=False)
    assert (wait.reason, wait.until) == ("pacing", dt.datetime(2025, 3, 14, 15, 1))
    assert wait.text == "gmail: its hourly cap of 600 is spread over the hour, 10 by 15:00"
    assert sp.paced(3, group="gmail", cap=600, used=9, waiting={}, low_share=0.1, now=top, throttled=False) is None


def test_over_a_group_daily_cap_a_delivery_waits_until_midnight():
    wait = sp.paced_daily(3, group="icloud", cap=10000, used=10000, waiting={}, low_share=0.1, now=NOW)
    assert (wait.reason, wait.until) == ("pacing", dt.datetime(2025, 3, 15))
    assert wait.text == "icloud reached its daily cap of 10000"
    assert sp.paced_daily(3, group="icloud", cap=None, used=10**9, waiting={}, low_share=0.1, now=NOW) is None


def test_a_throttled_group_gets_half_its_hourly_cap_and_one_session():
    gmail = sp.Group("gmail", hourly_new=1000, hourly_warm=1000, session_cap=5)
    assert sp.effective_caps(gmail, throttled=False, sent_last_hour=0) == (1000, 5)
    assert sp.effective_caps(gmail, throttled=True, sent_last_hour=0) == (500, 1)
    assert sp.effective_caps(sp.Group("default"), throttled=True, sent_last_hour=40) == (20, 1)


def test_over_a_group_hourly_cap_a_delivery_waits_for_the_next_hour_with_reason_pacing():
    late = NOW.replace(minute=59)  # the whole hour's cap has been spread out by now
    wait = sp.paced(3, group="gmail", cap=10, used=10, waiting={}, low_share=0.1, now=late, throttled=False)
    assert (wait.reason, wait.until) == ("pacing", dt.datetime(2025, 3, 14, 16))
    assert "gmail reached its hourly cap of 10" in wait.text
    assert sp.paced(3, group="gmail", cap=10, used=9, waiting={}, low_share=0.1, now=late, throttled=False) is None


def test_higher_priority_takes_the_cap_first_and_lower_lanes_keep_a_reserved_share():
    waiting = {1: 500, 5: 500}
    # Of a cap of 100 with both lanes waiting, priority 1 may use 90 and priority 5 the last 10.
    high = [n for n in range(100) if sp.lane_allows(1, n, 100, waiting, 0.1)]
    low = [n for n in range(100) if sp.lane_allows(5, n, 100, waiting, 0.1)]
    assert high == list(range(90)) and low == list(range(90, 100))
    # When the higher lane is quiet the lower one may use the whole cap, and the other way round.
    assert all(sp.lane_allows(5, n, 100, {5: 500}, 0.1) for n in range(100))
    assert all(sp.lane_allows(1, n, 100, {1: 500}, 0.1) for n in range(100))
    assert not sp.lane_allows(1, 100, 100, {}, 0.1)


def test_the_default_warm_up_plan_steps_up_on_days_four_seven_eleven_fifteen_and_twenty_one():
    start = dt.date(2025, 3, 1)
    caps = {day: sp.daily_cap(sp.DEFAULT_WARMUP, start, start + dt.timedelta(days=day - 1)) for day in range(1, 23)}
    assert [caps[d] for d in (1, 3, 4, 6, 7, 10, 11, 14, 15, 20, 21, 22)] == [
        1000,
        1000,
        5000,
        5000,
        10000,
        10000,
        25000,
        25000,
        50000,
        50000,
        100000,
        100000,
    ]  # day 21 on: the goal
    assert sp.daily_cap(sp.DEFAULT_WARMUP, start, dt.date(2025, 2, 1)) == 1000  # before the start: day 1


def test_a_warm_up_plan_round_trips_through_its_text_form_and_must_start_on_day_one():
    assert sp.parse_plan(sp.format_plan(sp.DEFAULT_WARMUP)) == sp.DEFAULT_WARMUP
    assert sp.format_plan(sp.DEFAULT_WARMUP) == "1:1000,4:5000,7:10000,11:25000,15:50000,21:100000"
    for bad in ("2:100", "1:100,1:200", "1-100", ""):
        with pytest.raises(sp.PolicyError):
            sp.parse_plan(bad)


def test_over_the_warm_up_cap_mail_waits_until_midnight_with_reason_warmup():
    wait = sp.warmed_up(3, cap=1000, used=1000, waiting={}, low_share=0.1, now=NOW)
    assert (wait.reason, wait.until) == ("warmup", dt.datetime(2025, 3, 15))
    assert sp.warmed_up(3, cap=None, used=10**9, waiting={}, low_share=0.1, now=NOW) is None


@pytest.mark.parametrize(
    ("sent", "bounced", "complaints", "state", "reason"),
    [
        (1000, 49, 0, "ok", ""),
        (1000, 50, 0, "warn", "bounce-rate"),
        (1000, 0, 1, "warn", "complaint-rate"),
        (1000, 100, 0, "hold", "bounce-rate"),
        (1000, 0, 2, "warn", "complaint-rate"),
        (1000, 0, 3, "hold", "complaint-rate"),  # the knowledge base's 0.3 % (SES holds only at 0.5 %)
        (199, 150, 10, "ok", ""),  # under the minimum volume nothing is judged
    ],
)
def test_the_reputation_guard_holds_at_ten_per_cent_bounces_or_three_per_mille_complaints(
    sent, bounced, complaints, state, reason
):
    verdict = sp.reputation(sent, bounced, complaints, sp.Thresholds())
    assert (verdict.state, verdict.reason) == (state, reason)


def test_only_an_account_on_hold_has_its_new_mail_held_until_an_admin_releases_it():
    assert sp.reputation_decision("warn", "bounce-rate") is None
    decision = sp.reputation_decision("hold", "bounce-rate")
    assert (decision.action, decision.reason, decision.release_at) == ("hold", "reputation-bounce-rate", None)
