"""Senders: a verification link mailed through the appliance itself, admin verification, resend and
delete; the account's authorized domains and senders as lists separated by `;`, `,` or spaces."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
from urllib.parse import urlsplit

import pytest
from itsdangerous import TimestampSigner

from appliance import senders
from appliance.models import Delivery, Event, Message, Sender
from tests.support.process import cli_json
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for

LINK = re.compile(r"https://relay\.test/verify/[A-Za-z0-9_.\-]+")
PUBLIC = "https://relay.test"  # the dashboard's public address, as PUBLIC_URL
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def verification_link(message_id: str) -> str:
    from appliance.models import MessageBody

    data = bytes(MessageBody.get_by_id(message_id).data)
    body = email.message_from_bytes(data, policy=email.policy.default).get_content()
    return LINK.search(body).group(0)


@pytest.fixture
def overrides(overrides):
    """A public address for the dashboard: a link to it can be opened from the owner's phone."""
    return {**overrides, "PUBLIC_URL": PUBLIC}


class TestTheLinkThroughTheRelay:
    @pytest.fixture
    def overrides(self, overrides, dns_server, delivery_port):
        return relay_overrides(overrides, dns_server, delivery_port)

    def test_adding_a_sender_mails_a_link_through_the_appliance_and_opening_it_verifies_the_sender(
        self, app, relay, run_cli, dns_server, sink_mx
    ):
        dns_server.mx("owner.test", (10, "mx.owner.test"))
        dns_server.a("mx.owner.test", "127.0.0.7")
        sink = sink_mx("127.0.0.7")

        added = cli_json(run_cli("senders", "add", "Jo@Owner.test", "--json"))
        assert added["email"] == "jo@owner.test" and added["verified"] is False and added["link_sent_at"]

        (received,) = wait_for(lambda: sink.messages)
        assert received.rcpts == ["jo@owner.test"] and received.mail_from == "postmaster@relay.test"
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        assert message["Subject"] == "Verify jo@owner.test as a sender"
        assert wait_for(lambda: Delivery.get(Delivery.rcpt == "jo@owner.test").status == "delivered")
        link = LINK.search(message.get_content()).group(0)

        browser = app.test_client()
        page = browser.get(urlsplit(link).path).get_data(as_text=True)  # what a link scanner fetches too
        assert "asks to send mail as <strong>jo@owner.test</strong>" in page
        assert not Sender.get(Sender.email == "jo@owner.test").verified
        token = CSRF.search(page).group(1)
        done = browser.post(urlsplit(link).path, data={"csrf_token": token})
        assert done.status_code == 303 and done.headers["Location"] == urlsplit(link).path  # post-redirect-get
        assert "jo@owner.test</strong> is verified" in browser.get(urlsplit(link).path).get_data(as_text=True)
        sender = Sender.get(Sender.email == "jo@owner.test")
        assert sender.verified and sender.verified_by == "link"
        assert browser.post(urlsplit(link).path).status_code == 400  # the button's POST needs the page's token

    def test_once_the_sender_is_verified_its_link_mails_still_waiting_are_cancelled(
        self, app, relay, run_cli, dns_server
    ):
        dns_server.time_out("owner.test")  # the owner's MX cannot be found yet: the links wait
        run_cli("senders", "add", "jo@owner.test")
        resent = cli_json(run_cli("senders", "resend", "jo@owner.test", "--json"))
        links = lambda: list(Delivery.select().where(Delivery.rcpt == "jo@owner.test"))  # noqa: E731
        assert wait_for(lambda: [d.status for d in links()] == ["deferred", "deferred"])

        browser = app.test_client()
        path = urlsplit(verification_link(resent["message"])).path
        token = CSRF.search(browser.get(path).get_data(as_text=True)).group(1)
        assert browser.post(path, data={"csrf_token": token}).status_code == 303
        assert [d.status for d in links()] == ["cancelled", "cancelled"]
        cancelled = Event.select().where((Event.type == "cancelled") & (Event.recipient == "jo@owner.test"))
        assert [json.loads(e.details) for e in cancelled] == [{"by": "sender verified"}] * 2


class TestNoPublicAddress:
    """PUBLIC_URL empty and the dashboard on loopback: a link would open only on this machine."""

    @pytest.fixture
    def overrides(self, overrides):
        return {**overrides, "PUBLIC_URL": ""}

    def test_no_link_is_mailed_the_reason_is_given_and_the_admin_may_vouch_instead(self, app, run_cli):
        refused = run_cli("senders", "add", "jo@owner.test")
        assert refused.exit_code == 1
        assert f"it would point at http://{app.config['WEB_LISTEN']}, from WEB_LISTEN (PUBLIC_URL is empty)" in (
            refused.output
        )
        assert "Set PUBLIC_URL" in refused.output and "senders add jo@owner.test --verified" in refused.output
        assert not Sender.select().exists() and not Message.select().exists()

        vouched = cli_json(run_cli("senders", "add", "jo@owner.test", "--verified", "--json"))
        assert vouched["verified_by"] == "admin"

    def test_resend_gives_the_reason_and_mails_nothing(self, run_cli):
        senders.add("wait@office.test")
        refused = run_cli("senders", "resend", "wait@office.test")
        assert refused.exit_code == 1 and "only this machine can open" in refused.output
        assert not Message.select().exists()


@pytest.mark.parametrize(
    ("public_url", "refused"),
    [
        ("http://localhost:8025", True),
        ("http://127.0.0.2", True),
        ("http://[::1]:8025", True),
        ("http://0.0.0.0:8025", True),
        ("https://relay.example.com", False),
        ("http://203.0.113.7:8025", False),
    ],
)
def test_a_link_to_an_address_only_this_machine_can_open_is_not_mailed(app, public_url, refused):
    problem = senders.link_problem({**app.config, "PUBLIC_URL": public_url})
    assert (problem is not None) == refused
    if refused:
        assert f"it would point at {public_url}, from PUBLIC_URL" in problem


def test_an_admin_can_mark_a_sender_verified_directly_and_it_is_recorded_as_such(run_cli):
    added = cli_json(run_cli("senders", "add", "boss@office.test", "--verified", "--json"))
    assert (added["verified"], added["verified_by"], added["link_sent_at"]) == (True, "admin", None)
    assert not Message.select().exists()  # no link is mailed
    listed = cli_json(run_cli("senders", "list", "--json"))
    assert [(s["email"], s["verified_by"]) for s in listed] == [("boss@office.test", "admin")]


def test_an_admin_verifies_a_sender_that_is_waiting_for_its_link(run_cli):
    run_cli("senders", "add", "late@office.test")
    again = cli_json(run_cli("senders", "add", "late@office.test", "--verified", "--json"))
    assert again["verified_by"] == "admin"


def test_resend_mails_a_new_link_and_delete_removes_the_sender(app, run_cli):
    run_cli("senders", "add", "wait@office.test")
    resent = cli_json(run_cli("senders", "resend", "wait@office.test", "--json"))
    assert Message.select().where(Message.mail_from == "postmaster@relay.test").count() == 2
    assert verification_link(resent["message"]).startswith(f"{PUBLIC}/verify/")
    deleted = run_cli("senders", "delete", "wait@office.test")
    assert deleted.exit_code == 0 and not Sender.select().exists()


def test_the_link_of_a_deleted_sender_no_longer_applies(app, run_cli):
    added = cli_json(run_cli("senders", "add", "gone@office.test", "--json"))
    link = verification_link(Message.get(Message.mail_from == "postmaster@relay.test").id)
    run_cli("senders", "delete", str(added["id"]))
    page = app.test_client().get(urlsplit(link).path)
    assert page.status_code == 400 and "removed from the relay" in page.get_data(as_text=True)


def test_an_expired_link_does_not_verify(app, monkeypatch):
    sender = senders.add("old@office.test")
    three_days_ago = int(time.time()) - 3 * 86400
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: three_days_ago)
    url = senders.verification_url(app.config, sender)
    monkeypatch.undo()
    page = app.test_client().get(urlsplit(url).path)
    assert page.status_code == 400 and "expired" in page.get_data(as_text=True)
    assert not Sender.get_by_id(sender.id).verified


def test_a_tampered_link_is_refused(app):
    sender = senders.add("x@office.test")
    url = senders.verification_url(app.config, sender)
    page = app.test_client().get(urlsplit(url).path[:-3] + "abc")
    assert page.status_code == 400 and "not valid" in page.get_data(as_text=True)
    assert not Sender.get_by_id(sender.id).verified


@pytest.mark.parametrize(
    "text",
    [
        "shop.test;news.shop.test",
        "shop.test, news.shop.test",
        "  Shop.TEST\nnews.shop.test. ; shop.test ",
        "shop.test;;news.shop.test;",
    ],
)
def test_authorized_domains_are_read_from_semicolons_commas_or_whitespace(text):
    assert senders.parse_domains(text) == ["shop.test", "news.shop.test"]


def test_a_subdomain_entry_is_kept_as_written_lower_cased():
    assert senders.parse_domains("*.Shop.test.; shop.test, *.shop.test") == ["*.shop.test", "shop.test"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("*", "'*' is not a domain name"),
        ("*.", "'*.' is not a domain name"),
        ("*shop.test", "'*shop.test' is not a domain name: a * may only begin an entry, as in *.shop.example"),
        ("shop.*.test", "'shop.*.test' is not a domain name: a * may only begin an entry"),
        ("*.*.shop.test", "'*.*.shop.test' is not a domain name: a * may only begin an entry"),
        ("*.test", "'*.test' would cover every domain under .test: name your own domain"),
        ("*.-shop.test", "'*.-shop.test' is not a domain name"),
    ],
)
def test_a_bad_subdomain_entry_is_named_with_what_is_wrong(text, reason):
    with pytest.raises(senders.SenderError, match=re.escape(reason)):
        senders.parse_domains(f"shop.test; {text}")


def test_authorized_senders_are_normalized_and_a_bad_one_is_named():
    assert senders.parse_senders("A@Shop.test;b@shop.test, a@shop.test") == ["a@shop.test", "b@shop.test"]
    with pytest.raises(senders.SenderError, match="'nobody' is not an email address"):
        senders.parse_senders("a@shop.test; nobody")


def test_accounts_edit_stores_and_shows_the_normalized_lists(run_cli, account):
    result = run_cli(
        "accounts",
        "edit",
        account[0],
        "--authorized-domains",
        "Shop.test, news.shop.test",
        "--authorized-senders",
        "Jo@Elsewhere.test",
        "--sender-mode",
        "alert",
    )
    assert result.exit_code == 0
    assert "authorized domains: shop.test; news.shop.test" in result.output
    shown = cli_json(run_cli("accounts", "show", account[0], "--json"))
    assert (shown["authorized_domains"], shown["authorized_senders"], shown["sender_mode"]) == (
        ["shop.test", "news.shop.test"],
        ["jo@elsewhere.test"],
        "alert",
    )
    bad = run_cli("accounts", "edit", account[0], "--authorized-domains", "shop.test; not_a domain!")
    assert bad.exit_code != 0 and "is not a domain name" in bad.stderr


def test_accounts_edit_takes_a_subdomain_entry_and_names_a_bad_one_on_stderr(run_cli, account):
    result = run_cli("accounts", "edit", account[0], "--authorized-domains", "*.Shop.test")
    assert result.exit_code == 0 and "authorized domains: *.shop.test" in result.output
    assert cli_json(run_cli("accounts", "show", account[0], "--json"))["authorized_domains"] == ["*.shop.test"]
    for bad, reason in (("*.test", "would cover every domain under .test"), ("shop.*.test", "a * may only begin")):
        refused = run_cli("accounts", "edit", account[0], "--authorized-domains", bad)
        assert refused.exit_code == 1 and reason in refused.stderr and "Traceback" not in refused.stderr
    assert cli_json(run_cli("accounts", "show", account[0], "--json"))["authorized_domains"] == ["*.shop.test"]
    created = run_cli("accounts", "create", "Blog", "--authorized-domains", "*")
    assert created.exit_code == 1 and "'*' is not a domain name" in created.stderr


def test_accounts_create_takes_the_authorization_options(run_cli):
    created = cli_json(
        run_cli("accounts", "create", "Blog", "--authorized-senders", "blog@shop.test;news@shop.test", "--json")
    )
    assert created["authorized_senders"] == ["blog@shop.test", "news@shop.test"] and created["sender_mode"] == "block"
