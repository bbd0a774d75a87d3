"""The API meets the account's sending policy as SMTP does: quotas, holds and suppressions. These run
without the SMTP front end, as a `--role web` process does: the request's thread writes the message."""

from __future__ import annotations

from appliance import suppressions
from appliance.models import Delivery, Message, SmtpAccount
from appliance.policy import quotas
from appliance.policy import sending as sp

ORDER = {"from": "orders@shop.test", "to": ["ann@example.test"], "subject": "Order 1", "text": "Thanks."}


def _account_id(app, account) -> int:
    with app.app_context():
        return SmtpAccount.get(SmtpAccount.username == account[0]).id


def test_a_reject_quota_refuses_with_429_and_the_smtp_reply(app, api, account, shop_key):
    with app.app_context():
        quotas.set_quotas(_account_id(app, account), [sp.Quota("day", 1, "reject")])
    assert api.send(shop_key, ORDER).status_code == 202
    refused = api.send(shop_key, ORDER)
    assert refused.status_code == 429
    problem = refused.json()
    assert problem["reason"] == "quota-day"
    assert problem["smtp_reply"] == "550 5.7.1 Sending quota exceeded: this account may send 1 recipients per day"
    with app.app_context():
        assert Message.select().count() == 1


def test_a_hold_quota_accepts_and_stores_the_deliveries_held(app, api, account, shop_key):
    with app.app_context():
        quotas.set_quotas(_account_id(app, account), [sp.Quota("minute", 1, "hold")])
    first = api.send(shop_key, ORDER).json()["id"]
    held = api.send(shop_key, ORDER | {"to": ["bea@example.test", "carl@example.test"]})
    assert held.status_code == 202
    with app.app_context():
        assert Delivery.get(Delivery.message == first).status == "queued"
        rows = list(Delivery.select().where(Delivery.message == held.json()["id"]))
        assert [r.status for r in rows] == ["held", "held"] and rows[0].last_reply.startswith("held: quota-minute")


def test_a_quota_of_the_broadcast_stream_refuses_only_broadcast_mail(app, api, account, shop_key):
    with app.app_context():
        quotas.set_quotas(_account_id(app, account), [sp.Quota("hour", 0, "defer", "broadcast")])
    refused = api.send(shop_key, ORDER | {"stream": "broadcast"})
    assert refused.status_code == 429 and refused.json()["reason"] == "quota-broadcast-hour"
    assert refused.json()["smtp_reply"] == "451 4.7.1 Sending quota exceeded, try later"
    assert api.send(shop_key, ORDER).status_code == 202  # transactional, the account's stream


def test_a_suppressed_recipient_is_accepted_and_recorded_as_suppressed(app, api, shop_key):
    with app.app_context():
        suppressions.add("bea@example.test", "complained")
    sent = api.send(shop_key, ORDER | {"to": ["ann@example.test", "bea@example.test"]})
    assert sent.status_code == 202
    with app.app_context():
        statuses = {d.rcpt: d.status for d in Delivery.select().where(Delivery.message == sent.json()["id"])}
    assert statuses == {"ann@example.test": "queued", "bea@example.test": "suppressed"}
