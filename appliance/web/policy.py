"""The sending policy page: provider groups and their slow-downs, the IP warm-up (plan vs sent), reputation;
and each account's quotas (a section of the account page)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from .. import audit, clock
from ..models import AccountReputation, ProviderGroup, SmtpAccount
from ..policy import groups, quotas, reputation, warmup
from ..policy import sending as sp
from .charts import Bucket, bar_chart
from .permissions import admin_required, viewer_required

bp = Blueprint("policy", __name__, url_prefix="/policy")

CHART_DAYS = 28


def warmup_chart(plan, today: dt.date):
    """Plan (daily cap) against deliveries let through, per day from the plan's start."""
    first = plan.start_date or today
    steps = sp.parse_plan(plan.steps)
    sent = groups.sent_per_day(first, CHART_DAYS)
    buckets = []
    for day, count in sent.items():
        cap = sp.daily_cap(steps, first, day)
        label = f"day {sp.plan_day(first, day)} ({day:%m-%d})"
        buckets.append(Bucket(label, {"accepted": cap or 0, "delivered": count}))
    return bar_chart(buckets, ("accepted", "delivered"), "Warm-up: daily cap (blue) and sent (green)", label_every=7)


def _optional_int(raw: str, label: str, errors: dict[str, str]) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit():
        errors[label] = f"{label.replace('_', ' ').capitalize()}: a whole number, or empty for no cap."
        return None
    return int(raw)


def _page(status: int = 200, **extra):
    now = clock.now()
    plan = warmup.warmup_plan()
    rows = groups.group_rows()
    today_cap, progress = warmup.warmup_today(now.date())
    standing = list(
        AccountReputation.select(AccountReputation, SmtpAccount).join(SmtpAccount).order_by(SmtpAccount.name)
    )
    context = {
        "groups": rows,
        "now": now,
        "plan": plan,
        "chart": warmup_chart(plan, now.date()),
        "today_cap": today_cap,
        "sent_today": groups.sent_since(sp.window("day", now)[0]),
        "plan_day": sp.plan_day(plan.start_date, now.date()) if plan.start_date else None,
        "thresholds": reputation.thresholds(current_app.config),
        "reputation": standing,
        "throttled": [g for g in rows if g.throttled_until and g.throttled_until > now],
        "sent_hour": {g.name: groups.sent_in_hour(g.name, now) for g in rows},
        "sent_day": {g.name: groups.sent_in_day(g.name, now) for g in rows if g.daily_cap is not None},
        "hourly_now": {g.name: sp.hourly_cap(groups.as_group(g), progress) for g in rows},
        "stages": sp.STAGES,
        "source": sp.PROVIDER_TABLE_SOURCE,
        "errors": {},
        "values": {},
        **extra,
    }
    return render_template("policy/show.html", **context), status


@bp.get("/")
@viewer_required
def policy_show():
    """Show provider groups, slow-downs, the warm-up plan against what was sent, and reputation."""
    return _page()


@bp.post("/providers/<int:group_id>")
@admin_required
def policy_provider_edit(group_id: int):
    """Change a provider group's caps and patterns."""
    group = ProviderGroup.get_or_none(ProviderGroup.id == group_id)
    if group is None:
        abort(404)
    errors: dict[str, str] = {}
    caps = {name: _optional_int(request.form.get(name, ""), name, errors) for name in groups.CAP_FIELDS}
    stage = request.form.get("stage", group.stage)
    if stage not in sp.STAGES:
        errors["stage"] = f"Stage: one of {', '.join(sp.STAGES)}."
    if errors:
        return _page(400, errors={group.id: errors}, values={group.id: request.form})
    groups.save_group(
        group.name,
        domains=request.form.get("domains", "").split(),
        mx_hosts=request.form.get("mx_hosts", "").split(),
        stage=stage,
        **caps,
    )
    audit.record(
        "policy.provider",
        f"provider group {group.name}",
        f"stage {stage}, " + ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in caps.items()),
    )
    return redirect(url_for("policy.policy_show", saved=group.name))


@bp.post("/warmup")
@admin_required
def policy_warmup_edit():
    """Change the warm-up plan, its start date, and turn it on or off."""
    errors: dict[str, str] = {}
    start = None
    if request.form.get("start_date", "").strip():
        try:
            start = dt.date.fromisoformat(request.form["start_date"].strip())
        except ValueError:
            errors["start_date"] = "Start date: write it as YYYY-MM-DD."
    try:
        sp.parse_plan(request.form.get("steps", ""))
    except sp.PolicyError as exc:
        errors["steps"] = f"Plan: {exc}."
    if errors:
        return _page(400, errors={"warmup": errors}, values={"warmup": request.form})
    enabled = request.form.get("enabled") == "on"
    warmup.set_warmup(enabled=enabled, start_date=start, steps=request.form["steps"])
    audit.record(
        "policy.warmup", "warm-up plan", f"{'on' if enabled else 'off'}, start {start}, plan {request.form['steps']}"
    )
    return redirect(url_for("policy.policy_show", saved="warm-up"))


@bp.post("/quotas/<int:account_id>")
@admin_required
def policy_quotas_edit(account_id: int):
    """Save an account's quotas (one optional limit and action per period, for all mail and per stream)."""
    account = SmtpAccount.get_or_none(SmtpAccount.id == account_id)
    if account is None:
        abort(404)
    wanted, problems = [], []
    for stream in ("", *sp.STREAMS):
        for period in sp.PERIODS:
            field = f"{stream}_{period}" if stream else period
            raw = request.form.get(f"limit_{field}", "").strip()
            if not raw:
                continue
            action = request.form.get(f"action_{field}", sp.DEFER)
            try:
                wanted.append(sp.parse_quota(f"{stream + '/' if stream else ''}{period}={raw}:{action}"))
            except sp.PolicyError:
                problems.append(f"per {period}{f' of {stream} mail' if stream else ''}: a whole number of recipients")
    if problems:
        return render_template("policy/quotas_error.html", account=account, problems=problems), 400
    quotas.set_quotas(account.id, wanted)
    audit.record("policy.quotas", f"account {account.username}", ", ".join(map(str, wanted)) or "no quota")
    return redirect(url_for("accounts.accounts_edit", account_id=account.id, saved=1) + "#quotas")
