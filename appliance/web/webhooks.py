"""Webhooks: endpoints that get each event of the apps' mail as a signed POST (docs/webhooks.md)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, make_response, redirect, render_template, request, url_for

from .. import events, queue, webhooks
from ..models import SmtpAccount
from . import shown_once
from .permissions import admin_required, viewer_required

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def _list_page(error: str | None = None, form: dict | None = None, status: int = 200):
    hooks = webhooks.listed()
    return render_template(
        "webhooks/list.html",
        hooks=hooks,
        counts=webhooks.counts(h.id for h in hooks),
        describe=webhooks.describe,
        types=events.TYPES,
        accounts=list(SmtpAccount.select().order_by(SmtpAccount.id)),
        error=error,
        form=form or {"url": "", "events": [], "accounts": []},
    ), status


def _enqueue(msg_id: str) -> None:
    queue.runtime(current_app.config).enqueue_webhooks([webhooks.Next(msg_id, 0)])


@bp.get("/")
@viewer_required
def webhooks_list():
    """List the endpoints; admins add one here."""
    return _list_page()


@bp.post("/")
@admin_required
def webhooks_create():
    """Add an endpoint and show its secret, this once."""
    form = {
        "url": request.form.get("url", ""),
        "events": request.form.getlist("events"),
        "accounts": request.form.getlist("accounts"),
    }
    try:
        hook = webhooks.create(current_app.config, form["url"], form["events"], form["accounts"])
    except webhooks.WebhookError as exc:
        return _list_page(f"{exc}.", form, 400)
    # Post-redirect-get: the secret waits (encrypted, in the session) for the page it is shown on.
    shown_once.keep("webhook-secret", hook.id, hook.secret)
    return redirect(url_for("webhooks.webhooks_created", webhook_id=hook.id))


@bp.get("/<int:webhook_id>/created")
@admin_required
def webhooks_created(webhook_id: int):
    """Show the secret of the endpoint just made, this once; after that, its page."""
    hook = _get(webhook_id)
    kept = shown_once.take("webhook-secret", hook.id)
    if kept is None:
        flash("The signing secret was shown once, when the webhook was made. Delete it and add it again for a new one.")
        return redirect(url_for("webhooks.webhooks_show", webhook_id=hook.id))
    response = make_response(
        render_template("webhooks/created.html", hook=hook, secret=kept[0], describe=webhooks.describe)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _get(webhook_id: int):
    try:
        return webhooks.get(webhook_id)
    except webhooks.WebhookError:
        abort(404)


@bp.get("/<int:webhook_id>")
@viewer_required
def webhooks_show(webhook_id: int):
    """An endpoint, how its deliveries stand, and its latest calls."""
    hook = _get(webhook_id)
    return render_template(
        "webhooks/show.html",
        hook=hook,
        describe=webhooks.describe,
        counts=webhooks.counts([hook.id])[hook.id],
        calls=webhooks.recent_calls(hook.id),
    )


def _back(webhook_id: int):
    return redirect(url_for("webhooks.webhooks_show", webhook_id=webhook_id))


@bp.post("/<int:webhook_id>/test")
@admin_required
def webhooks_test(webhook_id: int):
    """Send a test event to the endpoint (the workers make the call)."""
    try:
        row = webhooks.send_test(webhook_id)
    except webhooks.WebhookError as exc:
        flash(f"{exc}.")
        return redirect(url_for("webhooks.webhooks_list"))
    _enqueue(row.msg_id)
    flash(f"A test event is on its way ({row.msg_id}); its call shows below in a moment.")
    return _back(webhook_id)


@bp.post("/<int:webhook_id>/active")
@admin_required
def webhooks_active(webhook_id: int):
    """Turn the endpoint on (the events waiting for it go out) or off."""
    active = request.form.get("active") == "1"
    try:
        hook = webhooks.set_active(webhook_id, active)
    except webhooks.WebhookError as exc:
        flash(f"{exc}.")
        return redirect(url_for("webhooks.webhooks_list"))
    if active:
        queue.sweep_webhooks(queue.runtime(current_app.config))
    flash(f"Webhook {hook.id} is {'on' if active else 'off'}.")
    return _back(webhook_id)


@bp.post("/<int:webhook_id>/delete")
@admin_required
def webhooks_delete(webhook_id: int):
    """Delete the endpoint, the events waiting for it and its calls."""
    try:
        hook = webhooks.delete(webhook_id)
    except webhooks.WebhookError as exc:
        flash(f"{exc}.")
    else:
        flash(f"Webhook {hook.id} ({hook.url}) is deleted.")
    return redirect(url_for("webhooks.webhooks_list"))


@bp.post("/deliveries/<int:delivery_id>/replay")
@admin_required
def webhooks_replay(delivery_id: int):
    """Send a failed event again now."""
    try:
        row = webhooks.replay(delivery_id)
    except webhooks.WebhookError as exc:
        flash(f"{exc}.")
        return redirect(request.referrer or url_for("webhooks.webhooks_list"))
    _enqueue(row.msg_id)
    flash(f"Delivery {row.id} ({row.event_type}) is sent again.")
    return _back(row.webhook_id)
