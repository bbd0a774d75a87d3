"""Fixtures of the tracking tests: mail routed to a sink MX, shop.test's DKIM records published, the web
server that tracked links point at, and a known mix of traffic for the analytics."""

from __future__ import annotations

import html
import urllib.request

import pytest

from appliance import dkim, domains
from appliance.models import Domain
from tests.support.mail import send
from tests.support.relay import relay_overrides
from tests.support.tracking import CLICK, PIXEL, events_of, fetch, newsletter, parts, unsubscribe_links
from tests.support.wait import wait_for
from tests.support.web import served


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def web(app):
    """The web server on WEB_LISTEN (the links point there: TRACKING_URL and PUBLIC_URL are empty)."""
    with served(app, app.config["WEB_LISTEN"]) as url:
        yield url


@pytest.fixture
def sink(app, dns_server, sink_mx, shop_domain):
    """example.test's MX, and shop.test's DKIM records published in the test DNS."""
    for record in domains.records(shop_domain, "relay.test"):
        value = dkim.zone_value(record.value) if record.type == "TXT" else record.value
        dns_server.add(record.name, record.type, value)
    with app.app_context():
        domains.check(Domain.get_by_id(shop_domain.id), app.config)
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    return sink_mx("127.0.0.3")


@pytest.fixture
def traffic(app, relay, account, sink, dns_server, web):
    """A broadcast message to alice@example.test and bob@gmail.com (both MXs on the sink): alice
    opens and clicks, bob's copy is fetched by a scanner and bob unsubscribes; and one
    transactional message to alice."""
    dns_server.mx("gmail.com", (10, "mx.example.test"))
    msg = newsletter()
    del msg["To"]
    msg["To"] = "alice@example.test, bob@gmail.com"
    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail("news@shop.test", ["alice@example.test", "bob@gmail.com"], msg.as_bytes())
    wait_for(lambda: len(sink.messages) == 2)
    copies = {r.rcpts[0]: parts(r.data)["html"] for r in sink.messages}
    fetch(PIXEL.search(copies["alice@example.test"]).group(1))
    fetch(html.unescape(CLICK.search(copies["alice@example.test"]).group(0)))
    scanner = urllib.request.Request(
        PIXEL.search(copies["bob@gmail.com"]).group(1), headers={"User-Agent": "Barracuda link protection"}
    )
    urllib.request.urlopen(scanner, timeout=10).close()
    bob = next(r for r in sink.messages if r.rcpts == ["bob@gmail.com"])
    fetch(unsubscribe_links(bob.data)[0], "POST", b"List-Unsubscribe=One-Click")
    send(relay, account, newsletter(stream="transactional"))
    wait_for(lambda: len(sink.messages) == 3 and events_of(app, "unsubscribed"))
    return sink
