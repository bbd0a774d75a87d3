"""GET /api/v1/messages and /api/v1/messages/{id}: a read key sees its own account's messages only."""

from __future__ import annotations

from appliance.models import SmtpAccount
from tests.support.mail import settled

ORDER = {"from": "orders@shop.test", "to": ["ann@example.test"], "subject": "Order 1", "text": "Thanks."}


def test_a_read_key_pages_through_its_accounts_messages_only(app, relay, sink, api, account, shop_key, make_key):
    with app.app_context():
        other = SmtpAccount.create(name="Other", username="99.other.smtp")
    other_key = make_key(other.username, "manage")
    ids = [api.send(shop_key, ORDER | {"subject": f"Order {n}"}).json()["id"] for n in (1, 2, 3)]
    foreign = api.send(other_key, ORDER | {"subject": "Not yours"}).json()["id"]
    reader = make_key(account[0], "read")

    first = api.request("GET", "/api/v1/messages?limit=2", reader)
    assert first.status_code == 200
    assert [m["id"] for m in first.json()["messages"]] == ids[::-1][:2]
    rest = api.request("GET", "/api/v1/messages", reader, params={"limit": 2, "cursor": first.json()["next_cursor"]})
    assert [m["id"] for m in rest.json()["messages"]] == [ids[0]] and rest.json()["next_cursor"] is None
    found = api.request("GET", "/api/v1/messages", reader, params={"subject": "Order 2"}).json()["messages"]
    assert [m["id"] for m in found] == [ids[1]] and found[0]["recipients"][0]["address"] == "ann@example.test"
    asked_for_other = api.request("GET", "/api/v1/messages", reader, params={"subject": "Not yours"})
    assert asked_for_other.json()["messages"] == []
    assert [m["id"] for m in api.request("GET", "/api/v1/messages", other_key).json()["messages"]] == [foreign]

    with app.app_context():
        settled(ids[0], "delivered")
    detail = api.request("GET", f"/api/v1/messages/{ids[0]}", reader).json()
    assert detail["subject"] == "Order 1" and detail["recipients"][0]["status"] == "delivered"
    assert [e["type"] for e in detail["events"]][:1] == ["accepted"] and "delivered" in {
        e["type"] for e in detail["events"]
    }
    assert detail["attempts"][0]["outcome"] == "delivered" and detail["attempts"][0]["code"] == 250
    not_yours = api.request("GET", f"/api/v1/messages/{foreign}", reader)
    assert not_yours.status_code == 404 and not_yours.json()["reason"] == "not-found"


def test_reading_needs_the_read_scope_and_good_filters(relay, api, account, shop_key, make_key):
    refused = api.request("GET", "/api/v1/messages", shop_key)
    assert refused.status_code == 403 and refused.json()["reason"] == "insufficient-scope"
    reader = make_key(account[0], "read")
    bad = api.request("GET", "/api/v1/messages", reader, params={"since": "yesterday", "limit": 500, "colour": "red"})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"since", "limit", "colour"}
    assert api.send(reader, ORDER).json()["reason"] == "insufficient-scope"
