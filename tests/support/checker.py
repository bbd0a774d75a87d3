"""The deliverability checker in the tests: the appliance reachable as relay.test on its own port 25,
shop.test's records in the test DNS, and the messages it grades."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

from appliance import checker, dkim, domains
from appliance.models import Domain
from tests.support.smtputil import RawSMTP
from tests.support.wait import wait_for

SENDER_IP = "127.0.0.1"  # where the appliance's own deliveries (and the tests' raw sessions) come from


def listening_as_mx(overrides: dict, delivery_port: int) -> dict:
    """SMTP_LISTEN with the MX listener on 127.0.0.1:DELIVERY_PORT, where the appliance delivers mail
    for relay.test (no MX record: its A record, 127.0.0.1): mail it relays to a check address comes
    back to its own port 25, as on a real host."""
    submission, implicit, _ = overrides["SMTP_LISTEN"].split(",")
    return {**overrides, "SMTP_LISTEN": f"{submission},{implicit},127.0.0.1:{delivery_port}/starttls/mx"}


def publish_shop(app, dns_server, shop_domain, *, bimi: bool = True) -> None:
    """Every record the domain page asks shop.test for, relay.test's A and PTR, and a BIMI record."""
    for record in domains.records(shop_domain, "relay.test"):
        value = dkim.zone_value(record.value) if record.type == "TXT" else record.value
        dns_server.add(record.name, record.type, value)
    dns_server.a("relay.test", SENDER_IP)
    dns_server.ptr(SENDER_IP, "relay.test")
    if bimi:
        dns_server.add("default._bimi.shop.test", "TXT", '"v=BIMI1; l=https://shop.test/logo.svg"')
    with app.app_context():
        domains.check(Domain.get_by_id(shop_domain.id), app.config)


def order_mail(to: str, *, subject: str = "Your order 1042 has shipped", text: bool = True) -> bytes:
    """A shop's order mail: text and HTML (or HTML only), a link to the shop."""
    msg = EmailMessage()
    msg["From"] = "Shop <orders@shop.test>"
    msg["To"] = to
    msg["Subject"] = subject
    words = (
        "Hello Ann, thank you for your order 1042. It left our warehouse this morning and should reach you "
        "within two working days. You can follow the parcel on the order page of your account. "
    )
    if text:
        msg.set_content(words + "https://shop.test/orders/1042\n")
    html = f"<html><body><p>{words}</p><p><a href='https://shop.test/orders/1042'>Your order</a></p></body></html>"
    if text:
        msg.add_alternative(html, subtype="html")
    else:
        msg.set_content(html, subtype="html")
    return msg.as_bytes(policy=email.policy.SMTP)


def graded(app, token: str) -> dict:
    """Wait until the check's message has arrived and been graded; return `check show`'s dict."""
    with app.app_context():
        return wait_for(lambda: (shown := checker.show(app.config, token))["status"] == "graded" and shown, 60)


def by_key(shown: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for finding in shown["findings"]:
        found.setdefault(finding["key"], []).append(finding)
    return found


def send_direct(mx_port: int, rcpt: str, data: bytes, mail_from: str = "orders@shop.test") -> tuple[int, str]:
    """Send ``data`` (ending in CRLF) straight to port 25, as from anywhere else; return the reply to DATA."""
    raw = RawSMTP("127.0.0.1", mx_port)
    try:
        assert raw.cmd("EHLO client.test")[0] == 250
        assert raw.cmd(f"MAIL FROM:<{mail_from}>")[0] == 250
        assert raw.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert raw.cmd("DATA")[0] == 354
        raw.send(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        return raw.reply()
    finally:
        raw.close()
