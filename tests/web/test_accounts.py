"""SMTP account pages: list, create (password once), edit and IP rules, reset, delete, connection test."""

from __future__ import annotations

import re

import pytest

from appliance import accounts
from appliance.models import SmtpAccount

PASSWORD = re.compile(r'id="smtp-password" type="text" value="([A-Za-z0-9]{24})"')


def _create(client, **fields):
    data = {"name": "Web shop", "priority": "2", "note": "", "ip_rules": "", **fields}
    return client.form("/accounts/new", data, follow_redirects=True)


def test_the_empty_list_says_to_create_the_first_account(client):
    page = client.get("/accounts/").get_data(as_text=True)
    assert "No SMTP account yet." in page
    assert "Create the first account" in page


def test_creating_an_account_shows_its_working_password_once_with_a_copy_button(app, client):
    response = _create(client)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    password = PASSWORD.search(page).group(1)
    assert 'data-copy="smtp-password"' in page
    account = SmtpAccount.get(SmtpAccount.name == "Web shop")
    assert account.priority == 2
    assert accounts.verify(account.username, password, "127.0.0.1").failure is None
    for url in ("/accounts/", f"/accounts/{account.id}"):
        assert password not in client.get(url).get_data(as_text=True)


def test_the_created_page_lists_host_username_and_each_port_with_its_encryption(app, client):
    page = _create(client).get_data(as_text=True)
    assert "<code>relay.test</code>" in page
    assert re.search(r"<code>\d+\.web-shop\.smtp</code>", page)
    for spec in app.config["SMTP_LISTEN"].split(",")[:2]:
        port = spec.split(":")[1].split("/")[0]
        assert f"Port {port}" in page
    assert "STARTTLS (plain connection" in page and "implicit TLS" in page


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "The account needs a name, for example the website that uses it."),
        ({"priority": "9"}, "Priority is 1 (very high) to 5 (very low)."),
        ({"ip_rules": "10.0.0.0/33"}, "Not an IP address or network: &#39;10.0.0.0/33&#39;"),
        ({"ip_only": "on"}, "An IP-only account needs at least one authorized address or network."),
    ],
)
def test_a_bad_account_form_is_refused_with_a_message_next_to_the_field(client, fields, message):
    response = _create(client, **fields)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert SmtpAccount.select().count() == 0


def test_the_list_shows_status_priority_last_login_last_failure_and_messages_today(app, client, store_message):
    account, password = accounts.create("Blog", priority=1)
    assert accounts.verify(account.username, password, "192.0.2.1").failure is None
    accounts.record_login(account.id, "192.0.2.1").result()  # what the SMTP server does after a good AUTH
    accounts.verify(account.username, "wrong", "198.51.100.9")
    store_message(account_id=account.id)
    store_message(account_id=account.id)
    page = client.get("/accounts/").get_data(as_text=True)
    row = re.search(rf'<tr id="account-{account.id}">.*?</tr>', page, re.S).group(0)
    assert "active" in row and "1 · very high" in row
    assert "from 192.0.2.1" in row
    assert "wrong password" in row and "from 198.51.100.9" in row
    assert re.search(r'<td class="num">2</td>', row)


def test_editing_saves_active_priority_note_and_normalised_ip_rules(client):
    account, _ = accounts.create("Shop")
    response = client.form(
        f"/accounts/{account.id}",
        {
            "name": "Shop",
            "priority": "5",
            "note": "old site",
            "ip_rules": "192.0.2.7\n2001:db8::1/64, 10.0.0.0/8",
            "ip_only": "on",
        },
    )
    assert response.status_code == 302
    saved = SmtpAccount.get_by_id(account.id)
    assert (saved.active, saved.priority, saved.note, saved.ip_only) == (False, 5, "old site", True)
    assert saved.networks == ["192.0.2.7/32", "2001:db8::/64", "10.0.0.0/8"]
    assert "Saved." in client.get(response.headers["Location"]).get_data(as_text=True)


def test_an_invalid_ip_rule_on_edit_is_shown_and_nothing_is_saved(client):
    account, _ = accounts.create("Shop", networks=["192.0.2.0/24"])
    response = client.form(
        f"/accounts/{account.id}",
        {"name": "Shop", "priority": "3", "active": "on", "ip_rules": "192.0.2.0/24\nnot-an-ip"},
    )
    assert response.status_code == 400
    assert "Not an IP address or network: &#39;not-an-ip&#39;" in response.get_data(as_text=True)
    assert SmtpAccount.get_by_id(account.id).networks == ["192.0.2.0/24"]


def test_a_viewer_sees_the_account_form_disabled_and_cannot_save(viewer_client):
    account, _ = accounts.create("Shop")
    page = viewer_client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert "<fieldset disabled>" in page
    assert viewer_client.form(f"/accounts/{account.id}", {"name": "X", "priority": "3"}).status_code == 403


def test_a_reload_after_creating_creates_nothing_and_the_password_is_not_shown_again(client):
    response = client.form("/accounts/new", {"name": "Web shop", "priority": "2"})
    assert response.status_code == 302  # post-redirect-get: the browser's reload repeats the GET
    (account,) = SmtpAccount.select()
    shown = client.get(response.headers["Location"])
    assert shown.headers["Cache-Control"] == "no-store"
    password = PASSWORD.search(shown.get_data(as_text=True)).group(1)
    assert accounts.verify(account.username, password, "127.0.0.1").failure is None
    again = client.get(response.headers["Location"], follow_redirects=True).get_data(as_text=True)
    assert "The password was shown once, when it was made. Reset it for a new one." in again
    assert password not in again and not PASSWORD.search(again)
    assert SmtpAccount.select().count() == 1


def test_reset_password_asks_first_then_shows_a_new_password_once(client):
    account, old = accounts.create("Shop")
    confirm = client.get(f"/accounts/{account.id}/reset-password")
    assert b"stops working at once" in confirm.data
    unconfirmed = client.form(f"/accounts/{account.id}/reset-password")
    assert b"Reset the password of Shop?" in unconfirmed.data
    assert accounts.verify(account.username, old, "127.0.0.1").failure is None
    done = client.form(f"/accounts/{account.id}/reset-password", {"confirm": "yes"}, follow_redirects=True)
    new = PASSWORD.search(done.get_data(as_text=True)).group(1)
    assert accounts.verify(account.username, new, "127.0.0.1").failure is None
    assert accounts.verify(account.username, old, "127.0.0.1").failure == accounts.WRONG_PASSWORD


def test_delete_asks_first_and_accepts_only_post(client):
    account, _ = accounts.create("Shop")
    assert b"Delete the account Shop?" in client.get(f"/accounts/{account.id}/delete").data
    assert SmtpAccount.select().count() == 1
    response = client.form(f"/accounts/{account.id}/delete", {"confirm": "yes"})
    assert response.headers["Location"] == "/accounts/"
    assert SmtpAccount.select().count() == 0


def test_delete_from_the_list_with_htmx_returns_nothing_so_the_row_disappears(client):
    account, _ = accounts.create("Shop")
    response = client.form(f"/accounts/{account.id}/delete", {"confirm": "yes"}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and response.data == b""
    assert SmtpAccount.select().count() == 0


def test_an_unknown_account_is_a_404(client):
    assert client.get("/accounts/999").status_code == 404


def smtp_ports(app):
    return [int(spec.split(":")[1].split("/")[0]) for spec in app.config["SMTP_LISTEN"].split(",")]


def test_the_connection_test_walks_every_step_and_logs_in_with_the_password(app, client, smtp_server):
    account, password = accounts.create("Shop")
    starttls = smtp_ports(app)[0]
    response = client.form(
        f"/accounts/{account.id}/test", {"port": starttls, "password": password}, headers={"HX-Request": "true"}
    )
    page = response.get_data(as_text=True)
    for step in ("Connect: OK", "EHLO: OK", "STARTTLS: OK", "AUTH: OK"):
        assert step in page
    assert "the certificate is valid for relay.test and trusted" in page
    assert f"Logged in as {account.username}" in page


def test_the_connection_test_over_implicit_tls_reports_tls_then_auth(app, client, smtp_server):
    account, password = accounts.create("Shop")
    response = client.form(f"/accounts/{account.id}/test", {"port": smtp_ports(app)[1], "password": password})
    page = response.get_data(as_text=True)
    assert "TLS: OK" in page and "AUTH: OK" in page
    assert "<fieldset" in page  # without htmx the whole account page comes back


def test_the_connection_test_without_password_stops_before_auth_and_says_why(app, client, smtp_server):
    account, _ = accounts.create("Shop")
    page = client.form(f"/accounts/{account.id}/test", {"port": smtp_ports(app)[0]}).get_data(as_text=True)
    assert "STARTTLS: OK" in page
    assert "AUTH: not tested" in page and "Needs the password" in page


def test_the_connection_test_explains_a_refused_login(app, client, smtp_server):
    account, _ = accounts.create("Shop")
    answer = client.form(f"/accounts/{account.id}/test", {"port": smtp_ports(app)[0], "password": "nope"})
    page = answer.get_data(as_text=True)
    assert "AUTH: failed" in page and "535" in page and "not the dashboard password" in page


def test_the_connection_test_says_when_nothing_listens(app, client):
    account, _ = accounts.create("Shop")
    page = client.form(f"/accounts/{account.id}/test", {"port": smtp_ports(app)[0]}).get_data(as_text=True)
    assert "Connect: failed" in page and "Nothing answers" in page


def test_the_account_form_sets_the_stream_and_tracking_and_refuses_values_it_does_not_take(app, client):
    from appliance.models import SmtpAccount

    created = client.form(
        "/accounts/new",
        {"name": "Newsletter", "priority": "3", "stream": "broadcast", "track_opens": "off", "track_clicks": "default"},
        follow_redirects=True,
    )
    assert created.status_code == 200
    with app.app_context():
        account = SmtpAccount.get(SmtpAccount.name == "Newsletter")
    assert (account.stream, account.track_opens, account.track_clicks) == ("broadcast", False, None)
    page = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert '<option value="broadcast" selected>' in page and '<option value="off" selected>' in page

    saved = client.form(
        f"/accounts/{account.id}",
        {
            "name": "Newsletter",
            "priority": "3",
            "active": "on",
            "stream": "transactional",
            "track_opens": "on",
            "track_clicks": "off",
        },
    )
    assert saved.status_code == 302
    with app.app_context():
        account = SmtpAccount.get_by_id(account.id)
    assert (account.stream, account.track_opens, account.track_clicks) == ("transactional", True, False)

    refused = client.form(
        f"/accounts/{account.id}",
        {"name": "Newsletter", "priority": "3", "active": "on", "stream": "marketing", "track_opens": "maybe"},
    )
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "The stream is transactional (orders, password resets) or broadcast (newsletters)." in text
    assert "Tracking is on, off, or the stream&#39;s default." in text
