"""List addresses over real SMTP sockets to a sink MX (docs/campaigns-and-lists.md#list-addresses): mail
to `<list-id>@LISTS_DOMAIN` from a tied account reaches each subscribed member once, as broadcast mail
with its own unsubscribe fields and `To:` naming it, DKIM verifying; members not subscribed or
suppressed are skipped and counted; other accounts, unknown lists and mixed recipients are refused."""

from __future__ import annotations

import datetime as dt
import email

import pytest

from appliance import accounts, lists, suppressions
from appliance.models import Delivery, Message
from tests.support.dkim import assert_both_signatures_verify, signed_route
from tests.support.filing import mail
from tests.support.process import cli_json
from tests.support.relay import HOSTNAME, relay_overrides
from tests.support.wait import wait_for

MEMBERS = b"email\nann@example.test\nbob@example.test\ncat@example.test\ndan@example.test\neve@example.test\n"


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port, LIST_BATCH=2)


@pytest.fixture
def newsletter(app, account):
    """A list of five tied to the shop's account: bob unsubscribed, cat suppressed by an admin, dan bounced."""
    with app.app_context():
        shop = accounts.find(account[0])
        made = lists.create("Newsletter", [shop])
        lists.import_csv(made.id, MEMBERS)
        now = dt.datetime(2026, 1, 1)
        suppressions.unsubscribe("bob@example.test", "shop.test", "unsubscribed (one-click)", now)
        suppressions.add("cat@example.test")
        suppressions.hard_bounce("dan@example.test", "550 5.1.1 no such user", now)
    return made


def test_a_list_address_sends_each_subscribed_member_one_copy_naming_it_and_skips_the_others(
    app, relay, account, shop_domain, dns_server, sink_mx, newsletter, run_cli
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    address = f"{newsletter.id}@lists.{HOSTNAME}"
    with relay.smtp.submission() as client:
        client.login(*account)
        client.mail("orders@shop.test")
        assert client.rcpt(address.upper())[0] == 250
        code, reply = client.data(mail("Spring news", "X-Stream: transactional", to=f"Shop news <{address}>"))
    assert code == 250, reply
    message_id = reply.decode().rsplit(" ", 1)[-1]

    assert wait_for(lambda: len(sink.messages) == 2)
    copies = {m.rcpts[0]: m for m in sink.messages}
    assert sorted(copies) == ["ann@example.test", "eve@example.test"]
    for rcpt, received in copies.items():
        parsed = email.message_from_bytes(received.data)
        assert parsed.get_all("To") == [rcpt]
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "X-Stream" not in parsed
        assert_both_signatures_verify(app, received.data)
    with app.app_context():
        assert wait_for(lambda: Message.get_by_id(message_id).status == "partial")  # some were skipped
        stored = Message.get_by_id(message_id)
        assert (stored.stream, stored.rcpt_count, stored.mailing_list) == ("broadcast", 5, newsletter.id)
        skipped = {d.rcpt: d.last_reply for d in Delivery.select().where(Delivery.status == "suppressed")}
    assert skipped == {
        "bob@example.test": "suppressed: member unsubscribed",
        "cat@example.test": "suppressed: member unsubscribed",
        "dan@example.test": "suppressed: member bounced",
    }
    shown = cli_json(run_cli("lists", "show", newsletter.id, "--json"))
    assert (shown["sent"], shown["delivered"]) == (2, 2)
    assert cli_json(run_cli("messages", "show", message_id, "--json"))["status"] == "partial"


def test_a_member_suppressed_for_the_senders_domain_only_is_skipped_as_suppressed(
    app, relay, account, shop_domain, dns_server, sink_mx
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    with app.app_context():
        made = lists.create("Offers", [accounts.find(account[0])])
        lists.import_csv(made.id, b"email\nann@example.test\nbob@example.test\n")
        # A status set by hand would not survive the next change of suppressions; here the member is
        # subscribed and the address suppressed, as a member imported in the same instant could be.
        suppressions.unsubscribe("bob@example.test", "shop.test", "unsubscribed (one-click)", dt.datetime(2026, 1, 1))
        from appliance.models import ListMember

        ListMember.update(status="subscribed").execute()
    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail("orders@shop.test", [f"{made.id}@lists.{HOSTNAME}"], mail("Offer"))
    assert wait_for(lambda: len(sink.messages) == 1)
    assert sink.messages[0].rcpts == ["ann@example.test"]
    with app.app_context():
        (skipped,) = Delivery.select().where(Delivery.status == "suppressed")
    assert skipped.rcpt == "bob@example.test"
    assert skipped.last_reply == "suppressed: unsubscribed (one-click)"


def test_list_addresses_refuse_an_account_not_tied_an_unknown_list_and_other_recipients_beside_them(
    app, relay, account, newsletter
):
    with app.app_context():
        other, password = accounts.create("Blog")
    address = f"{newsletter.id}@lists.{HOSTNAME}"
    with relay.smtp.submission() as client:
        client.login(other.username, password)
        client.mail("orders@shop.test")
        code, text = client.rcpt(address)
        assert (code, text.decode()) == (
            550,
            f"5.7.1 This account may not send to list {newsletter.id}: it is not tied to the list",
        )
        code, text = client.rcpt(f"6d284908-f535-48aa-bf77-542b0d8da338@lists.{HOSTNAME}")
        assert code == 550 and text.startswith(b"5.1.1 No such list")
    with relay.smtp.submission() as client:
        client.login(*account)
        client.mail("orders@shop.test")
        assert client.rcpt(address)[0] == 250
        code, text = client.rcpt("alice@example.test")
        assert code == 452 and b"4.5.3 A list address is the only recipient" in text
        client.rset()
        client.mail("orders@shop.test")
        assert client.rcpt("alice@example.test")[0] == 250
        assert client.rcpt(address)[0] == 452


def test_a_list_send_counts_its_subscribed_members_against_the_quotas_all_at_once(
    app, relay, account, shop_domain, dns_server, sink_mx, newsletter
):
    """ann and eve are the newsletter's subscribed members: a day quota of 1 refuses the send whole
    (MAIL FROM saw nothing used), and once it holds instead, both members' deliveries are held."""
    from appliance.policy import quotas
    from appliance.policy import sending as sp

    sink = signed_route(app, shop_domain, dns_server, sink_mx)
    address = f"{newsletter.id}@lists.{HOSTNAME}"
    with app.app_context():
        shop = accounts.find(account[0])
        quotas.set_quotas(shop.id, [sp.Quota("day", 1, "reject")])
    with relay.smtp.submission() as client:
        client.login(*account)
        assert client.mail("orders@shop.test")[0] == 250
        assert client.rcpt(address)[0] == 250
        code, reply = client.data(mail("Spring news", to=address))
    assert (code, reply.decode()) == (550, "5.7.1 Sending quota exceeded: this account may send 1 recipients per day")
    with app.app_context():
        assert not Message.select().exists()
        quotas.set_quotas(shop.id, [sp.Quota("day", 1, "hold", "broadcast")])
    with relay.smtp.submission() as client:
        client.login(*account)
        client.mail("orders@shop.test")
        client.rcpt(address)
        code, reply = client.data(mail("Spring news", to=address))
    assert code == 250, reply
    message_id = reply.decode().rsplit(" ", 1)[-1]
    with app.app_context():
        assert wait_for(lambda: Message.get_by_id(message_id).status == "held")
        held = {d.rcpt: d.last_reply for d in Delivery.select().where(Delivery.status == "held")}
        tomorrow = Message.get_by_id(message_id).received_at.date() + dt.timedelta(days=1)
    assert sorted(held) == ["ann@example.test", "eve@example.test"]
    assert set(held.values()) == {f"held: quota-broadcast-day until {tomorrow} 00:00 UTC"}
    assert sink.messages == []
