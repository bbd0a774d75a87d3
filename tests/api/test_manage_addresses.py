"""The management API's senders, domains (their DNS records and checks) and suppressions: the whole
appliance's, so an admin key's; the same rules and audit entries as the dashboard's."""

from __future__ import annotations

import pytest

from appliance import dkim
from appliance.models import AuditEntry, Delivery, Message, Sender, Suppression


@pytest.fixture
def overrides(overrides):
    return {**overrides, "PUBLIC_URL": "https://relay.example.test"}  # where the verification links point


def _actions(app, prefix: str) -> list[str]:
    with app.app_context():
        return [e.action for e in AuditEntry.select().order_by(AuditEntry.id) if e.action.startswith(prefix)]


def test_senders_are_added_vouched_for_or_mailed_a_link_and_deleted(app, api, admin_key):
    vouched = api.request("POST", "/api/v1/senders", admin_key, json={"address": "Orders@Shop.test", "verified": True})
    assert vouched.status_code == 201
    assert vouched.json()["email"] == "orders@shop.test" and vouched.json()["verified_by"] == "admin"
    linked = api.request("POST", "/api/v1/senders", admin_key, json={"address": "news@shop.test"}).json()
    assert linked["verified"] is False and linked["link_sent_at"] is not None
    with app.app_context():
        link = Delivery.select().join(Message).where(Delivery.rcpt == "news@shop.test").get()
        assert "Verify news@shop.test" in link.message.subject
    again = api.request("POST", "/api/v1/senders", admin_key, json={"address": "orders@shop.test"})
    assert again.status_code == 422 and again.json()["errors"] == [
        {"field": "address", "detail": "orders@shop.test is already a sender"}
    ]
    bad = api.request("POST", "/api/v1/senders", admin_key, json={"address": "not an address", "verified": True})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "address"

    resent = api.request("POST", f"/api/v1/senders/{linked['id']}/resend", admin_key)
    assert resent.status_code == 200 and resent.json()["link_sent_at"] >= linked["link_sent_at"]
    with app.app_context():
        assert Delivery.select().where(Delivery.rcpt == "news@shop.test").count() == 2
    vouched_again = api.request("POST", f"/api/v1/senders/{vouched.json()['id']}/resend", admin_key)
    assert vouched_again.status_code == 422 and "already verified" in vouched_again.json()["detail"]

    listed = api.request("GET", "/api/v1/senders", admin_key).json()
    assert [s["email"] for s in listed["senders"]] == ["news@shop.test", "orders@shop.test"]
    assert api.request("GET", f"/api/v1/senders/{linked['id']}", admin_key).json()["email"] == "news@shop.test"
    assert api.request("DELETE", f"/api/v1/senders/{linked['id']}", admin_key).status_code == 204
    assert api.request("DELETE", f"/api/v1/senders/{linked['id']}", admin_key).status_code == 404
    with app.app_context():
        assert [s.email for s in Sender.select()] == ["orders@shop.test"]
    assert _actions(app, "sender.") == ["sender.add", "sender.add", "sender.delete"]


def test_a_domain_is_added_with_its_records_and_checked_in_dns(app, api, admin_key, dns_server):
    created = api.request("POST", "/api/v1/domains", admin_key, json={"name": "Mail.Example.test."})
    assert created.status_code == 201
    domain = created.json()
    assert domain["name"] == "mail.example.test" and domain["verified"] is False
    records = {r["key"]: r for r in domain["records"]}
    assert records["dkim"]["name"].startswith(domain["selector"]) and records["dkim"]["name"].endswith(
        "._domainkey.mail.example.test"
    )
    assert records["dkim"]["status"] == "unchecked" and records["dkim"]["value"].startswith("v=DKIM1")

    dns_server.add(records["dkim"]["name"], "TXT", dkim.zone_value(records["dkim"]["value"]))
    checked = api.request("POST", f"/api/v1/domains/{domain['id']}/check", admin_key).json()
    statuses = {r["key"]: r["status"] for r in checked["records"]}
    assert statuses["dkim"] == "pass" and statuses["dmarc"] == "fail" and checked["verified"] is True
    assert checked["last_checked_at"] is not None
    shown = api.request("GET", f"/api/v1/domains/{domain['id']}", admin_key).json()
    assert {r["key"]: r["status"] for r in shown["records"]} == statuses
    assert [d["name"] for d in api.request("GET", "/api/v1/domains", admin_key).json()["domains"]] == [
        "mail.example.test"
    ]
    again = api.request("POST", "/api/v1/domains", admin_key, json={"name": "mail.example.test"})
    assert again.status_code == 422 and "already a sending domain" in again.json()["detail"]
    assert api.request("GET", "/api/v1/domains/9999", admin_key).status_code == 404
    rotated = api.request("POST", f"/api/v1/domains/{domain['id']}/rotate", admin_key).json()
    assert rotated["next_selector"] and rotated["next_selector"] != rotated["selector"]
    assert "dkim-next" in {r["key"] for r in rotated["records"]}
    assert _actions(app, "domain.") == ["domain.add", "domain.rotate_keys"]


def test_suppressions_are_added_searched_a_page_at_a_time_and_removed(app, api, admin_key):
    for n in range(3):
        made = api.request("POST", "/api/v1/suppressions", admin_key, json={"address": f"gone{n}@example.test"})
        assert made.status_code == 201 and made.json()["source"] == "manual"
    dup = api.request("POST", "/api/v1/suppressions", admin_key, json={"address": "GONE1@example.test"})
    assert dup.status_code == 422 and dup.json()["errors"][0]["detail"] == "gone1@example.test is already suppressed"
    bad = api.request("POST", "/api/v1/suppressions", admin_key, json={"address": "nobody"})
    assert bad.status_code == 422 and "Write a whole e-mail address" in bad.json()["detail"]

    first = api.request("GET", "/api/v1/suppressions", admin_key, params={"limit": 2}).json()
    rest = api.request("GET", "/api/v1/suppressions", admin_key, params={"limit": 2, "page": 2}).json()
    addresses = [s["address"] for s in first["suppressions"] + rest["suppressions"]]
    assert sorted(addresses) == [f"gone{n}@example.test" for n in range(3)] and len(set(addresses)) == 3
    assert first["next_page"] == 2 and rest["next_page"] is None
    found = api.request("GET", "/api/v1/suppressions", admin_key, params={"search": "ONE2"}).json()["suppressions"]
    assert [s["address"] for s in found] == ["gone2@example.test"]

    assert api.request("DELETE", "/api/v1/suppressions/gone2@example.test", admin_key).status_code == 204
    gone = api.request("DELETE", "/api/v1/suppressions/gone2@example.test", admin_key)
    assert gone.status_code == 404 and gone.json()["reason"] == "not-found"
    with app.app_context():
        assert Suppression.select().where(Suppression.address == "gone2@example.test").count() == 0
    assert _actions(app, "suppression.") == ["suppression.add"] * 3 + ["suppression.remove"]


def test_an_accounts_key_manages_none_of_the_appliances_senders_domains_or_suppressions(api, account, make_key):
    manager = make_key(account[0], "manage")
    for method, path, body in (
        ("GET", "/api/v1/senders", None),
        ("POST", "/api/v1/senders", {"address": "me@shop.test", "verified": True}),
        ("GET", "/api/v1/domains", None),
        ("POST", "/api/v1/domains", {"name": "mine.test"}),
        ("GET", "/api/v1/suppressions", None),
        ("DELETE", "/api/v1/suppressions/someone@example.test", None),
    ):
        refused = api.request(method, path, manager, json=body)
        assert refused.status_code == 403 and refused.json()["reason"] == "admin-key-required", (method, path)
