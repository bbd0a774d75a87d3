"""SMARTHOST: every message goes upstream with AUTH over a verified TLS connection."""

from __future__ import annotations

import pytest

from appliance.delivery.smarthost import parse
from appliance.models import Attempt
from tests.support.mail import deliveries, settled, submit
from tests.support.ports import free_port
from tests.support.relay import relay_overrides

SMARTHOST_PORT = free_port()


@pytest.fixture
def overrides(overrides, dns_server, delivery_port, tls_ca, request):
    scheme, ca, password = getattr(request, "param", ("smtp", True, "secret"))
    return relay_overrides(
        overrides,
        dns_server,
        delivery_port,
        SMARTHOST=f"{scheme}://relay%40isp:{password}@127.0.0.1:{SMARTHOST_PORT}",
        SMARTHOST_CA_FILE=str(tls_ca.ca) if ca else "",
    )


@pytest.fixture
def smarthost(sink_mx):
    return sink_mx("127.0.0.1", port=SMARTHOST_PORT, auth=("relay@isp", "secret"), name="smarthost.test")


def test_the_smarthost_url_is_read_with_its_credentials_and_tls_mode():
    upstream = parse("smtps://user%40example.com:p%3Ass@mail.isp.test")
    assert (upstream.host, upstream.port, upstream.implicit_tls) == ("mail.isp.test", 465, True)
    assert (upstream.username, upstream.password) == ("user@example.com", "p:ss")
    assert parse("smtp://mail.isp.test:2525").implicit_tls is False
    assert parse("") is None
    with pytest.raises(ValueError):
        parse("http://mail.isp.test")


def test_mail_goes_to_the_smarthost_over_starttls_with_auth_and_no_mx_lookup(relay, account, dns_server, smarthost):
    message_id = submit(relay, account, ["alice@anywhere.test"])
    (row,) = settled(message_id, "delivered")
    (received,) = smarthost.messages
    assert received.rcpts == ["alice@anywhere.test"] and received.tls.startswith("TLSv1")
    assert not [q for q in dns_server.queries if "anywhere.test" in q[0]]
    (attempt,) = Attempt.select().where(Attempt.delivery == row.id)
    assert attempt.mx_host == "127.0.0.1" and attempt.tls == received.tls


@pytest.mark.parametrize("overrides", [("smtps", True, "secret")], indirect=True)
def test_mail_goes_to_an_implicit_tls_smarthost(relay, account, sink_mx):
    upstream = sink_mx("127.0.0.1", port=SMARTHOST_PORT, auth=("relay@isp", "secret"), implicit_tls=True)
    message_id = submit(relay, account, ["bob@anywhere.test"])
    settled(message_id, "delivered")
    assert [m.queue_id for m in upstream.messages] == [message_id]


@pytest.mark.parametrize("overrides", [("smtp", False, "secret")], indirect=True)
def test_a_smarthost_certificate_that_does_not_verify_defers_the_mail(relay, account, smarthost):
    message_id = submit(relay, account, ["carol@anywhere.test"])
    (row,) = settled(message_id, "deferred")
    assert "4.7.5" in row.last_reply and "CERTIFICATE_VERIFY_FAILED" in row.last_reply
    assert smarthost.messages == []


@pytest.mark.parametrize("overrides", [("smtp", True, "wrong")], indirect=True)
def test_a_smarthost_that_refuses_our_credentials_defers_the_mail(relay, account, smarthost):
    message_id = submit(relay, account, ["dave@anywhere.test"])
    (row,) = settled(message_id, "deferred")
    assert "AUTH" in row.last_reply and row.last_code == 454
    assert smarthost.messages == [] and deliveries(message_id)[0].attempts == 1
