"""Campaigns over real SMTP sockets to a sink MX (docs/campaigns-and-lists.md): each filing rule
(campaign_guid or X-Campaign-ID, the exact subject, the account's Transactional Campaign), the relay's
own headers gone at the sink with nothing else changed and DKIM still verifying, the figures, and the
`appliance campaigns` commands."""

from __future__ import annotations

import email

import pytest

from appliance import accounts, campaigns, dkim, lists
from appliance.models import Alert, Campaign, ListMember, Message
from tests.support.dkim import assert_both_signatures_verify, signed_route
from tests.support.filing import mail, send
from tests.support.process import cli_json
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


def filed_under(app, message_id: str) -> str | None:
    with app.app_context():
        return Message.get_by_id(message_id).campaign


def test_campaign_guid_files_the_message_and_every_relay_header_is_gone_at_the_sink_with_dkim_verifying(
    app, relay, account, shop_domain, dns_server, sink_mx
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    with app.app_context():
        launch = campaigns.create("Spring launch")
    relay_headers = [
        f"campaign_guid: {launch.id.upper()}",
        "X-Campaign-ID: 00000000-0000-4000-8000-000000000000",
        "mailing_list_id: 6d284908-f535-48aa-bf77-542b0d8da338",
        "X-Stream: transactional",
        "X-Track-Opens: no",
        "X-Track-Clicks: no",
    ]
    sent = mail("Order 42", "X-Kept: stays", *relay_headers, body="Thank you.\r\n.leading dot survives")
    message_id = send(relay, account, sent)

    (received,) = wait_for(lambda: sink.messages)
    assert filed_under(app, message_id) == launch.id
    parsed = email.message_from_bytes(received.data)
    for name in ("campaign_guid", "X-Campaign-ID", "mailing_list_id", "X-Stream", "X-Track-Opens", "X-Track-Clicks"):
        assert parsed[name] is None, name
    # Nothing else changed: the sink has the message as sent without the relay's headers, after the
    # appliance's own trace field and its two DKIM signatures.
    head, _, rest = received.data.partition(b"\r\nFrom: ")
    assert b"From: " + rest == mail("Order 42", "X-Kept: stays", body="Thank you.\r\n.leading dot survives")
    added = [line.split(b":")[0] for line in (head + b"\r\n").split(b"\r\n") if line and line[:1] not in b" \t"]
    assert sorted(added) == [b"DKIM-Signature", b"DKIM-Signature", b"Received"]
    signatures = [dkim.tags(f) for f in parsed.get_all("DKIM-Signature")]
    assert {s["d"] for s in signatures} == {"shop.test"}
    assert_both_signatures_verify(app, received.data)


def test_x_campaign_id_is_read_when_there_is_no_campaign_guid(app, relay, account, shop_domain, dns_server, sink_mx):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    with app.app_context():
        winter = campaigns.create("Winter")
    message_id = send(relay, account, mail("Anything", f"X-Campaign-ID: {{{winter.id}}}"))
    wait_for(lambda: sink.messages)
    assert filed_under(app, message_id) == winter.id


def test_without_a_header_the_exact_subject_files_it_else_the_accounts_transactional_campaign(
    app, relay, account, shop_domain, dns_server, sink_mx
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    with app.app_context():
        receipts = campaigns.create("Receipts", subject="Your receipt")
        old = campaigns.create("Old", subject="Old news")
        campaigns.archive(old.id)
    matched = send(relay, account, mail("Your receipt"))
    near_miss = send(relay, account, mail("your receipt"))  # exact: the case differs
    archived = send(relay, account, mail("Old news"))  # an archived campaign's subject files nothing
    later = send(relay, account, mail("Password reset"))
    wait_for(lambda: len(sink.messages) == 4)

    assert filed_under(app, matched) == receipts.id
    with app.app_context():
        (default,) = Campaign.select().where(Campaign.default_for.is_null(False))
        assert default.name == "Transactional Campaign"
    assert filed_under(app, near_miss) == filed_under(app, archived) == filed_under(app, later) == default.id


def test_a_campaign_guid_naming_no_campaign_files_by_the_next_rule_and_raises_an_alert(
    app, relay, account, shop_domain, dns_server, sink_mx
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    with app.app_context():
        receipts = campaigns.create("Receipts", subject="Your receipt")
    message_id = send(relay, account, mail("Your receipt", "campaign_guid: no-such-campaign"))
    wait_for(lambda: sink.messages)
    assert filed_under(app, message_id) == receipts.id
    with app.app_context():
        (alert,) = Alert.select().where(Alert.kind == campaigns.CAMPAIGN_UNKNOWN)
    assert alert.subject == f"account {account[0]}"
    assert "'no-such-campaign' names no campaign" in alert.text


def test_a_campaigns_figures_count_its_deliveries_bounces_and_opens(
    app, relay, account, shop_domain, dns_server, sink_mx, run_cli
):
    from appliance import engagement

    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    launch = cli_json(run_cli("campaigns", "create", "Launch", "--subject", "New in store", "--json"))
    send(
        relay,
        account,
        mail("New in store", "X-Track-Opens: yes", body="<p>hi</p>"),
        rcpts=("alice@example.test", "unknown-bob@example.test"),
    )
    send(relay, account, mail("Something else"))
    wait_for(lambda: len(sink.messages) == 2)

    def shown():
        return cli_json(run_cli("campaigns", "show", launch["id"], "--json"))

    assert wait_for(lambda: shown()["bounced"] == 1)
    with app.app_context():
        from appliance.models import Delivery

        token = Delivery.get(Delivery.rcpt == "alice@example.test", Delivery.tracking_id.is_null(False)).tracking_id
    from appliance import tracking

    signed = tracking.token(app.config, tracking.OPEN, token)
    with app.app_context():
        assert engagement.opened(app.config, signed, "192.0.2.10", "Mozilla/5.0 (Windows NT 10.0)")
        assert engagement.opened(app.config, signed, "192.0.2.10", "Mozilla/5.0 (Windows NT 10.0)")
    with app.app_context():
        from appliance.models import Event

        assert wait_for(lambda: Event.select().where(Event.type == "opened").count() == 2)
    figures = shown()
    assert {k: figures[k] for k in campaigns.FIGURES} == {
        "sent": 2,
        "delivered": 1,
        "bounced": 1,
        "opened": 1,  # the first human open of each recipient
        "clicked": 0,
        "unsubscribed": 0,
        "complained": 0,
    }
    assert [d["sent"] for d in figures["days"]] == [2]
    listed = {c["name"]: c for c in cli_json(run_cli("campaigns", "list", "--json"))}
    assert listed["Launch"]["delivered"] == 1
    assert listed["Transactional Campaign"]["sent"] == listed["Transactional Campaign"]["delivered"] == 1


def test_the_recipients_of_a_campaigns_mail_join_its_connected_list_unless_the_message_names_one(
    app, relay, account, shop_domain, dns_server, sink_mx
):
    """Moosend's rule: a campaign matched by subject (or named by campaign_guid) adds the recipients to
    the list connected with it; mailing_list_id still wins; without a connection, the account's
    Transactional Campaign Recipients."""
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    with app.app_context():
        spring, vip = lists.create("Spring buyers"), lists.create("VIP")
        launch = campaigns.create("Spring launch", "Spring is here", spring.id)
        other = campaigns.create("Receipts", "Your receipt")
    send(relay, account, mail("Spring is here"), rcpts=("ann@example.test",))
    send(relay, account, mail("Late", f"campaign_guid: {launch.id}"), rcpts=("bob@example.test",))
    send(relay, account, mail("Spring is here", f"mailing_list_id: {vip.id}"), rcpts=("cat@example.test",))
    send(relay, account, mail("Your receipt"), rcpts=("dan@example.test",))
    assert wait_for(lambda: len(sink.messages) == 4)
    with app.app_context():
        joined = {m.email: m.list_id for m in ListMember.select()}
        default = lists.default_for(accounts.find(account[0]).id)
    assert joined == {
        "ann@example.test": spring.id,
        "bob@example.test": spring.id,
        "cat@example.test": vip.id,
        "dan@example.test": default,
    }
    assert other.mailing_list is None


def test_the_campaigns_commands_connect_a_list_and_refuse_an_unknown_one(run_cli, app):
    with app.app_context():
        spring = lists.create("Spring buyers")
    made = cli_json(run_cli("campaigns", "create", "Launch", "--list", spring.id.upper(), "--json"))
    assert made["list"] == spring.id
    assert run_cli("campaigns", "connect", made["id"], "").exit_code == 0
    assert cli_json(run_cli("campaigns", "show", made["id"], "--json"))["list"] is None
    for args in (("campaigns", "connect", made["id"], "nope"), ("campaigns", "create", "X", "--list", "nope")):
        result = run_cli(*args)
        assert result.exit_code != 0 and "there is no list 'nope'" in result.output, result.output
    assert [c["name"] for c in cli_json(run_cli("campaigns", "list", "--json"))] == ["Launch"]


def test_the_campaigns_commands_create_rename_archive_and_refuse_bad_input(run_cli):
    made = cli_json(run_cli("campaigns", "create", "Receipts", "--subject", "Your receipt", "--json"))
    assert len(made["id"]) == 36 and made["id"] == made["id"].lower()
    assert made["subject"] == "Your receipt" and made["sent"] == 0

    taken = run_cli("campaigns", "create", "Copy", "--subject", "Your receipt")
    assert taken.exit_code != 0
    assert "already has the subject 'Your receipt'" in taken.output
    assert "Traceback" not in taken.output

    assert run_cli("campaigns", "rename", made["id"], "Receipts 2026").exit_code == 0
    assert run_cli("campaigns", "archive", made["id"]).exit_code == 0
    shown = cli_json(run_cli("campaigns", "show", made["id"].upper(), "--json"))
    assert (shown["name"], shown["archived"]) == ("Receipts 2026", True)
    # Archived, its subject is free for another campaign; bringing it back then is refused.
    assert run_cli("campaigns", "create", "Receipts 2027", "--subject", "Your receipt").exit_code == 0
    back = run_cli("campaigns", "archive", made["id"], "--undo")
    assert back.exit_code != 0 and "already has the subject" in back.output

    for args, said in (
        (("campaigns", "show", "nope"), "there is no campaign 'nope'"),
        (("campaigns", "create", "  "), "the name may not be empty"),
        (("campaigns", "create", "x" * 300), "longer than 255 characters"),
    ):
        result = run_cli(*args)
        assert result.exit_code != 0 and said in result.output, result.output
