"""Message log: search, keyset pages, polling fragment, detail with attempts, queue actions."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance import accounts, clock, events
from appliance.models import Attempt, Delivery, Message
from appliance.web import messages
from tests.web.conftest import ADMIN


def test_the_empty_log_says_how_to_get_a_first_message(client):
    page = client.get("/messages/").get_data(as_text=True)
    assert "No message yet." in page and "SMTP account" in page


def test_a_stored_message_is_listed_with_sender_recipient_subject_and_status(client, store_message):
    store_message(subject="Order 1001", rcpts=("bob@example.com", "eve@example.org"))
    page = client.get("/messages/").get_data(as_text=True)
    assert "Order 1001" in page and "shop@shop.test" in page
    assert "bob@example.com" in page and "+1" in page
    assert "status-queued" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"rcpt": "bob@example.com"}, {"A"}),
        ({"rcpt": "example.org"}, {"B"}),
        ({"sender": "news@list.test"}, {"B"}),
        ({"sender": "shop.test"}, {"A"}),
        ({"subject": "invoice"}, {"A"}),
        ({"status": "held"}, {"B"}),
    ],
)
def test_search_filters_narrow_the_log(client, store_message, query, expected):
    store_message(subject="Your Invoice A", rcpts=("bob@example.com",))
    held = store_message(subject="Newsletter B", mail_from="news@list.test", rcpts=("eve@example.org",))
    Message.update(status="held").where(Message.id == held).execute()
    page = client.get("/messages/", query_string=query).get_data(as_text=True)
    shown = {label for label in ("A", "B") if f"{'Your Invoice' if label == 'A' else 'Newsletter'} {label}" in page}
    assert shown == expected


def test_search_by_message_id_finds_the_ulid_and_the_message_id_header(client, store_message):
    first = store_message(subject="First", headers="Message-ID: <abc@shop.test>\r\n")
    store_message(subject="Second")
    assert "First" in client.get("/messages/", query_string={"msgid": first.lower()}).get_data(as_text=True)
    by_header = client.get("/messages/", query_string={"msgid": "abc@shop.test"}).get_data(as_text=True)
    assert "First" in by_header and "Second" not in by_header


def test_search_by_account_and_date_range(client, store_message):
    account, _ = accounts.create("Shop")
    mine = store_message(subject="Mine", account_id=account.id)
    old = store_message(subject="Old")
    Message.update(received_at=dt.datetime(2020, 1, 2, 12)).where(Message.id == old).execute()
    by_account = client.get("/messages/", query_string={"account": account.id}).get_data(as_text=True)
    assert "Mine" in by_account and "Old" not in by_account
    by_date = client.get("/messages/", query_string={"since": "2020-01-02", "until": "2020-01-02"})
    by_date = by_date.get_data(as_text=True)
    assert "Old" in by_date and "Mine" not in by_date
    assert mine


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "yesterday"}, "Use a date like 2025-01-31."),
        ({"status": "lost"}, "Pick a status from the list."),
        ({"account": "shop"}, "Pick an account from the list."),
    ],
)
def test_a_bad_search_field_is_explained(client, query, message):
    assert message in client.get("/messages/", query_string=query).get_data(as_text=True)


def test_no_match_says_how_to_loosen_the_search(client, store_message):
    store_message()
    page = client.get("/messages/", query_string={"rcpt": "nobody@nowhere.test"}).get_data(as_text=True)
    assert "No message matches this search." in page


def test_the_older_link_leads_to_the_next_page(client, store_message, monkeypatch):
    monkeypatch.setattr(messages, "PAGE_SIZE", 2)
    for i in range(3):
        store_message(subject=f"Subject {i}")
    first = client.get("/messages/").get_data(as_text=True)
    assert "Older messages" in first
    after = first.split('href="/messages/?after=')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(f"/messages/?after={after}").get_data(as_text=True)
    assert "Subject 0" in second and "Subject 2" not in second
    assert 'hx-trigger="every 5s"' not in second


def test_htmx_polling_gets_only_the_table_fragment(client, store_message):
    store_message(subject="Polled")
    page = client.get("/messages/").get_data(as_text=True)
    assert 'hx-trigger="every 5s"' in page
    fragment = client.get("/messages/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.startswith('\n<div id="log"') or fragment.lstrip().startswith('<div id="log"')
    assert "Polled" in fragment and "<html" not in fragment


def _attempt(delivery_id, code, enhanced, text, outcome, minutes):
    Attempt.create(
        delivery=delivery_id,
        started_at=dt.datetime(2024, 5, 1, 10, minutes),
        code=code,
        enhanced_code=enhanced,
        text=text,
        outcome=outcome,
        mx_host="mx.example.com",
        mx_ip="192.0.2.25",
        tls="TLSv1.3",
        duration_ms=120,
    )


def test_the_detail_shows_envelope_headers_and_a_timeline_with_codes_in_plain_words(client, store_message):
    message_id = store_message(subject="Receipt", headers="X-Shop: 42\r\n")
    delivery = Delivery.get(Delivery.message == message_id)
    _attempt(delivery.id, 451, "4.7.1", "Greylisted, try later", "deferred", 0)
    _attempt(delivery.id, 550, "5.1.1", "No such user", "bounced", 5)
    page = client.get(f"/messages/{message_id}").get_data(as_text=True)
    assert "MAIL FROM" in page and "shop@shop.test" in page and "bob@example.com" in page
    assert "X-Shop: 42" in page and "Received: from client.test" in page
    assert page.index("Greylisted") < page.index("No such user")
    assert "greylisting" in page
    assert "The mailbox does not exist" in page
    assert "mx.example.com [192.0.2.25]" in page


def test_an_unknown_message_is_a_404(client):
    assert client.get("/messages/01NOPE").status_code == 404


def test_hold_then_release_moves_deliveries_and_the_message_status(client, store_message):
    message_id = store_message()
    response = client.form(f"/messages/{message_id}/hold")
    assert response.status_code == 302
    assert Delivery.get(Delivery.message == message_id).status == "held"
    assert Message.get_by_id(message_id).status == "held"
    assert "Hold: 1 delivery changed." in client.get(response.headers["Location"]).get_data(as_text=True)
    client.form(f"/messages/{message_id}/release")
    assert Delivery.get(Delivery.message == message_id).status == "queued"
    assert Message.get_by_id(message_id).status == "queued"
    page = client.get(f"/messages/{message_id}").get_data(as_text=True)
    timeline = page[page.index('id="events"') :]
    assert timeline.index("accepted") < timeline.index("held") < timeline.index("released")
    assert f"by {ADMIN[0]}" in timeline


def test_retry_makes_a_deferred_delivery_due_now(client, store_message):
    message_id = store_message()
    later = dt.datetime(2999, 1, 1)
    Delivery.update(status="deferred", next_attempt_at=later).where(Delivery.message == message_id).execute()
    client.form(f"/messages/{message_id}/retry")
    delivery = Delivery.get(Delivery.message == message_id)
    assert delivery.status == "deferred" and delivery.next_attempt_at <= clock.now()


def test_cancel_acts_on_one_recipient_when_asked(client, store_message):
    message_id = store_message(rcpts=("a@example.com", "b@example.com"))
    first = Delivery.select().where(Delivery.message == message_id).order_by(Delivery.id).first()
    client.form(f"/messages/{message_id}/cancel", {"delivery": first.id})
    statuses = [d.status for d in Delivery.select().where(Delivery.message == message_id).order_by(Delivery.id)]
    assert statuses == ["cancelled", "queued"]
    assert [(e["type"], e["recipient"]) for e in events.timeline(message_id)] == [
        ("accepted", ""),
        ("cancelled", "a@example.com"),
    ]


def test_an_action_that_does_not_apply_changes_nothing_and_says_so(client, store_message):
    message_id = store_message()
    response = client.form(f"/messages/{message_id}/release", follow_redirects=True)
    assert "Nothing to release" in response.get_data(as_text=True)
    assert Delivery.get(Delivery.message == message_id).status == "queued"


def test_a_viewer_sees_no_action_buttons_and_cannot_post_them(viewer_client, store_message):
    message_id = store_message()
    page = viewer_client.get(f"/messages/{message_id}").get_data(as_text=True)
    assert "Retry now" not in page
    assert viewer_client.form(f"/messages/{message_id}/hold").status_code == 403
    assert Delivery.get(Delivery.message == message_id).status == "queued"


def test_the_message_page_offers_only_the_actions_that_apply_to_its_deliveries(client, store_message):
    def buttons(message_id: str) -> list[str]:
        page = client.get(f"/messages/{message_id}").get_data(as_text=True)
        head = page[: page.index("<h2>Envelope</h2>")]
        return [name for name in ("retry", "hold", "release", "cancel") if f"/messages/{message_id}/{name}" in head]

    message_id = store_message()
    assert buttons(message_id) == ["retry", "hold", "cancel"]  # queued
    client.form(f"/messages/{message_id}/hold")
    assert buttons(message_id) == ["release", "cancel"]
    client.form(f"/messages/{message_id}/cancel")
    assert buttons(message_id) == []  # cancelled: nothing is left to do
