"""``/api/v1/webhooks``: the endpoints that hear of events (docs/webhooks.md), through the functions
the dashboard and `appliance webhooks` call (appliance/webhooks/). An admin key manages every
endpoint; an account's key manages the endpoints of its own account's mail: those it makes hear
of that account alone, and an endpoint of other accounts (or of all) is not found."""

from __future__ import annotations

from flask import current_app
from spectree import Response

from .. import queue, webhooks
from ..models import MANAGE, READ, Webhook, WebhookDelivery
from ..webhooks import endpoints
from . import bp, needs, own_account_id, problems
from .common import json_body, not_found, paginate, query
from .manage_accounts import CHANGE_REFUSALS, FOUND_REFUSALS, REFUSALS
from .schemas import (
    PageQuery,
    ProblemDocument,
    WebhookCalls,
    WebhookChange,
    WebhookCreate,
    WebhookOut,
    WebhookPage,
    WebhookTest,
    WebhookWithSecret,
)
from .spec import spec


def _seen():
    rows = Webhook.select().order_by(Webhook.id)
    own = own_account_id()
    return rows if own is None else rows.where(Webhook.account_ids == str(own))


def _hook(webhook_id: int) -> Webhook:
    row = _seen().where(Webhook.id == webhook_id).first()
    if row is None:
        raise not_found("webhook", webhook_id)
    return row


def _shown(hook: Webhook) -> dict:
    return WebhookOut.model_validate(webhooks.as_dict(hook)).model_dump(mode="json")


@bp.get("/webhooks")
@needs(READ)
@spec.validate(
    query=PageQuery, resp=Response(HTTP_200=WebhookPage, **REFUSALS), tags=["webhooks"], skip_validation=True
)
def api_webhooks():
    """List the webhook endpoints (never their secrets)"""
    asked = query(PageQuery)
    found, next_page = paginate(_seen(), asked.page, asked.limit)
    return {"webhooks": [_shown(h) for h in found], "next_page": next_page}


@bp.post("/webhooks")
@needs(MANAGE)
@spec.validate(
    json=WebhookCreate,
    resp=Response(HTTP_201=WebhookWithSecret, **CHANGE_REFUSALS),
    tags=["webhooks"],
    skip_validation=True,
)
def api_webhooks_create():
    """Add a webhook endpoint

    The answer has its signing secret, this once. With an account's key, it hears of that
    account's mail alone.
    """
    given = json_body(WebhookCreate)
    own = own_account_id()
    if own is not None and given.accounts:
        raise problems.invalid([{"field": "accounts", "detail": "an account's key's endpoint hears of its own mail"}])
    owners = [str(own)] if own is not None else given.accounts
    for field, check, value in (
        ("events", webhooks.event_types, given.events),
        ("accounts", endpoints.accounts, owners),
    ):
        try:
            check(value)
        except webhooks.WebhookError as exc:
            raise problems.invalid([{"field": field, "detail": str(exc)}]) from None
    try:
        hook = webhooks.create(current_app.config, given.url, given.events, owners)
    except webhooks.WebhookError as exc:  # the URL: its form, or where it resolves to
        raise problems.invalid([{"field": "url", "detail": str(exc)}]) from None
    return _shown(hook) | {"secret": hook.secret}, 201, {"Location": f"/api/v1/webhooks/{hook.id}"}


@bp.get("/webhooks/<int:webhook_id>")
@needs(READ)
@spec.validate(resp=Response(HTTP_200=WebhookOut, **FOUND_REFUSALS), tags=["webhooks"], skip_validation=True)
def api_webhook(webhook_id: int):
    """A webhook endpoint (never its secret)"""
    return _shown(_hook(webhook_id))


@bp.patch("/webhooks/<int:webhook_id>")
@needs(MANAGE)
@spec.validate(
    json=WebhookChange,
    resp=Response(HTTP_200=WebhookOut, **CHANGE_REFUSALS, HTTP_404=ProblemDocument),
    tags=["webhooks"],
    skip_validation=True,
)
def api_webhook_update(webhook_id: int):
    """Turn a webhook endpoint off or on (one the appliance turned off after days of failures, too)"""
    hook = _hook(webhook_id)
    return _shown(webhooks.set_active(hook.id, json_body(WebhookChange).active))


@bp.get("/webhooks/<int:webhook_id>/calls")
@needs(READ)
@spec.validate(resp=Response(HTTP_200=WebhookCalls, **FOUND_REFUSALS), tags=["webhooks"], skip_validation=True)
def api_webhook_calls(webhook_id: int):
    """A webhook endpoint's latest calls: status code, time, duration, the answer's start"""
    found = webhooks.recent_calls(_hook(webhook_id).id)
    return WebhookCalls.model_validate({"calls": found}).model_dump(mode="json")


@bp.post("/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/replay")
@needs(MANAGE)
@spec.validate(
    resp=Response(HTTP_202=WebhookTest, HTTP_409=ProblemDocument, **FOUND_REFUSALS),
    tags=["webhooks"],
    skip_validation=True,
)
def api_webhook_replay(webhook_id: int, delivery_id: int):
    """Send a failed (or still retrying) event to its endpoint again now, with a fresh retry schedule"""
    hook = _hook(webhook_id)
    if (
        not WebhookDelivery.select()
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.webhook == hook.id)
        .exists()
    ):
        raise not_found("delivery", delivery_id)
    try:
        row = webhooks.replay(delivery_id)
    except webhooks.WebhookError as exc:  # delivered already, or being sent right now
        raise problems.Problem(409, "not-replayable", "The event cannot be replayed now", str(exc)) from None
    queue.runtime(current_app.config).enqueue_webhooks([webhooks.Next(row.msg_id, 0)])
    return {"id": row.id, "msg_id": row.msg_id}, 202


@bp.post("/webhooks/<int:webhook_id>/test")
@needs(MANAGE)
@spec.validate(resp=Response(HTTP_202=WebhookTest, **FOUND_REFUSALS), tags=["webhooks"], skip_validation=True)
def api_webhook_test(webhook_id: int):
    """Send the endpoint a test event (type webhook.test); the workers make the call"""
    row = webhooks.send_test(_hook(webhook_id).id)
    queue.runtime(current_app.config).enqueue_webhooks([webhooks.Next(row.msg_id, 0)])
    return {"id": row.id, "msg_id": row.msg_id}, 202


@bp.delete("/webhooks/<int:webhook_id>")
@needs(MANAGE)
@spec.validate(resp=Response("HTTP_204", **FOUND_REFUSALS), tags=["webhooks"], skip_validation=True)
def api_webhook_delete(webhook_id: int):
    """Delete a webhook endpoint with its waiting events and its calls"""
    webhooks.delete(_hook(webhook_id).id)
    return "", 204
