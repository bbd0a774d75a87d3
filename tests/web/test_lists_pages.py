"""The Lists and Campaigns pages in Flask's test client: create (and refuse bad input with a sentence),
figures, members searched by address and status, a member's history, export, tying accounts; viewers
see and change nothing."""

from __future__ import annotations

from markupsafe import escape

from appliance import accounts, campaigns, lists, suppressions
from appliance.models import Campaign, ListAccount, MailingList


def test_a_list_is_made_on_its_page_and_a_bad_name_is_refused(client):
    assert "No list yet." in client.get("/lists/").get_data(as_text=True)
    refused = client.form("/lists/", {"name": "  "})
    assert refused.status_code == 400 and "the name may not be empty." in refused.get_data(as_text=True)
    acc, _ = accounts.create("Shop")
    made = client.form("/lists/", {"name": "Customers", "accounts": [str(acc.id)]})
    assert made.status_code == 302
    row = MailingList.get()
    assert made.headers["Location"].endswith(f"/lists/{row.id}")
    assert [t.account_id for t in ListAccount.select()] == [acc.id]
    page = client.get(f"/lists/{row.id}").get_data(as_text=True)
    assert row.id in page and f"{row.id}@lists.relay.test" in page and acc.username in page


def test_members_are_searched_by_address_and_status_and_exported(client):
    made = lists.create("Customers")
    lists.import_csv(made.id, b"email\nann@example.test\nbob@example.test\ncat@other.test\n")
    suppressions.add("bob@example.test")
    page = client.get(f"/lists/{made.id}?status=unsubscribed").get_data(as_text=True)
    assert "bob@example.test" in page and "ann@example.test" not in page
    page = client.get(f"/lists/{made.id}?q=other").get_data(as_text=True)
    assert "cat@other.test" in page and "ann@example.test" not in page
    assert "3 in all: 2 subscribed, 1 unsubscribed, 0 bounced, 0 complained." in client.get(
        f"/lists/{made.id}"
    ).get_data(as_text=True)
    exported = client.get(f"/lists/{made.id}/export")
    assert exported.headers["Content-Type"].startswith("text/csv")
    lines = exported.get_data(as_text=True).splitlines()
    assert lines[0] == "email,status,source,created_at,updated_at" and len(lines) == 4
    member = client.get(f"/lists/{made.id}/members/bob@example.test").get_data(as_text=True)
    assert "unsubscribed" in member and "No message filed under this list has gone to this address yet." in member
    assert client.get(f"/lists/{made.id}/members/nobody@example.test").status_code == 404
    assert client.get("/lists/no-such-list").status_code == 404


def test_an_account_is_tied_and_untied_on_the_lists_page(client):
    made = lists.create("Customers")
    acc, _ = accounts.create("Shop")
    assert client.form(f"/lists/{made.id}/accounts", {"account": str(acc.id), "action": "tie"}).status_code == 302
    assert ListAccount.select().count() == 1
    client.form(f"/lists/{made.id}/accounts", {"account": str(acc.id), "action": "untie"})
    assert ListAccount.select().count() == 0
    again = client.form(
        f"/lists/{made.id}/accounts", {"account": str(acc.id), "action": "untie"}, follow_redirects=True
    )
    assert f"account {acc.username} is not tied to list {made.id}." in again.get_data(as_text=True)


def test_a_campaign_is_made_renamed_and_archived_on_its_page(client):
    refused = client.form("/campaigns/", {"name": ""})
    assert refused.status_code == 400 and "the name may not be empty." in refused.get_data(as_text=True)
    assert client.form("/campaigns/", {"name": "Receipts", "subject": "Your receipt"}).status_code == 302
    row = Campaign.get()
    page = client.get(f"/campaigns/{row.id}").get_data(as_text=True)
    assert row.id in page and "Your receipt" in page and "Nothing filed under it yet." in page
    client.form(f"/campaigns/{row.id}", {"name": "Receipts 2026", "subject": "Your receipt"})
    client.form(f"/campaigns/{row.id}", {"archived": "1"})
    row = Campaign.get()
    assert (row.name, row.archived) == ("Receipts 2026", True)
    clash = campaigns.create("Other", "Your receipt")
    back = client.form(f"/campaigns/{row.id}", {"archived": "0"}, follow_redirects=True)
    assert str(escape(f"campaign 'Other' ({clash.id}) already has the subject")) in back.get_data(as_text=True)
    listed = client.get("/campaigns/").get_data(as_text=True)
    assert "Receipts 2026" in listed and "(archived)" in listed
    assert client.get("/campaigns/nope").status_code == 404


def test_a_list_is_connected_to_a_campaign_on_its_page(client):
    spring = lists.create("Spring buyers")
    row = campaigns.create("Launch", "Spring is here")
    page = client.get(f"/campaigns/{row.id}").get_data(as_text=True)
    assert f'<option value="{spring.id}" >Spring buyers</option>' in page
    assert client.form(f"/campaigns/{row.id}", {"list": spring.id}).status_code == 302
    assert campaigns.find(row.id).mailing_list == spring.id
    page = client.get(f"/campaigns/{row.id}").get_data(as_text=True)
    assert "join the list" in page and f'<option value="{spring.id}" selected>' in page
    refused = client.form(f"/campaigns/{row.id}", {"list": "nope"}, follow_redirects=True)
    assert "there is no list &#39;nope&#39;" in refused.get_data(as_text=True)
    assert campaigns.find(row.id).mailing_list == spring.id


def test_viewers_see_the_pages_and_change_nothing(viewer_client):
    made = lists.create("Customers")
    assert viewer_client.get("/lists/").status_code == 200
    assert viewer_client.get(f"/lists/{made.id}").status_code == 200
    assert viewer_client.get("/campaigns/").status_code == 200
    assert viewer_client.form("/lists/", {"name": "Mine"}).status_code == 403
    assert viewer_client.form("/campaigns/", {"name": "Mine"}).status_code == 403
    assert MailingList.select().count() == 1 and Campaign.select().count() == 0


def test_a_members_history_shows_the_events_of_the_lists_messages_to_it(client, store_message):
    from appliance.models import Message

    made = lists.create("Customers")
    lists.import_csv(made.id, b"email\nbob@example.com\n")
    message_id = store_message(subject="Spring news", rcpts=("bob@example.com",))
    Message.update(mailing_list=made.id).where(Message.id == message_id).execute()
    page = client.get(f"/lists/{made.id}/members/bob@example.com").get_data(as_text=True)
    assert "Spring news" in page and "queued" in page and f"/messages/{message_id}" in page
