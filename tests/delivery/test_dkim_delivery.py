"""A delivered message carries DKIM signatures that verify at the receiving end (RSA and Ed25519),
with d= the From: domain, resolved through the test DNS server on loopback."""

from __future__ import annotations

import email

import pytest

from appliance import dkim
from tests.support.dkim import assert_both_signatures_verify, signed_route
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


def test_a_delivered_message_passes_dkim_for_both_signatures_with_d_equal_to_the_from_domain(
    app, relay, account, shop_domain, dns_server, sink_mx
):
    sink = signed_route(app, shop_domain, dns_server, sink_mx)

    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail(
            "orders@shop.test",
            ["alice@example.test"],
            b"From: Shop <orders@shop.test>\r\nTo: alice@example.test\r\nSubject: Order 42\r\n\r\n"
            b"Thank you.\r\n.leading dot survives\r\n",
        )

    (received,) = wait_for(lambda: sink.messages)
    signatures = [dkim.tags(f) for f in email.message_from_bytes(received.data).get_all("DKIM-Signature")]
    assert [(s["a"], s["d"]) for s in signatures] == [("rsa-sha256", "shop.test"), ("ed25519-sha256", "shop.test")]
    assert_both_signatures_verify(app, received.data)


def test_mail_from_a_domain_that_is_not_verified_leaves_unsigned(app, relay, account, dns_server, sink_mx):
    from appliance import senders

    senders.add("me@personal.test", verified_by_admin=True)
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink = sink_mx("127.0.0.3")
    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail(
            "me@personal.test", ["alice@example.test"], b"From: me@personal.test\r\nSubject: hi\r\n\r\nhi\r\n"
        )
    (received,) = wait_for(lambda: sink.messages)
    assert b"DKIM-Signature" not in received.data
