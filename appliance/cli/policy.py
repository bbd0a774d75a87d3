"""`appliance` commands: sending policy: quotas, provider groups, warm-up, reputation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import clock
from ..models import (
    AccountReputation,
    SmtpAccount,
)
from ..policy import groups, quotas, reputation, warmup
from ..policy import sending as sp
from .accounts import get_account
from .base import cli, emit, ts


def _policy_error(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _cap(value: str | None) -> int | None | bool:
    """Read a cap option: a number, or "none" to remove the cap (not given: leave it)."""
    if value is None:
        return False
    if value.strip().lower() in ("none", "-", ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise click.ClickException(f"a cap is a whole number or 'none', not {value!r}") from None


def quota_rows(account: SmtpAccount) -> list[dict[str, Any]]:
    return [
        {**r, "window_start": ts(r["window_start"]), "window_end": ts(r["window_end"])}
        for r in quotas.usage_rows(account.id, clock.now())
    ]


def _counted(row: dict[str, Any]) -> str:
    return f"{row['period']} ({row['stream']} mail)" if row["stream"] else f"{row['period']} (all mail)"


@cli.group("quotas")
def quotas_group() -> None:
    """Sending quotas per SMTP account: recipients per minute, hour, day or month, of all its mail or of one stream."""


@quotas_group.command("set")
@click.argument("ref", metavar="ACCOUNT")
@click.option(
    "--per",
    "specs",
    multiple=True,
    metavar="[STREAM/]PERIOD=LIMIT[:ACTION]",
    help="e.g. hour=100:defer, day=1000:hold, month=20000:reject; broadcast/day=5000:hold counts only the "
    "broadcast stream (repeatable; replaces all quotas).",
)
@click.option("--clear", is_flag=True, help="Remove every quota of the account.")
@with_appcontext
def quotas_set(ref: str, specs: tuple[str, ...], clear: bool) -> None:
    """Set an account's quotas: over one, new mail is deferred (451), held, or rejected (550)."""
    account = get_account(ref)
    if not specs and not clear:
        raise click.ClickException("give --per [STREAM/]PERIOD=LIMIT[:ACTION] (repeatable), or --clear")
    try:
        quotas.set_quotas(account.id, [] if clear else [sp.parse_quota(s) for s in specs])
    except sp.PolicyError as exc:
        raise _policy_error(exc) from None
    now_set = quotas.quotas_of(account.id)
    click.echo(f"{account.username}: " + (", ".join(map(str, now_set)) or "no quotas"))


@quotas_group.command("show")
@click.argument("ref", metavar="ACCOUNT")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def quotas_show(ref: str, as_json: bool) -> None:
    """Show an account's quotas and its usage in each current window."""
    account = get_account(ref)
    rows = quota_rows(account)
    text = (
        "\n".join(
            f"{_counted(r):<22} {r['used']:>7} / {r['limit']:<7} ({r['percent']:>3} %)  over it: {r['action']}"
            for r in rows
        )
        or f"{account.username}: no quotas"
    )
    emit({"account": account.username, "quotas": rows}, as_json, text)


def provider_dict(g, progress: float) -> dict[str, Any]:
    """A provider group as shown, its hourly cap in force for an IP ``progress`` through its warm-up."""
    now = clock.now()
    throttled = g.throttled_until is not None and g.throttled_until > now
    return {
        "name": g.name,
        "domains": g.domain_patterns.split(),
        "mx_hosts": g.mx_patterns.split(),
        "stage": g.stage,
        "hourly_cap": sp.hourly_cap(groups.as_group(g), progress),
        "hourly_new": g.hourly_new,
        "hourly_warm": g.hourly_warm,
        "daily_cap": g.daily_cap,
        "session_cap": g.session_cap,
        "throttled": throttled,
        "throttled_until": ts(g.throttled_until) if throttled else None,
        "throttle_reply": g.throttle_reply if throttled else None,
    }


def _figure(value: int | None) -> str:
    return "-" if value is None else str(value)


@cli.group("providers")
def providers_group() -> None:
    """Provider groups: destinations paced together (by recipient domain or MX host name)."""


@providers_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def providers_list(as_json: bool) -> None:
    """List provider groups in matching order, with their caps and any slow-down in force."""
    progress = warmup.warmup_today(clock.now().date())[1]
    rows = [provider_dict(g, progress) for g in groups.group_rows()]
    text = "\n".join(
        f"{r['name']:<16} hourly {_figure(r['hourly_cap']):>6} (new {_figure(r['hourly_new'])}, warm "
        f"{_figure(r['hourly_warm'])}, stage {r['stage']})  daily {_figure(r['daily_cap']):>6}  "
        f"sessions {_figure(r['session_cap']):>3}  "
        f"domains {' '.join(r['domains']) or '-'}  mx {' '.join(r['mx_hosts']) or '-'}"
        + (f"\n{'':17}slowed down until {r['throttled_until']}: {r['throttle_reply']}" if r["throttled"] else "")
        for r in rows
    )
    emit(rows, as_json, text)


@providers_group.command("set")
@click.argument("name")
@click.option(
    "--domains", default=None, metavar="LIST", help="Recipient domain patterns, comma separated (gmail.com,yahoo.*)."
)
@click.option("--mx", default=None, metavar="LIST", help="MX host name patterns, comma separated (*.google.com).")
@click.option(
    "--hourly", default=None, metavar="N|none", help="Deliveries per hour to the whole group, new IP or warm."
)
@click.option("--hourly-new", default=None, metavar="N|none", help="Deliveries per hour from a new IP.")
@click.option("--hourly-warm", default=None, metavar="N|none", help="Deliveries per hour once the IP is warmed up.")
@click.option("--daily", default=None, metavar="N|none", help="Deliveries per UTC day to the whole group.")
@click.option("--sessions", default=None, metavar="N|none", help="Concurrent sessions to the whole group.")
@click.option(
    "--stage",
    type=click.Choice(sp.STAGES),
    default=None,
    help="auto: the hourly cap follows the warm-up plan; new or warm: pin it.",
)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def providers_set(
    name: str,
    domains: str | None,
    mx: str | None,
    hourly: str | None,
    hourly_new: str | None,
    hourly_warm: str | None,
    daily: str | None,
    sessions: str | None,
    stage: str | None,
    as_json: bool,
) -> None:
    """Create or change a provider group."""

    def split(value: str | None) -> list[str] | None:
        return None if value is None else [p for p in value.replace(",", " ").split() if p]

    caps = {
        "hourly_new": _cap(hourly_new),
        "hourly_warm": _cap(hourly_warm),
        "daily_cap": _cap(daily),
        "session_cap": _cap(sessions),
    }
    if hourly is not None:
        caps["hourly_new"] = caps["hourly_warm"] = _cap(hourly)
    try:
        row = groups.save_group(name.strip().lower(), domains=split(domains), mx_hosts=split(mx), stage=stage, **caps)
    except sp.PolicyError as exc:
        raise _policy_error(exc) from None
    data = provider_dict(row, warmup.warmup_today(clock.now().date())[1])
    emit(
        data,
        as_json,
        f"{data['name']}: hourly {_figure(data['hourly_cap'])} (stage {data['stage']}), "
        f"daily {_figure(data['daily_cap'])}, sessions {_figure(data['session_cap'])}",
    )


def warmup_dict() -> dict[str, Any]:
    plan = warmup.warmup_plan()
    today = clock.now().date()
    steps = sp.parse_plan(plan.steps)
    return {
        "enabled": plan.enabled,
        "start_date": plan.start_date.isoformat() if plan.start_date else None,
        "plan": sp.format_plan(steps),
        "steps": [{"first_day": s.first_day, "daily_cap": s.daily_cap} for s in steps],
        "day": sp.plan_day(plan.start_date, today) if plan.start_date else None,
        "today_cap": warmup.warmup_today(today)[0],
        "sent_today": groups.sent_since(sp.window("day", clock.now())[0]),
    }


@cli.group("warmup")
def warmup_group() -> None:
    """The IP warm-up: a daily cap on all deliveries that grows with the plan."""


@warmup_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def warmup_show(as_json: bool) -> None:
    """Show the plan, today's day of it, today's cap and what was sent today."""
    data = warmup_dict()
    cap = "no cap" if data["today_cap"] is None else f"cap {data['today_cap']}"
    state = f"day {data['day']}, {cap}, {data['sent_today']} sent today" if data["enabled"] else "off"
    emit(data, as_json, f"warm-up {state}\nplan (day:cap): {data['plan']}\nstart: {data['start_date'] or '-'}")


@warmup_group.command("set")
@click.option("--enable/--disable", "enabled", default=None, help="Turn the daily cap on or off.")
@click.option(
    "--start", "start", default=None, metavar="YYYY-MM-DD", help="Day 1 of the plan (default: today, when enabling)."
)
@click.option("--plan", default=None, metavar="DAY:CAP,…", help="Steps like 1:1000,4:5000,21: (an empty cap: no cap).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def warmup_set(enabled: bool | None, start: str | None, plan: str | None, as_json: bool) -> None:
    """Change the warm-up plan, its start date, or turn it on or off."""
    try:
        start_date = dt.date.fromisoformat(start) if start else None
    except ValueError:
        raise click.ClickException(f"--start: expected YYYY-MM-DD, got {start!r}") from None
    try:
        warmup.set_warmup(enabled=enabled, start_date=start_date, steps=plan)
    except sp.PolicyError as exc:
        raise _policy_error(exc) from None
    data = warmup_dict()
    emit(
        data,
        as_json,
        f"warm-up {'on' if data['enabled'] else 'off'}, start {data['start_date'] or '-'}, plan {data['plan']}",
    )


@cli.group("policy")
def policy_group() -> None:
    """The sending policy as a whole."""


@policy_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def policy_show(as_json: bool) -> None:
    """Show provider groups, the warm-up, reputation thresholds and each account's standing."""
    t = reputation.thresholds(current_app.config)
    progress = warmup.warmup_today(clock.now().date())[1]
    standing = [
        {
            "account": r.account.username,
            "state": r.state,
            "reason": r.reason or None,
            "sent": r.sent,
            "bounced": r.bounced,
            "complaints": r.complaints,
            "checked_at": ts(r.checked_at),
        }
        for r in AccountReputation.select().join(SmtpAccount)
    ]
    data = {
        "providers": [provider_dict(g, progress) for g in groups.group_rows()],
        "warmup": warmup_dict(),
        "reputation_thresholds": {
            "warn_bounce": t.warn_bounce,
            "warn_complaint": t.warn_complaint,
            "hold_bounce": t.hold_bounce,
            "hold_complaint": t.hold_complaint,
            "window_hours": t.window_hours,
            "min_volume": t.min_volume,
        },
        "reputation": standing,
        "quotas": {
            a.username: quota_rows(a) for a in SmtpAccount.select().order_by(SmtpAccount.id) if a.quotas.exists()
        },
    }
    providers = ", ".join(p["name"] + (" (slowed down)" if p["throttled"] else "") for p in data["providers"])
    plan = data["warmup"]
    lines = [
        f"providers: {providers}",
        f"warm-up: on, day {plan['day']}, cap {plan['today_cap']}" if plan["enabled"] else "warm-up: off",
        f"reputation: warn at {t.warn_bounce:.1%} bounces / {t.warn_complaint:.2%} complaints, "
        f"hold at {t.hold_bounce:.1%} / {t.hold_complaint:.2%} over {t.window_hours} h "
        f"(from {t.min_volume} deliveries)",
    ]
    lines += [f"  {r['account']}: {r['state']}" + (f" ({r['reason']})" if r["reason"] else "") for r in standing]
    lines += [
        f"quotas of {name}: "
        + ", ".join(
            f"{q['stream'] + '/' if q['stream'] else ''}{q['period']}={q['limit']}:{q['action']} ({q['used']} used)"
            for q in rows
        )
        for name, rows in data["quotas"].items()
    ]
    emit(data, as_json, "\n".join(lines))
