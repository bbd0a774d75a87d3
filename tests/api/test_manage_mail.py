"""The management API's messages, stats, lists, campaigns and webhooks: an admin key sees every
account's; an account's key its own account's alone, and another's things are not found."""

from __future__ import annotations

import pytest

from appliance import accounts, lists, webhooks
from appliance.models import AuditEntry, ListMember, SmtpAccount, WebhookDelivery
from tests.support.wait import wait_for
from tests.support.webhooks import Receiver

ORDER = {"from": "orders@shop.test", "to": ["ann@example.test"], "subject": "Order 1", "text": "Thanks."}


@pytest.fixture
def overrides(overrides):
    return {**overrides, "WEBHOOK_ALLOW_PRIVATE": True, "WORKER_POLL_INTERVAL": 0.05}  # endpoints on loopback


@pytest.fixture
def receiver():
    """A webhook receiver on loopback that answers its first call 500, the others 200."""
    server = Receiver(answer=lambda n, _body: 500 if n == 0 else 200).start()
    yield server
    server.stop()


@pytest.fixture
def other(app, make_key):
    """Another account (Other) that may send as anyone at shop.test too, and its manage key."""
    with app.app_context():
        account = accounts.create("Other")[0]
    return account, make_key(account.username, "manage")


def test_an_admin_key_searches_every_accounts_messages_and_an_accounts_key_its_own(
    app, relay, sink, api, account, shop_key, other, make_admin_key
):
    other_account, other_key = other
    mine = [api.send(shop_key, ORDER | {"subject": f"Order {n}"}).json()["id"] for n in (1, 2)]
    theirs = api.send(other_key, ORDER | {"subject": "Theirs"}).json()["id"]
    reader = make_admin_key(scope="read")

    every = api.request("GET", "/api/v1/messages", reader).json()["messages"]
    assert [m["id"] for m in every] == [theirs, *mine[::-1]]
    assert {m["account"] for m in every} == {other_account.id, accounts_id(app, account[0])}
    filtered = api.request("GET", "/api/v1/messages", reader, params={"account": other_account.id}).json()
    assert [m["id"] for m in filtered["messages"]] == [theirs]
    assert api.request("GET", f"/api/v1/messages/{theirs}", reader).json()["subject"] == "Theirs"

    asked_other = api.request("GET", "/api/v1/messages", other_key, params={"account": accounts_id(app, account[0])})
    assert asked_other.status_code == 422 and asked_other.json()["errors"][0]["field"] == "account"
    assert api.request("GET", f"/api/v1/messages/{mine[0]}", other_key).status_code == 404


def accounts_id(app, username: str) -> int:
    with app.app_context():
        return accounts.find(username).id


def test_stats_are_the_appliances_for_an_admin_key_and_the_accounts_own_for_its_key(
    app, relay, sink, api, shop_key, other, make_admin_key
):
    other_account, other_key = other
    for n in range(2):
        assert api.send(shop_key, ORDER | {"subject": f"Order {n}"}).status_code == 202
    assert api.send(other_key, ORDER).status_code == 202
    reader = make_admin_key(scope="read")
    whole = api.request("GET", "/api/v1/stats", reader, params={"period": "7d"}).json()
    assert whole["period"] == "7d" and whole["counts"]["accepted"] == 3 and whole["analytics"]["sent"] == 3
    one = api.request("GET", "/api/v1/stats", reader, params={"account": other_account.id}).json()
    assert one["counts"]["accepted"] == 3 and one["analytics"]["account"] == other_account.id
    assert one["analytics"]["sent"] == 1
    own = api.request("GET", "/api/v1/stats", other_key).json()
    assert own["counts"]["accepted"] == 1 and own["analytics"]["sent"] == 1
    assert sum(own["queue"].values()) <= 1
    refused = api.request("GET", "/api/v1/stats", other_key, params={"account": other_account.id + 1000})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "account"
    bad = api.request("GET", "/api/v1/stats", reader, params={"period": "year", "since": "soon"})
    assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} == {"period", "since"}


def test_lists_an_accounts_key_reads_those_tied_to_it_and_an_admin_key_makes_them(
    app, api, account, other, admin_key, make_key
):
    other_account, other_key = other
    made = api.request("POST", "/api/v1/lists", admin_key, json={"name": "News", "accounts": [other_account.id]})
    assert made.status_code == 201
    news = made.json()
    assert news["accounts"] == [other_account.username] and news["members"] == 0
    untied = api.request("POST", "/api/v1/lists", admin_key, json={"name": "Staff"}).json()
    with app.app_context():
        lists.import_csv(news["id"], b"email\n" + b"".join(f"m{n}@example.test\n".encode() for n in range(3)))
    first = api.request("GET", f"/api/v1/lists/{news['id']}/members", other_key, params={"limit": 2}).json()
    rest = api.request("GET", f"/api/v1/lists/{news['id']}/members", other_key, params={"limit": 2, "page": 2}).json()
    assert [m["email"] for m in first["members"] + rest["members"]] == [f"m{n}@example.test" for n in range(3)]
    assert first["next_page"] == 2 and rest["next_page"] is None
    assert [x["id"] for x in api.request("GET", "/api/v1/lists", other_key).json()["lists"]] == [news["id"]]
    assert api.request("GET", f"/api/v1/lists/{news['id']}", other_key).json()["members"] == 3
    assert api.request("GET", f"/api/v1/lists/{untied['id']}", other_key).status_code == 404
    assert api.request("GET", f"/api/v1/lists/{untied['id']}/members", other_key).status_code == 404
    shop_reader = make_key(account[0], "read")
    assert api.request("GET", f"/api/v1/lists/{news['id']}", shop_reader).status_code == 404
    assert {x["id"] for x in api.request("GET", "/api/v1/lists", admin_key).json()["lists"]} == {
        news["id"],
        untied["id"],
    }
    refused = api.request("POST", "/api/v1/lists", other_key, json={"name": "Mine"})
    assert refused.status_code == 403 and refused.json()["reason"] == "admin-key-required"
    unknown = api.request("POST", "/api/v1/lists", admin_key, json={"name": "X", "accounts": [424242]})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "accounts[0]"
    bad_status = api.request("GET", f"/api/v1/lists/{news['id']}/members", admin_key, params={"status": "maybe"})
    assert bad_status.status_code == 422 and bad_status.json()["errors"][0]["field"] == "status"
    with app.app_context():
        assert ListMember.select().count() == 3


def test_campaigns_are_an_admin_keys(api, other, admin_key):
    _, other_key = other
    made = api.request("POST", "/api/v1/campaigns", admin_key, json={"name": "Spring sale", "subject": "Spring!"})
    assert made.status_code == 201 and made.json()["subject"] == "Spring!" and made.json()["sent"] == 0
    clash = api.request("POST", "/api/v1/campaigns", admin_key, json={"name": "Again", "subject": "Spring!"})
    assert clash.status_code == 422 and clash.json()["errors"][0]["field"] == "subject"
    empty = api.request("POST", "/api/v1/campaigns", admin_key, json={"name": " "})
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "name"
    listed = api.request("GET", "/api/v1/campaigns", admin_key).json()["campaigns"]
    assert [c["id"] for c in listed] == [made.json()["id"]]
    assert api.request("GET", f"/api/v1/campaigns/{made.json()['id']}", admin_key).json()["name"] == "Spring sale"
    assert api.request("GET", "/api/v1/campaigns/no-such-campaign", admin_key).status_code == 404
    refused = api.request("GET", "/api/v1/campaigns", other_key)
    assert refused.status_code == 403 and refused.json()["reason"] == "admin-key-required"


def test_webhooks_an_accounts_key_manages_its_own_and_an_admin_key_all(app, api, account, other, admin_key, make_key):
    other_account, other_key = other
    everyone = api.request("POST", "/api/v1/webhooks", admin_key, json={"url": "http://127.0.0.1:9/all"})
    assert everyone.status_code == 201 and everyone.json()["secret"].startswith("whsec_")
    assert everyone.json()["accounts"] == []
    own = api.request(
        "POST", "/api/v1/webhooks", other_key, json={"url": "http://127.0.0.1:9/own", "events": ["bounced"]}
    ).json()
    assert own["accounts"] == [other_account.username] and own["events"] == ["bounced"]

    listed = api.request("GET", "/api/v1/webhooks", admin_key).json()["webhooks"]
    assert [h["id"] for h in listed] == [everyone.json()["id"], own["id"]]
    assert all("secret" not in h for h in listed)
    assert [h["id"] for h in api.request("GET", "/api/v1/webhooks", other_key).json()["webhooks"]] == [own["id"]]
    shop_manager = make_key(account[0], "manage")
    assert api.request("GET", "/api/v1/webhooks", shop_manager).json()["webhooks"] == []
    for method, path in (
        ("GET", f"/api/v1/webhooks/{everyone.json()['id']}"),
        ("POST", f"/api/v1/webhooks/{everyone.json()['id']}/test"),
        ("DELETE", f"/api/v1/webhooks/{everyone.json()['id']}"),
        ("DELETE", f"/api/v1/webhooks/{own['id']}"),
    ):
        key = shop_manager if own["id"] in (int(path.split("/")[4]),) else other_key
        assert api.request(method, path, key).status_code == 404, (method, path)

    tested = api.request("POST", f"/api/v1/webhooks/{own['id']}/test", other_key)
    assert tested.status_code == 202
    with app.app_context():
        row = WebhookDelivery.get_by_id(tested.json()["id"])
        assert row.webhook_id == own["id"] and row.event_type == webhooks.TEST

    reader = make_key(other_account.username, "read")
    refused = api.request("POST", "/api/v1/webhooks", reader, json={"url": "http://127.0.0.1:9/x"})
    assert refused.status_code == 403 and refused.json()["reason"] == "insufficient-scope"
    widened = api.request(
        "POST", "/api/v1/webhooks", other_key, json={"url": "http://127.0.0.1:9/x", "accounts": [account[0]]}
    )
    assert widened.status_code == 422 and widened.json()["errors"][0]["field"] == "accounts"
    bad = api.request("POST", "/api/v1/webhooks", admin_key, json={"url": "ftp://x", "events": ["nope"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "events"
    bad = api.request("POST", "/api/v1/webhooks", admin_key, json={"url": "ftp://x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "url"

    assert api.request("DELETE", f"/api/v1/webhooks/{own['id']}", other_key).status_code == 204
    assert api.request("GET", f"/api/v1/webhooks/{own['id']}", other_key).status_code == 404
    with app.app_context():
        assert SmtpAccount.select().count() == 2


def test_an_endpoints_calls_show_and_a_failed_event_is_replayed_an_endpoint_turned_off(
    app, relay, api, other, receiver, make_key
):
    other_account, other_key = other
    hook = api.request("POST", "/api/v1/webhooks", other_key, json={"url": receiver.url}).json()
    tested = api.request("POST", f"/api/v1/webhooks/{hook['id']}/test", other_key).json()
    calls = wait_for(lambda: api.request("GET", f"/api/v1/webhooks/{hook['id']}/calls", other_key).json()["calls"])
    assert [(c["delivery"], c["status_code"], c["ok"]) for c in calls] == [(tested["id"], 500, False)]
    assert calls[0]["event"] == webhooks.TEST and calls[0]["delivery_status"] == "pending"

    replayed = api.request("POST", f"/api/v1/webhooks/{hook['id']}/deliveries/{tested['id']}/replay", other_key)
    assert replayed.status_code == 202 and replayed.json()["msg_id"] == tested["msg_id"]
    wait_for(lambda: len(receiver.calls) == 2 and receiver.calls[1].answered == 200)
    with app.app_context():
        wait_for(lambda: WebhookDelivery.get_by_id(tested["id"]).status == "delivered")
    again = api.request("POST", f"/api/v1/webhooks/{hook['id']}/deliveries/{tested['id']}/replay", other_key)
    assert again.status_code == 409 and again.json()["reason"] == "not-replayable"
    reader = make_key(other_account.username, "read")
    assert api.request("GET", f"/api/v1/webhooks/{hook['id']}/calls", reader).status_code == 200
    missing = api.request("POST", f"/api/v1/webhooks/{hook['id']}/deliveries/999/replay", other_key)
    assert missing.status_code == 404

    off = api.request("PATCH", f"/api/v1/webhooks/{hook['id']}", other_key, json={"active": False})
    assert off.status_code == 200 and off.json()["active"] is False
    with app.app_context():
        assert [e.action for e in AuditEntry.select().order_by(AuditEntry.id) if e.action.startswith("webhook.")] == [
            "webhook.create",
            "webhook.test",
            "webhook.replay",
            "webhook.disable",
        ]


def test_an_admin_key_changes_campaigns_and_ties_accounts_to_lists(app, api, account, other, admin_key):
    other_account, other_key = other
    made = api.request("POST", "/api/v1/campaigns", admin_key, json={"name": "Spring", "subject": "Spring!"}).json()
    path = f"/api/v1/campaigns/{made['id']}"
    changed = api.request("PATCH", path, admin_key, json={"name": "Spring sale", "subject": "", "archived": True})
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["subject"], changed.json()["archived"]) == (
        "Spring sale",
        None,
        True,
    )
    assert api.request("PATCH", path, admin_key, json={"name": ""}).json()["errors"][0]["field"] == "name"
    assert api.request("PATCH", "/api/v1/campaigns/nope", admin_key, json={"name": "X"}).status_code == 404
    assert api.request("PATCH", path, other_key, json={"name": "Mine"}).json()["reason"] == "admin-key-required"

    news = api.request("POST", "/api/v1/lists", admin_key, json={"name": "News"}).json()
    assert api.request("GET", f"/api/v1/lists/{news['id']}", other_key).status_code == 404
    tied = api.request("PUT", f"/api/v1/lists/{news['id']}/accounts/{other_account.id}", admin_key)
    assert tied.status_code == 200 and tied.json()["accounts"] == [other_account.username]
    assert api.request("GET", f"/api/v1/lists/{news['id']}", other_key).status_code == 200
    untied = api.request("DELETE", f"/api/v1/lists/{news['id']}/accounts/{other_account.id}", admin_key)
    assert untied.status_code == 200 and untied.json()["accounts"] == []
    assert (
        api.request("DELETE", f"/api/v1/lists/{news['id']}/accounts/{other_account.id}", admin_key).status_code == 404
    )
    assert api.request("PUT", f"/api/v1/lists/{news['id']}/accounts/424242", admin_key).status_code == 404
    with app.app_context():
        assert [e.action for e in AuditEntry.select().order_by(AuditEntry.id) if e.action.startswith("list.")] == [
            "list.create",
            "list.tie",
            "list.untie",
        ]
