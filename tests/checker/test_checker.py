"""The deliverability checker over real sockets: check addresses on port 25, mail the shop's app sends
through the appliance (which relays it to its own port 25 by DNS), and the grade of what arrives."""

from __future__ import annotations

import json
import shutil

import pytest

from appliance import checker, replies, tracking
from appliance.models import CheckAddress, Message
from tests.support import spamd
from tests.support.checker import SENDER_IP, by_key, graded, listening_as_mx, order_mail, publish_shop, send_direct
from tests.support.relay import relay_overrides
from tests.support.smtputil import RawSMTP

needs_spamassassin = pytest.mark.skipif(
    shutil.which("spamassassin") is None, reason="Debian's spamassassin is not installed (scripts/test.sh installs it)"
)


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return listening_as_mx(relay_overrides(overrides, dns_server, delivery_port, COMMAND_TIMEOUT=60), delivery_port)


def new_check(run_cli) -> dict:
    result = run_cli("check", "new", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def show(run_cli, token: str) -> dict:
    result = run_cli("check", "show", token, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def send_through_appliance(relay, account, to: str, data: bytes) -> None:
    """The shop's app sends through the submission port; the appliance delivers by DNS to relay.test."""
    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail("orders@shop.test", [to], data)


def mx_session(relay) -> RawSMTP:
    raw = RawSMTP("127.0.0.1", relay.smtp.mx_port)
    assert raw.cmd("EHLO relay.test")[0] == 250
    return raw


def test_a_check_address_names_no_row_and_waits_for_its_message(app, run_cli):
    made = new_check(run_cli)
    assert made["address"] == f"check-{made['token']}@relay.test"
    with app.app_context():
        row = CheckAddress.get()
    assert str(row.id) not in made["token"] and tracking.verify(app.config, tracking.CHECK, made["token"])
    assert made["url"].endswith(f"/check/{made['token']}")
    shown = show(run_cli, made["token"])
    assert (shown["status"], shown["grade"], shown["findings"]) == ("waiting", None, [])
    assert show(run_cli, made["address"])["token"] == made["token"]  # the whole address will do

    forged = made["token"][:-1] + ("a" if made["token"][-1] != "a" else "b")
    result = run_cli("check", "show", forged)
    assert result.exit_code != 0 and "no such check address" in result.output


@needs_spamassassin
def test_a_signed_message_sent_through_the_appliance_grades_a(app, relay, account, dns_server, shop_domain, run_cli):
    publish_shop(app, dns_server, shop_domain)
    made = new_check(run_cli)
    send_through_appliance(relay, account, made["address"], order_mail(made["address"]))

    shown = graded(app, made["token"])
    assert shown["client_ip"] == SENDER_IP
    assert show(run_cli, made["token"])["grade"] == "A", shown["findings"]
    found = by_key(shown)
    assert [f["status"] for f in found["dkim"]] == ["pass", "pass"]  # RSA and Ed25519
    for key in ("spf", "dmarc", "dmarc-policy", "bimi", "ptr", "tls", "text-part", "message-id", "date", "links"):
        assert [f["status"] for f in found[key]] == ["pass"], (key, found[key])
    assert all(f["status"] == "pass" for f in found["blocklists"])
    assert "SpamAssassin scores it" in found["spamassassin"][0]["summary"]
    with app.app_context():
        stored = Message.get_by_id(shown["message_id"])
    assert (stored.direction, stored.status) == ("inbound", "received")


@needs_spamassassin
def test_a_broken_setup_gets_each_finding_with_its_fix(app, relay, account, dns_server, shop_domain, run_cli):
    publish_shop(app, dns_server, shop_domain)
    # The DKIM record of the RSA selector broken (another key), SPF without the include of the
    # appliance, no PTR for the sending address, and that address on Spamhaus's list.
    rsa = next(name for (name, rdtype) in dns_server.records if rdtype == "TXT" and "-rsa._domainkey" in name)
    dns_server.records[(rsa, "TXT")] = ['"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong"']
    dns_server.records[("shop.test.", "TXT")] = ['"v=spf1 include:_spf.mailer.test -all"']
    dns_server.records[("bounces.shop.test.", "TXT")] = ['"v=spf1 include:_spf.mailer.test -all"']
    dns_server.add("_spf.mailer.test", "TXT", '"v=spf1 ip4:192.0.2.0/24 -all"')
    del dns_server.records[("1.0.0.127.in-addr.arpa.", "PTR")]
    dns_server.a("1.0.0.127.zen.spamhaus.org", "127.0.0.2")
    made = new_check(run_cli)
    data = order_mail(made["address"], subject="FREE gift for you: WIN now, urgent", text=False)
    send_through_appliance(relay, account, made["address"], data)

    shown = graded(app, made["token"])
    found = by_key(shown)
    statuses = {key: sorted(f["status"] for f in findings) for key, findings in found.items()}
    assert statuses["spf"] == ["fail"] and "add the appliance's address to the SPF record" in found["spf"][0]["fix"]
    assert statuses["dkim"] == ["fail", "pass"]  # the Ed25519 signature still verifies
    broken = next(f for f in found["dkim"] if f["status"] == "fail")
    assert "-rsa" in broken["summary"] and "publish the record exactly as the domain page shows" in broken["fix"]
    assert statuses["ptr"] == ["fail"] and "reverse DNS (PTR)" in found["ptr"][0]["fix"]
    listed = [f for f in found["blocklists"] if f["status"] == "fail"]
    assert len(listed) == 1 and "zen.spamhaus.org" in listed[0]["summary"]
    assert "check.spamhaus.org" in listed[0]["fix"]
    assert statuses["text-part"] == ["fail"] and "text/plain" in found["text-part"][0]["fix"]
    assert statuses["subject"] == ["warn"] and "free, urgent, win" in found["subject"][0]["summary"]
    assert "SpamAssassin scores it" in found["spamassassin"][0]["summary"]
    assert statuses["dmarc"] == ["pass"]  # aligned through the Ed25519 signature

    assert shown["grade"] == "F"
    first = shown["findings"][0]
    assert first["status"] == "fail" and first["key"] == "blocklists"  # the most important fix first
    text = run_cli("check", "show", made["token"]).output
    assert "grade F" in text and "fix: see why and ask for removal" in text


def test_mail_from_anywhere_is_graded_on_port_25(app, relay, dns_server, run_cli):
    """A message straight to port 25 (not through the appliance): no TLS, no DNS records at all."""
    made = new_check(run_cli)
    data = b"From: someone@elsewhere.test\r\nSubject: hi\r\n\r\nhello\r\n"
    code, text = send_direct(relay.smtp.mx_port, made["address"], data, "someone@elsewhere.test")
    assert code == 250 and "queued as" in text

    shown = show(run_cli, made["token"])
    found = by_key(shown)
    assert found["tls"][0]["status"] == "fail"
    assert found["spf"][0]["status"] == "fail" and "has no SPF record" in found["spf"][0]["summary"]
    assert found["dkim"][0]["summary"] == "the message has no DKIM signature"
    assert found["dmarc"][0]["status"] == "fail"
    assert found["message-id"][0]["status"] == "fail" and found["date"][0]["status"] == "fail"
    assert shown["grade"] == "F"


def test_a_check_address_takes_one_message_alone_and_expires(app, relay, run_cli, test_clock):
    made, unused = new_check(run_cli), new_check(run_cli)
    raw = mx_session(relay)
    assert raw.cmd("MAIL FROM:<someone@elsewhere.test>")[0] == 250
    assert raw.cmd(f"RCPT TO:<{made['address']}>")[0] == 250
    assert raw.cmd(f"RCPT TO:<{unused['address']}>") == (452, replies.CHECK_ALONE[4:])
    assert raw.cmd("DATA")[0] == 354
    raw.send(b"From: a@elsewhere.test\r\n\r\n\xff\xfe not even text\r\n.\r\n")  # bad input is still graded
    assert raw.reply()[0] == 250

    assert raw.cmd("MAIL FROM:<someone@elsewhere.test>")[0] == 250
    assert raw.cmd(f"RCPT TO:<{made['address']}>") == (550, replies.CHECK_USED[4:])
    forged = "check-" + "a" * 32 + "@relay.test"
    assert raw.cmd(f"RCPT TO:<{forged}>") == (550, replies.CHECK_UNKNOWN[4:])
    test_clock.advance(checker.EXPIRES.total_seconds() + 1)
    assert raw.cmd(f"RCPT TO:<{unused['address']}>") == (550, replies.CHECK_EXPIRED[4:])
    raw.cmd("QUIT")
    raw.close()
    assert show(run_cli, made["token"])["status"] == "graded"
    assert show(run_cli, unused["token"])["status"] == "expired"


@pytest.mark.skipif(not spamd.installed(), reason="Debian's spamd is not installed (scripts/test.sh installs it)")
def test_spamd_at_spamd_address_scores_the_message(app, relay, run_cli, tmp_path):
    server = spamd.Spamd(tmp_path / "spamd").start()
    try:
        app.config["SPAMD_ADDRESS"] = server.address
        made = new_check(run_cli)
        send_direct(relay.smtp.mx_port, made["address"], order_mail(made["address"], text=False))
    finally:
        server.stop()
    found = by_key(show(run_cli, made["token"]))["spamassassin"][0]
    assert "SpamAssassin scores it" in found["summary"] and "MIME_HTML_ONLY" in found["summary"]


def test_the_checker_says_so_when_spamassassin_is_missing(app, relay, run_cli, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no spamassassin command to be found
    made = new_check(run_cli)
    send_direct(relay.smtp.mx_port, made["address"], order_mail(made["address"]))
    found = by_key(show(run_cli, made["token"]))["spamassassin"][0]
    assert found["status"] == "warn"
    assert found["summary"] == "SpamAssassin is not installed here, so the spam score was not checked"
    assert "apt install spamassassin" in found["fix"]

    app.config["SPAMD_ADDRESS"] = "127.0.0.1:9"  # nothing listens there
    made = new_check(run_cli)
    send_direct(relay.smtp.mx_port, made["address"], order_mail(made["address"]))
    found = by_key(show(run_cli, made["token"]))["spamassassin"][0]
    assert found["status"] == "warn" and found["summary"].startswith("SpamAssassin could not be asked")


def test_broadcast_mail_through_a_broadcast_stream_has_one_click_unsubscribe(
    app, relay, account, dns_server, shop_domain, run_cli
):
    publish_shop(app, dns_server, shop_domain)
    app.config["TRACKING_URL"] = "https://relay.test"  # RFC 8058 wants an https link
    made = new_check(run_cli)
    data = order_mail(made["address"], subject="Our spring collection").replace(
        b"From:", b"X-Stream: broadcast\r\nFrom:", 1
    )
    send_through_appliance(relay, account, made["address"], data)
    found = by_key(graded(app, made["token"]))["list-unsubscribe"][0]
    assert (found["status"], found["summary"]) == ("pass", "List-Unsubscribe with one-click (RFC 8058)")


def test_a_newsletter_without_unsubscribe_of_pictures_linking_elsewhere(app, relay, run_cli):
    made = new_check(run_cli)
    html = (
        "<html><body><a href='https://bit.example/x1'><img src='https://cdn.example/sale.png'></a>"
        "<img src='https://cdn.example/more.png'><p>Spring sale</p>"
        "<p><a href='https://shop.test/unsubscribe'>unsubscribe</a></p></body></html>"
    )
    data = (
        b"From: news@shop.test\r\nSubject: Spring\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n"
        + html.encode()
        + b"\r\n"
    )
    send_direct(relay.smtp.mx_port, made["address"], data)
    found = by_key(show(run_cli, made["token"]))
    unsubscribe = found["list-unsubscribe"][0]
    assert unsubscribe["status"] == "fail" and "stream is broadcast" in unsubscribe["fix"]
    assert found["images"][0]["status"] == "fail" and "2 image(s)" in found["images"][0]["summary"]
    links = found["links"][0]
    assert links["status"] == "warn" and links["summary"].startswith("links go to bit.example, not to shop.test")
