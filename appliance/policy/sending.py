"""Every sending limit as a small pure rule over plain data.

Quotas per account, provider groups and their pacing, the back-off after a remote rate-limit
reply, the IP warm-up plan, fair priority lanes within each cap, and the reputation guard. Nothing
here reads the database or the clock: callers pass ``now`` (``appliance.clock.now()`` at the edge)
and the figures they counted, and get back a decision with a reply or a wait and a stable reason slug.
"""

from __future__ import annotations

import calendar
import datetime as dt
import fnmatch
import math
from dataclasses import dataclass
from typing import NamedTuple

from .. import replies

# -- quotas ------------------------------------------------------------------------------------
PERIODS = ("minute", "hour", "day", "month")
DEFER, HOLD, REJECT = "defer", "hold", "reject"
ACTIONS = (DEFER, HOLD, REJECT)
ALERT_LEVELS = (80, 100)  # per cent of a quota at which the admin hears about it


class Alarm(NamedTuple):
    """An alert a rule asks for (appliance/guard.py raises it)."""

    kind: str
    subject: str
    text: str
    severity: str


class PolicyError(ValueError):
    """A limit written in a way that cannot be used; the text says how to write it."""


STREAMS = ("transactional", "broadcast")  # policy/acceptance.py reads them from X-Stream


@dataclass(frozen=True)
class Quota:
    period: str  # minute | hour | day | month
    limit: int  # recipients per window
    action: str  # defer | hold | reject
    stream: str = ""  # the stream whose mail it counts; "": all the account's mail

    def __str__(self) -> str:
        return f"{self.stream + '/' if self.stream else ''}{self.period}={self.limit}:{self.action}"

    @property
    def slug(self) -> str:
        """The reason slug of a decision it makes: quota-hour, quota-broadcast-day."""
        return f"quota-{self.stream + '-' if self.stream else ''}{self.period}"

    @property
    def per(self) -> str:
        """Its window in words: "hour", "day of broadcast mail"."""
        return f"{self.period} of {self.stream} mail" if self.stream else self.period


def parse_quota(text: str) -> Quota:
    """Read ``[STREAM/]PERIOD=LIMIT[:ACTION]`` (``hour=100:defer``, ``broadcast/day=5000:hold``; the
    action defaults to defer; without a stream the quota counts all the account's mail)."""
    period, _, rest = text.strip().partition("=")
    stream, slash, period = period.rpartition("/")
    limit, _, action = rest.partition(":")
    stream, period, action = stream.strip().lower(), period.strip().lower(), (action.strip().lower() or DEFER)
    if slash and stream not in STREAMS:
        raise PolicyError(f"{text!r}: the stream is {' or '.join(STREAMS)} (like broadcast/day=5000:hold)")
    if period not in PERIODS:
        raise PolicyError(f"{text!r}: the period is one of {', '.join(PERIODS)} (like hour=100:defer)")
    if action not in ACTIONS:
        raise PolicyError(f"{text!r}: the action is one of {', '.join(ACTIONS)}")
    try:
        number = int(limit)
    except ValueError:
        raise PolicyError(f"{text!r}: the limit is a whole number of recipients") from None
    if number < 0:
        raise PolicyError(f"{text!r}: the limit cannot be negative")
    return Quota(period, number, action, stream)


def window(period: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Return the fixed window (start, end) of ``period`` that contains ``now`` (UTC)."""
    if period == "minute":
        start = now.replace(second=0, microsecond=0)
        return start, start + dt.timedelta(minutes=1)
    if period == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
        return start, start + dt.timedelta(hours=1)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + dt.timedelta(days=1)
    if period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = calendar.monthrange(start.year, start.month)[1]
        return start, start + dt.timedelta(days=days)
    raise PolicyError(f"unknown period {period!r}")


class QuotaDecision(NamedTuple):
    reply: str
    reason: str  # stable slug: "quota-hour", "reputation-hold"
    action: str  # defer | hold | reject
    release_at: dt.datetime | None = None  # hold: when the window opens again (None: an admin releases)


def quota_decision(
    quotas: list[Quota], usage: dict[tuple[str, str], int], now: dt.datetime, adding: int = 1
) -> QuotaDecision | None:
    """Decide a new send of an account that already sent ``usage[stream, period]`` recipients in the
    current window of each quota (stream "": all its mail). A message counts as one (its recipients
    are not known at MAIL FROM: a message is refused once the quota is used up, not when it would
    cross it); a list send counts as its ``adding`` members, so a list larger than what is left of a
    quota is refused, or held, as a whole.

    Of several quotas reached, the strictest action wins (reject, then defer, then hold); held mail is
    released when the last reached hold window opens again.
    """
    reached = [q for q in quotas if usage.get((q.stream, q.period), 0) + adding > q.limit]
    if not reached:
        return None
    by_action = {a: [q for q in reached if q.action == a] for a in ACTIONS}
    if by_action[REJECT]:
        q = by_action[REJECT][0]
        return QuotaDecision(replies.QUOTA_REJECTED.format(period=q.per, limit=q.limit), q.slug, REJECT)
    if by_action[DEFER]:
        q = by_action[DEFER][0]
        return QuotaDecision(replies.QUOTA_EXCEEDED, q.slug, DEFER)
    latest = max(by_action[HOLD], key=lambda q: window(q.period, now)[1])
    return QuotaDecision(replies.MAIL_OK, latest.slug, HOLD, window(latest.period, now)[1])


def later_hold(first: QuotaDecision | None, second: QuotaDecision | None) -> QuotaDecision | None:
    """Of two holds (either may be None), the one released last: an admin's release (no time) last of all."""
    if first is None or second is None:
        return first or second
    if first.release_at is None or (second.release_at is not None and first.release_at >= second.release_at):
        return first
    return second


def alert_level(quota: Quota, used: int) -> int | None:
    """Return the highest alert level (80 or 100 per cent) that ``used`` has reached, or None."""
    if quota.limit <= 0:
        return 100
    reached = [level for level in ALERT_LEVELS if used * 100 >= quota.limit * level]
    return reached[-1] if reached else None


# -- provider groups, pacing and the rate-limit back-off ---------------------------------------
DEFAULT_GROUP = "default"


STAGE_AUTO, STAGE_NEW, STAGE_WARM = "auto", "new", "warm"
STAGES = (STAGE_AUTO, STAGE_NEW, STAGE_WARM)


@dataclass(frozen=True)
class Group:
    """Destinations that one provider runs, recognised by recipient domain or by MX host name.

    A group has two hourly caps: one for a new IP and one for a warmed-up IP. At stage ``auto`` the
    cap in force moves from the first to the second as the IP warm-up plan progresses; ``new`` and
    ``warm`` pin it (an admin who moved an already warm IP says ``warm``).
    """

    name: str
    domains: tuple[str, ...] = ()  # fnmatch patterns: "gmail.com", "yahoo.*"
    mx_hosts: tuple[str, ...] = ()  # fnmatch patterns: "gmail-smtp-in.l.google.com"
    hourly_new: int | None = None  # deliveries per clock hour from a new IP; None: no cap
    hourly_warm: int | None = None  # deliveries per clock hour once warmed up; None: no cap
    daily_cap: int | None = None  # deliveries per UTC day; None: no cap
    session_cap: int | None = None  # concurrent outbound sessions to the whole group; None: no cap
    stage: str = STAGE_AUTO


# The mySMTP knowledge base's table of provider limits ("SMTP Limits, Sending Rates &
# Optimization", section 3), per hour for a new IP, per hour once warmed up, and per day. Where the
# table gives a range (Gmail, 500-1,000 for a new IP) the lower figure is taken; "5,000+" is 5,000.
# The table has "Varies" for Google Workspace and Exchange tenants: they get their consumer
# sibling's hourly figures, counted apart, and no daily cap. Sessions are ours (the table has none).
# Matching by MX runs in this order: gmail's own MX hosts come before the Workspace catch-all under
# google.com, outlook.com's (olc.protection.outlook.com) before Microsoft 365 tenants', and AOL's
# MX hosts live under yahoodns.net too, so AOL is listed before Yahoo.
PROVIDER_TABLE_SOURCE = "mySMTP knowledge base, SMTP Limits, Sending Rates & Optimization, section 3"
DEFAULT_GROUPS = (
    Group(
        "gmail",
        ("gmail.com", "googlemail.com"),
        ("gmail-smtp-in.l.google.com", "*.gmail-smtp-in.l.google.com"),
        hourly_new=500,
        hourly_warm=5000,
        daily_cap=50000,
        session_cap=5,
    ),
    Group(
        "google-workspace", (), ("*.google.com", "*.googlemail.com"), hourly_new=500, hourly_warm=5000, session_cap=5
    ),
    Group(
        "aol",
        ("aol.com", "aim.com", "verizon.net"),
        ("mx-aol.*", "*.aol.com"),
        hourly_new=500,
        hourly_warm=5000,
        daily_cap=50000,
        session_cap=3,
    ),
    Group(
        "yahoo",
        ("yahoo.*", "ymail.com", "rocketmail.com"),
        ("*.yahoodns.net",),
        hourly_new=1000,
        hourly_warm=10000,
        daily_cap=100000,
        session_cap=3,
    ),
    Group(
        "outlook",
        ("outlook.*", "hotmail.*", "live.*", "msn.com"),
        ("*.olc.protection.outlook.com", "*.hotmail.com"),
        hourly_new=500,
        hourly_warm=3000,
        daily_cap=30000,
        session_cap=5,
    ),
    Group("microsoft-365", (), ("*.protection.outlook.com",), hourly_new=500, hourly_warm=3000, session_cap=5),
    Group(
        "icloud",
        ("icloud.com", "me.com", "mac.com"),
        ("*.icloud.com",),
        hourly_new=500,
        hourly_warm=2000,
        daily_cap=10000,
        session_cap=3,
    ),
    Group(DEFAULT_GROUP),
)


def parse_stage(text: str) -> str:
    stage = text.strip().lower()
    if stage not in STAGES:
        raise PolicyError(f"{text!r}: the stage is one of {', '.join(STAGES)}")
    return stage


def hourly_cap(group: Group, progress: float) -> int | None:
    """Return the group's hourly cap for an IP ``progress`` of the way (0 to 1) through its warm-up.

    At stage auto the cap moves in a straight line from the new-IP figure to the warmed-up one; a
    warmed-up figure of None (no cap) is reached only at the end.
    """
    if group.stage == STAGE_WARM:
        return group.hourly_warm
    if group.stage == STAGE_NEW or progress <= 0:
        return group.hourly_new
    if progress >= 1:
        return group.hourly_warm
    if group.hourly_new is None or group.hourly_warm is None:
        return group.hourly_new
    return round(group.hourly_new + (group.hourly_warm - group.hourly_new) * progress)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    name = name.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(name, p.lower()) for p in patterns)


def match_group(groups: list[Group], domain: str, mx_hosts: list[str]) -> Group:
    """Find the group of a destination: by recipient domain first, then by any MX host name
    (a company on Google Workspace has MX hosts under google.com, so it counts as gmail)."""
    for group in groups:
        if _matches(domain, group.domains):
            return group
    for group in groups:
        if any(_matches(host, group.mx_hosts) for host in mx_hosts):
            return group
    return next((g for g in groups if g.name == DEFAULT_GROUP), Group(DEFAULT_GROUP))


_RATE_WORDS = ("rate", "limit", "too many", "throttl", "unusual", "temporarily deferred", "busy", "try again later")


def is_rate_limit(code: int, enhanced: str, text: str) -> bool:
    """Tell whether a remote reply asks us to slow down: 421, or a 4xx with a 4.7.x code that says
    so (Gmail 4.7.28 and 4.7.0, Yahoo TSS04, Outlook 4.7.500). Greylisting (4.7.1 "greylisted") is not."""
    lowered = text.lower()
    if not 400 <= code < 500 or "greylist" in lowered:
        return False
    if code == 421:
        return True
    return enhanced.startswith("4.7.") and (enhanced == "4.7.28" or any(w in lowered for w in _RATE_WORDS))


THROTTLE_MAX_STRIKES = 5  # the back-off doubles per strike: 1, 2, 4, 8, 16 × the base


def throttle_until(strikes: int, now: dt.datetime, base_seconds: int) -> dt.datetime:
    """Return when a group's slow-down ends after its ``strikes``-th rate-limit reply in a row."""
    factor = 2 ** (min(max(strikes, 1), THROTTLE_MAX_STRIKES) - 1)
    return now + dt.timedelta(seconds=base_seconds * factor)


def effective_caps(
    group: Group, *, throttled: bool, sent_last_hour: int, progress: float = 0.0
) -> tuple[int | None, int | None]:
    """Return the (hourly, session) caps in force: a throttled group gets half its hourly cap
    (half of what it just sent when it has none) and a single session."""
    hourly = hourly_cap(group, progress)
    if not throttled:
        return hourly, group.session_cap
    base = hourly if hourly is not None else sent_last_hour
    return max(1, base // 2), 1


def spread(cap: int, now: dt.datetime) -> int:
    """Return how many of an hourly cap may have gone by ``now``: the cap is spread evenly over the
    hour's minutes (by the end of minute m, cap × (m + 1) / 60), so it never leaves in one burst at
    the top of the hour."""
    return max(1, math.ceil(cap * (now.minute + 1) / 60))


# -- priority lanes ----------------------------------------------------------------------------
def lane_allows(priority: int, used: int, cap: int | None, waiting: dict[int, int], low_share: float) -> bool:
    """Tell whether one more delivery of ``priority`` (1 highest … 5) fits a cap of which ``used`` is spent.

    Higher priority goes first, yet lower lanes keep moving: while lower-priority mail waits, the last
    ``low_share`` of the cap is kept for it; while higher-priority mail waits, a lower lane may only
    use that reserved tail. With no other lane waiting, any lane may use the whole cap.
    """
    if cap is None:
        return True
    remaining = cap - used
    if remaining <= 0:
        return False
    reserved = math.ceil(cap * low_share) if low_share > 0 else 0
    lower_waiting = any(n for p, n in waiting.items() if p > priority)
    higher_waiting = any(n for p, n in waiting.items() if p < priority)
    if higher_waiting:
        return remaining <= reserved
    if lower_waiting:
        return remaining > reserved
    return True


class Wait(NamedTuple):
    """A delivery that must wait: status `deferred` with this reason until ``until``."""

    reason: str  # "pacing" | "warmup"
    until: dt.datetime
    text: str


LANE_RECHECK = dt.timedelta(minutes=1)  # a lane waiting for another lane looks again this soon


def paced(
    priority: int,
    *,
    group: str,
    cap: int | None,
    used: int,
    waiting: dict[int, int],
    low_share: float,
    now: dt.datetime,
    throttled: bool,
) -> Wait | None:
    """Decide whether a delivery to a provider group may go now under its hourly cap, spread over the hour."""
    allowed = spread(cap, now) if cap is not None else None
    if lane_allows(priority, used, allowed, waiting, low_share):
        return None
    slowed = " (slowed down after its rate-limit reply)" if throttled else ""
    if cap is not None and used >= cap:
        return Wait("pacing", window("hour", now)[1], f"{group} reached its hourly cap of {cap}{slowed}")
    if allowed is not None and used >= allowed:
        return Wait(
            "pacing",
            window("minute", now)[1],
            f"{group}: its hourly cap of {cap}{slowed} is spread over the hour, {allowed} by {now:%H:%M}",
        )
    return Wait("pacing", now + LANE_RECHECK, f"{group}: another priority lane's share of the hourly cap goes first")


def paced_daily(
    priority: int,
    *,
    group: str,
    cap: int | None,
    used: int,
    waiting: dict[int, int],
    low_share: float,
    now: dt.datetime,
) -> Wait | None:
    """Decide whether a delivery to a provider group may go today under the group's daily cap."""
    if lane_allows(priority, used, cap, waiting, low_share):
        return None
    if cap is not None and used >= cap:
        return Wait("pacing", window("day", now)[1], f"{group} reached its daily cap of {cap}")
    return Wait("pacing", now + LANE_RECHECK, f"{group}: another priority lane's share of the daily cap goes first")


def session_wait(group: str, cap: int, now: dt.datetime) -> Wait:
    """The wait of a delivery whose provider group has every allowed session open."""
    return Wait("pacing", now + LANE_RECHECK, f"{group} has its {cap} concurrent session(s) open")


# -- IP warm-up --------------------------------------------------------------------------------
@dataclass(frozen=True)
class WarmupStep:
    first_day: int  # 1-based day of the plan this step starts on
    daily_cap: int | None  # None: no cap (warmed up)


# The knowledge base's plan for a 100,000-a-day goal ("IP Warming Plan"): day 21 on, the goal itself.
DEFAULT_WARMUP = (
    WarmupStep(1, 1000),
    WarmupStep(4, 5000),
    WarmupStep(7, 10000),
    WarmupStep(11, 25000),
    WarmupStep(15, 50000),
    WarmupStep(21, 100000),
)


def parse_plan(text: str) -> tuple[WarmupStep, ...]:
    """Read ``DAY:CAP,…`` (``1:1000,4:5000,21:`` — an empty cap means no cap from that day)."""
    steps = []
    for part in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not part:
            continue
        day, sep, cap = part.partition(":")
        try:
            step = WarmupStep(int(day), int(cap) if cap.strip() else None)
        except ValueError:
            raise PolicyError(f"{part!r}: write each step as DAY:CAP, like 4:5000 (or 21: for no cap)") from None
        if not sep or step.first_day < 1 or (step.daily_cap is not None and step.daily_cap < 0):
            raise PolicyError(f"{part!r}: write each step as DAY:CAP, like 4:5000 (or 21: for no cap)")
        steps.append(step)
    steps.sort(key=lambda s: s.first_day)
    if not steps or steps[0].first_day != 1:
        raise PolicyError("the plan must start on day 1")
    if len({s.first_day for s in steps}) != len(steps):
        raise PolicyError("each day may start only one step")
    return tuple(steps)


def format_plan(steps: tuple[WarmupStep, ...]) -> str:
    return ",".join(f"{s.first_day}:{'' if s.daily_cap is None else s.daily_cap}" for s in steps)


def plan_day(start: dt.date, today: dt.date) -> int:
    """Return the plan's day number for ``today`` (day 1 is the start date; earlier counts as day 1)."""
    return max(1, (today - start).days + 1)


def daily_cap(steps: tuple[WarmupStep, ...], start: dt.date, today: dt.date) -> int | None:
    """Return the warm-up's cap on all deliveries for ``today``, or None once the plan is done."""
    day = plan_day(start, today)
    cap = steps[0].daily_cap
    for step in steps:
        if step.first_day <= day:
            cap = step.daily_cap
    return cap


def progress(steps: tuple[WarmupStep, ...], start: dt.date, today: dt.date) -> float:
    """Return how far through its plan the IP is (0 on the first step, 1 on the last): what moves
    provider groups from their new-IP to their warmed-up hourly caps."""
    if len(steps) < 2:
        return 1.0
    day = plan_day(start, today)
    reached = sum(1 for step in steps if step.first_day <= day) - 1
    return reached / (len(steps) - 1)


def warmed_up(
    priority: int,
    *,
    cap: int | None,
    used: int,
    waiting: dict[int, int],
    low_share: float,
    now: dt.datetime,
) -> Wait | None:
    """Decide whether a delivery may go today under the warm-up's daily cap; the rest waits for tomorrow."""
    if lane_allows(priority, used, cap, waiting, low_share):
        return None
    if cap is not None and used >= cap:
        return Wait("warmup", window("day", now)[1], f"IP warm-up: today's cap of {cap} is reached")
    return Wait("warmup", now + LANE_RECHECK, "IP warm-up: another priority lane's share of today's cap goes first")


# -- reputation guard --------------------------------------------------------------------------
OK, WARN = "ok", "warn"  # and HOLD


@dataclass(frozen=True)
class Thresholds:
    """Warn at 5 % bounces or 0.1 % complaints, hold at 10 % bounces (SES's figures) or 0.3 %
    complaints (the knowledge base's ceiling; SES reviews an account only at 0.5 %)."""

    warn_bounce: float = 0.05
    warn_complaint: float = 0.001
    hold_bounce: float = 0.10
    hold_complaint: float = 0.003
    window_hours: int = 168
    min_volume: int = 200


class Reputation(NamedTuple):
    state: str  # ok | warn | hold
    reason: str  # "" | "bounce-rate" | "complaint-rate"
    bounce_rate: float
    complaint_rate: float


def reputation(sent: int, bounced: int, complaints: int, t: Thresholds) -> Reputation:
    """Judge an account by its bounce and complaint rates over the window; below the minimum
    volume a few bounces say nothing, so the account stays ok."""
    bounce_rate = bounced / sent if sent else 0.0
    complaint_rate = complaints / sent if sent else 0.0
    if sent < t.min_volume:
        return Reputation(OK, "", bounce_rate, complaint_rate)
    limits = ((HOLD, t.hold_bounce, t.hold_complaint), (WARN, t.warn_bounce, t.warn_complaint))
    for state, bounce_limit, complaint_limit in limits:
        if bounce_rate >= bounce_limit:
            return Reputation(state, "bounce-rate", bounce_rate, complaint_rate)
        if complaint_rate >= complaint_limit:
            return Reputation(state, "complaint-rate", bounce_rate, complaint_rate)
    return Reputation(OK, "", bounce_rate, complaint_rate)


def reputation_decision(state: str, reason: str) -> QuotaDecision | None:
    """An account on hold has its new mail accepted and held until an admin releases it."""
    if state != HOLD:
        return None
    return QuotaDecision(replies.MAIL_OK, f"reputation-{reason or 'hold'}", HOLD, None)
