"""Senders page and the sender authorization fields on an account's page."""

from __future__ import annotations

import pytest

from appliance import accounts, senders
from appliance.models import Delivery, Message, Sender, SmtpAccount


@pytest.fixture
def overrides(overrides):
    """The dashboard's public address (PUBLIC_URL): verification links can be mailed."""
    return {**overrides, "PUBLIC_URL": "https://relay.test"}


def test_an_admin_adds_a_sender_and_a_verification_link_is_mailed(client):
    response = client.form("/senders/", {"address": "Orders@Shop.example"})
    assert response.status_code == 302
    sender = Sender.get(Sender.email == "orders@shop.example")
    assert not sender.verified and sender.link_sent_at is not None
    assert Message.get(Message.subject == "Verify orders@shop.example as a sender")
    page = client.get("/senders/").get_data(as_text=True)
    assert "orders@shop.example" in page and "waiting" in page and "Resend link" in page


def test_an_admin_vouches_for_a_sender_and_it_shows_as_verified_by_an_admin(client):
    client.form("/senders/", {"address": "boss@office.example", "verified": "on"})
    assert Sender.get(Sender.email == "boss@office.example").verified_by == "admin"
    assert "by an admin" in client.get("/senders/").get_data(as_text=True)
    assert not Message.select().exists()


def test_a_bad_address_is_refused_with_the_reason(client):
    response = client.form("/senders/", {"address": "not-an-address"})
    assert response.status_code == 400 and "is not an email address" in response.get_data(as_text=True)


def test_mark_verified_and_delete_change_the_sender(app, client):
    sender = senders.add("wait@office.example")
    senders.send_verification(app.config, sender)  # no workers run here: the link mail stays queued
    client.form(f"/senders/{sender.id}/verify")
    assert Sender.get_by_id(sender.id).verified_by == "admin"
    assert Delivery.get(Delivery.rcpt == "wait@office.example").status == "cancelled"  # not needed any more
    client.form(f"/senders/{sender.id}/delete")
    assert not Sender.select().exists()


def test_with_no_public_address_the_form_says_why_no_link_can_be_mailed_and_adds_nothing(app, client):
    app.config["PUBLIC_URL"] = "http://localhost:8025"
    response = client.form("/senders/", {"address": "orders@shop.example"})
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "only this machine can open" in body and "vouch for it" in body
    assert 'value="orders@shop.example"' in body  # the address stays in the form
    assert not Sender.select().exists() and not Message.select().exists()
    assert client.form("/senders/", {"address": "orders@shop.example", "verified": "on"}).status_code == 302


def test_a_viewer_sees_senders_but_cannot_add_one(viewer_client):
    senders.add("seen@office.example", verified_by_admin=True)
    page = viewer_client.get("/senders/").get_data(as_text=True)
    assert "seen@office.example" in page and "Add a sender" not in page
    assert viewer_client.form("/senders/", {"address": "x@office.example"}).status_code == 403


def test_the_account_page_saves_the_authorized_lists_normalized_and_the_mode(app, client):
    with app.app_context():
        account, _ = accounts.create("Blog")
    response = client.form(
        f"/senders/accounts/{account.id}",
        {
            "authorized_domains": "Shop.example, news.shop.example;",
            "authorized_senders": "Jo@Gmail.example",
            "sender_mode": "alert",
        },
    )
    assert response.status_code == 302 and response.headers["Location"].startswith(f"/accounts/{account.id}")
    saved = SmtpAccount.get_by_id(account.id)
    assert (saved.authorized_domains, saved.authorized_senders, saved.sender_mode) == (
        "shop.example\nnews.shop.example",
        "jo@gmail.example",
        "alert",
    )
    page = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert 'value="shop.example; news.shop.example"' in page and '<option value="alert" selected>' in page


def test_a_bad_authorized_domain_is_named_and_nothing_is_saved(app, client):
    with app.app_context():
        account, _ = accounts.create("Blog")
    response = client.form(
        f"/senders/accounts/{account.id}",
        {"authorized_domains": "shop.example; bad domain!", "authorized_senders": "", "sender_mode": "block"},
    )
    assert response.status_code == 400 and "is not a domain name" in response.get_data(as_text=True)
    assert SmtpAccount.get_by_id(account.id).authorized_domains == ""


def test_the_account_page_saves_a_subdomain_entry_and_says_what_it_covers(app, client):
    with app.app_context():
        account, _ = accounts.create("Blog")
    response = client.form(
        f"/senders/accounts/{account.id}",
        {"authorized_domains": "*.Shop.example", "authorized_senders": "", "sender_mode": "block"},
    )
    assert response.status_code == 302
    assert SmtpAccount.get_by_id(account.id).authorized_domains == "*.shop.example"
    page = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert 'value="*.shop.example"' in page and "<code>*.shop.example</code> to cover shop.example and all" in page


def test_a_bad_subdomain_entry_is_named_and_nothing_is_saved(app, client):
    with app.app_context():
        account, _ = accounts.create("Blog")
    for bad, reason in (
        ("*.example", "would cover every domain under .example"),
        ("news.*.example", "a * may only begin an entry"),
    ):
        response = client.form(
            f"/senders/accounts/{account.id}",
            {"authorized_domains": f"shop.example; {bad}", "authorized_senders": "", "sender_mode": "block"},
        )
        body = response.get_data(as_text=True)
        assert response.status_code == 400 and reason in body and "Nothing was saved" in body
    assert SmtpAccount.get_by_id(account.id).authorized_domains == ""
