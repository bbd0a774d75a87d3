"""Open and click tracking and one-click unsubscribe, over real sockets: SMTP in, a sink MX out, the
recipient's fetches through the real web server (waitress), DKIM checked with dkimpy."""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
import smtplib
import threading
import urllib.error
import urllib.parse
import urllib.request

import dkim as dkimpy
import pytest

from appliance import db, dkim, dns, intake
from appliance.db import database
from appliance.models import Message, Suppression
from tests.support.mail import send
from tests.support.process import cli_json
from tests.support.tracking import CLICK, HTML, PIXEL, TEXT, events_of, fetch, newsletter, parts, unsubscribe_links
from tests.support.wait import wait_for

ORDER = b"From: news@shop.test\r\nTo: bob@example.test\r\nSubject: Order 1\r\n\r\nYour order is on its way.\r\n"


def flipped(value: str, index: int) -> str:
    """``value`` with the character at ``index`` changed (a tampered token)."""
    return value[:index] + ("b" if value[index] != "b" else "c") + value[index + 1 :]


def through_test_dns(app):
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        found = dns.txt_records(app.config, name.decode().rstrip("."))
        return found[0].encode() if found else None

    return lookup


def test_a_broadcast_message_reaches_the_sink_with_pixel_rewritten_links_and_signed_unsubscribe_headers(
    app, relay, account, sink, web
):
    send(relay, account, newsletter())
    (received,) = wait_for(lambda: sink.messages)
    copy = email.message_from_bytes(received.data, policy=email.policy.default)
    assert copy["X-Stream"] is None  # read and removed by the relay
    https, mailto = unsubscribe_links(received.data)
    assert https.startswith(f"{web}/t/u/") and re.fullmatch(r"mailto:unsubscribe\+[a-z2-7]{32}@relay\.test", mailto)
    assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received.queue_id.lower() not in copy["List-Unsubscribe"].lower()  # the token names no row

    verifier = dkimpy.DKIM(received.data)
    assert verifier.verify(idx=0, dnsfunc=through_test_dns(app))
    signed = dkim.tags(copy.get_all("DKIM-Signature")[0])["h"].lower().split(":")
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed

    text = parts(received.data)
    html_part = text["html"]
    clicks = CLICK.findall(html_part)
    assert [urllib.parse.unquote(u) for _, u in clicks] == ["https://shop.test/sale?a=1&b=2"]
    for kept in (
        'href="mailto:help@shop.test"',
        'href="tel:+4912345"',
        'href="#top"',
        'href="https://shop.test/unsubscribe?u=7"',
    ):
        assert kept in html_part
    (pixel,) = PIXEL.findall(html_part)
    assert html_part.index(pixel) < html_part.index("</body>")
    assert [urllib.parse.unquote(u) for _, u in CLICK.findall(text["plain"])] == ["https://shop.test/sale?a=1&b=2"]
    assert "mailto:help@shop.test" in text["plain"]
    attachment = next(copy.iter_attachments())
    assert attachment.get_content() == b"%PDF-1.4 not really\n"

    assert fetch(pixel)[:1] == (200,)
    (opened,) = wait_for(lambda: events_of(app, "opened"))
    assert opened.recipient == "alice@example.test"
    assert json.loads(opened.details)["ip"] == "127.0.0.0/24"  # truncated

    link = CLICK.search(html_part).group(0)
    status, headers, _ = fetch(html.unescape(link))
    assert status == 302 and headers["Location"] == "https://shop.test/sale?a=1&b=2"
    (clicked,) = wait_for(lambda: events_of(app, "clicked"))
    assert json.loads(clicked.details)["url"] == "https://shop.test/sale?a=1&b=2"


def test_a_tampered_token_or_a_url_not_in_the_message_gets_404_and_records_nothing(app, relay, account, sink, web):
    send(relay, account, newsletter())
    (received,) = wait_for(lambda: sink.messages)
    html_part = parts(received.data)["html"]
    pixel = PIXEL.search(html_part).group(1)
    token, quoted = CLICK.search(html_part).groups()
    forged = flipped(token, 20)
    pixel_token = pixel.rsplit("/", 1)[1].removesuffix(".gif")
    assert fetch(pixel.replace(pixel_token, flipped(pixel_token, 3)))[0] == 404
    assert fetch(f"{web}/t/o/{token}.gif")[0] == 404  # a click's token is no open's
    assert fetch(f"{web}/t/c/{forged}?u={quoted}")[0] == 404
    assert fetch(f"{web}/t/c/{token}?u=" + urllib.parse.quote("https://evil.test/", safe=""))[0] == 404
    assert fetch(f"{web}/t/c/{token}")[0] == 404
    assert fetch(f"{web}/t/u/{forged}", "POST", b"List-Unsubscribe=One-Click")[0] == 404
    assert events_of(app, "opened") == events_of(app, "clicked") == events_of(app, "unsubscribed") == []
    with app.app_context():
        assert Suppression.select().count() == 0


def test_the_pixel_and_a_link_answer_while_the_writer_is_held_and_a_250_still_waits_for_its_commit(
    app, relay, account, sink, web, monkeypatch
):
    """Opens and clicks are handed to the writer and answered at once (no promise rides on them);
    accepted mail is still answered 250 only once its transaction has committed."""
    send(relay, account, newsletter())
    (received,) = wait_for(lambda: sink.messages)
    html_part = parts(received.data)["html"]
    pixel, link = PIXEL.search(html_part).group(1), html.unescape(CLICK.search(html_part).group(0))
    writer = relay.smtp.service.committer.writer
    session = relay.smtp.submission()
    session.login(*account)  # the login is recorded through the writer too: before it is held
    held, release = threading.Event(), threading.Event()
    writer.submit(db.run_each, lambda: held.set() or release.wait(30))  # the writer, inside a transaction
    assert held.wait(10)
    submitted = threading.Event()
    real_submit = writer.submit

    def submit(many, *args, **kwargs):
        future = real_submit(many, *args, **kwargs)
        if many is intake.store_many:
            submitted.set()
        return future

    monkeypatch.setattr(writer, "submit", submit)
    stored_at_250 = []

    def order_mail() -> None:
        with session:
            session.sendmail("news@shop.test", ["bob@example.test"], ORDER)
        with app.app_context():
            database.connect(reuse_if_open=True)
            stored_at_250.append(Message.select().count())

    try:
        assert fetch(pixel)[0] == 200 and fetch(link)[0] == 302  # answered while nothing can commit
        assert events_of(app, "opened") == events_of(app, "clicked") == []
        client = threading.Thread(target=order_mail)
        client.start()
        assert submitted.wait(10)  # the order mail waits for the writer
        client.join(timeout=1)  # time for a 250 given too early
        assert client.is_alive() and stored_at_250 == []
    finally:
        release.set()
    client.join(timeout=30)
    assert stored_at_250 == [2]  # at its 250 the order mail was committed
    assert len(wait_for(lambda: events_of(app, "opened"))) == 1
    (clicked,) = wait_for(lambda: events_of(app, "clicked"))
    assert json.loads(clicked.details)["url"] == "https://shop.test/sale?a=1&b=2"


def test_a_link_of_a_deleted_message_still_leads_to_its_url_and_records_nothing(app, relay, account, sink, web):
    send(relay, account, newsletter())
    (received,) = wait_for(lambda: sink.messages)
    html_part = parts(received.data)["html"]
    with app.app_context(), db.atomic_write():
        Message.delete().where(Message.id == received.queue_id).execute()
    status, headers, _ = fetch(html.unescape(CLICK.search(html_part).group(0)))
    assert status == 302 and headers["Location"] == "https://shop.test/sale?a=1&b=2"
    assert fetch(PIXEL.search(html_part).group(1))[0] == 200
    send(relay, account, newsletter(), to="carol@example.test")  # a commit after the writer's jobs
    wait_for(lambda: len(sink.messages) == 2)
    assert events_of(app, "opened") == events_of(app, "clicked") == []


def test_one_click_unsubscribe_stops_broadcast_mail_of_that_domain_only_and_transactional_mail_still_arrives(
    app, relay, account, sink, web, run_cli
):
    send(relay, account, newsletter())
    (first,) = wait_for(lambda: sink.messages)
    url, _ = unsubscribe_links(first.data)

    status, _, page = fetch(url)  # a link scanner, or the reader: a page with a button, nothing changed
    assert status == 200 and b'<button type="submit" id="unsubscribe">' in page
    with app.app_context():
        assert Suppression.select().count() == 0

    status, _, page = fetch(url, "POST", b"List-Unsubscribe=One-Click")
    assert status == 200 and b"You are unsubscribed" in page
    with app.app_context():
        (row,) = Suppression.select()
    assert (row.address, row.stream, row.domain, row.source) == (
        "alice@example.test",
        "broadcast",
        "shop.test",
        "unsubscribe",
    )
    (event,) = events_of(app, "unsubscribed")
    assert json.loads(event.details) == {"via": "one-click"}

    send(relay, account, newsletter())  # broadcast again: recorded as suppressed, not sent
    send(relay, account, newsletter(stream="transactional"))  # an order mail: still delivered

    def statuses():
        return sorted(m["status"] for m in cli_json(run_cli("messages", "list", "--json")))

    assert wait_for(lambda: statuses() == ["delivered", "delivered", "suppressed"])
    assert len(sink.messages) == 2
    transactional = sink.messages[1]
    assert b"List-Unsubscribe" not in transactional.data and b"/t/o/" not in transactional.data


def test_the_mailto_unsubscribe_on_port_25_unsubscribes_and_a_forged_one_is_refused(app, relay, account, sink):
    send(relay, account, newsletter())
    (first,) = wait_for(lambda: sink.messages)
    address = unsubscribe_links(first.data)[1].removeprefix("mailto:")
    with smtplib.SMTP("127.0.0.1", relay.smtp.mx_port, local_hostname="mx.example.test", timeout=10) as mx:
        mx.ehlo()
        mx.docmd("MAIL FROM:<alice@example.test>")
        forged = flipped(address, len("unsubscribe+") + 20)
        assert mx.docmd(f"RCPT TO:<{forged}>") == (550, b"5.1.1 No such unsubscribe address")
        mx.rset()
        mx.sendmail("alice@example.test", [address], b"From: alice@example.test\r\nSubject: unsubscribe\r\n\r\n\r\n")
    with app.app_context():
        (row,) = Suppression.select()
    assert (row.stream, row.domain, row.source) == ("broadcast", "shop.test", "unsubscribe")
    assert json.loads(events_of(app, "unsubscribed")[0].details) == {"via": "mailto"}


@pytest.mark.parametrize("cte", ["quoted-printable", "base64"])
def test_quoted_printable_and_base64_html_survive_intact_apart_from_the_rewrite(app, relay, account, sink, web, cte):
    send(relay, account, newsletter(cte=cte))
    (received,) = wait_for(lambda: sink.messages)
    copy = email.message_from_bytes(received.data, policy=email.policy.default)
    html_part = next(p for p in copy.walk() if p.get_content_type() == "text/html")
    assert html_part["Content-Transfer-Encoding"] == cte
    restored = PIXEL.sub("", html_part.get_content().replace("\r\n", "\n"))
    restored = CLICK.sub(lambda m: html.escape(urllib.parse.unquote(m.group(2))), restored)
    assert restored.rstrip("\n") == HTML
    plain = next(p for p in copy.walk() if p.get_content_type() == "text/plain")
    restored = CLICK.sub(lambda m: urllib.parse.unquote(m.group(2)), plain.get_content().replace("\r\n", "\n"))
    assert restored == TEXT


def payloads(data: bytes) -> list[bytes]:
    """The payload bytes of each text part, as they stand in ``data``."""
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    texts = [p for p in parsed.walk() if p.get_content_maintype() == "text"]
    # 8bit: the bytes themselves (the parser's text of them is decoded); else the ASCII payload
    return [
        p.get_payload(decode=True) if p["Content-Transfer-Encoding"] == "8bit" else p.get_payload().encode()
        for p in texts
    ]


@pytest.mark.parametrize("cte", ["quoted-printable", "base64", "8bit"])
def test_the_copy_is_the_message_byte_for_byte_but_for_the_rewritten_payloads(app, cte):
    """Each rewritten part's payload is spliced into the message as it came: the headers of the
    parts, the attachment and the boundaries keep their bytes (nothing is written out anew)."""
    from appliance import tracking

    data = newsletter(cte=cte).as_bytes(policy=email.policy.SMTP)
    long_field = b"Content-Type: application/pdf; x-note=" + b"kept-as-it-came-" * 6 + b"\r\n"  # one line of 135
    data = data.replace(b"Content-Type: application/pdf\r\n", long_field)
    copy = tracking.personalize(app.config, data, tracking.new_id(), stream="transactional", opens=True, clicks=True)
    assert copy.count(b"\n") == copy.count(b"\r\n")  # every line break CRLF, the new ones too
    before, after = payloads(data), payloads(copy)
    assert len(before) == len(after) == 2 and all(b != a for b, a in zip(before, after, strict=True))
    for old, new in zip(before, after, strict=True):
        copy = copy.replace(new, old, 1)
    assert copy == data


def test_a_quoted_printable_html_part_of_one_line_gets_crlf_soft_line_breaks(app):
    """The codec breaks lines with bare LF when the text has no line break of its own to copy."""
    import quopri

    from appliance import tracking

    one_line = '<html><body><p><a href="https://shop.test/sale">Sale</a> ' + "words " * 100 + "</p></body></html>"
    encoded = quopri.encodestring(one_line.encode()).replace(b"=\n", b"=\r\n")
    data = (
        b"From: news@shop.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + encoded
        + b"\r\n--b--\r\n"
    )
    copy = tracking.personalize(app.config, data, tracking.new_id(), stream="transactional", opens=True, clicks=True)
    assert copy.count(b"\n") == copy.count(b"\r\n")
    html_part = parts(copy)["html"]
    assert PIXEL.search(html_part) and CLICK.search(html_part) and "words " * 100 in html_part


def test_transactional_mail_is_not_tracked_unless_its_headers_ask_and_bad_values_are_refused(app, relay, account, sink):
    send(relay, account, newsletter(stream=None))
    send(relay, account, newsletter(stream=None, X_Track_Opens="yes"))
    wait_for(lambda: len(sink.messages) == 2)
    plain, opened = sorted(sink.messages, key=lambda r: b"/t/o/" in r.data)
    assert b"/t/o/" not in plain.data and b"/t/c/" not in plain.data and b"List-Unsubscribe" not in plain.data
    assert b"X-Track-Opens" not in opened.data
    assert PIXEL.search(parts(opened.data)["html"]) and not CLICK.search(parts(opened.data)["html"])
    with relay.smtp.submission() as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.login(*account)
        client.sendmail(
            "news@shop.test", ["alice@example.test"], newsletter(stream="marketing").as_bytes(policy=email.policy.SMTP)
        )
    assert refused.value.smtp_code == 554
    assert b"X-Stream must be transactional or broadcast" in refused.value.smtp_error


def test_an_apps_own_list_unsubscribe_is_left_as_it_is(app, relay, account, sink):
    send(relay, account, newsletter(List_Unsubscribe="<https://shop.test/leave?id=9>"))
    (received,) = wait_for(lambda: sink.messages)
    copy = email.message_from_bytes(received.data)
    assert copy.get_all("List-Unsubscribe") == ["<https://shop.test/leave?id=9>"]
    assert 'href="https://shop.test/unsubscribe?u=7"' in parts(received.data)["html"]


def test_messages_show_json_and_the_message_page_list_opens_and_clicks(app, relay, account, sink, web, run_cli):
    from tests.web.conftest import ADMIN, Dashboard

    send(relay, account, newsletter())
    (received,) = wait_for(lambda: sink.messages)
    html_part = parts(received.data)["html"]
    fetch(PIXEL.search(html_part).group(1))
    fetch(html.unescape(CLICK.search(html_part).group(0)))
    wait_for(lambda: events_of(app, "clicked"))
    shown = cli_json(run_cli("messages", "show", received.queue_id, "--json"))
    mine = [e for e in shown["events"] if e["type"] in ("opened", "clicked")]
    assert [(e["type"], e["recipient"], e["machine"], e.get("url")) for e in mine] == [
        ("opened", "alice@example.test", False, None),
        ("clicked", "alice@example.test", False, "https://shop.test/sale?a=1&b=2"),
    ]
    assert all(e["at"] for e in mine)

    from appliance import admins

    with app.app_context():
        admins.create(*ADMIN, role="admin")
    dashboard = Dashboard(app.test_client())
    dashboard.login(*ADMIN)
    page = dashboard.get(f"/messages/{received.queue_id}").get_data(as_text=True)
    events_part = page[page.index('id="events"') :]
    assert "clicked" in events_part and "https://shop.test/sale?a=1&amp;b=2" in events_part
    assert "opened" in events_part


def test_the_stream_is_stored_shown_and_filtered_in_the_message_log_and_the_cli(app, relay, account, sink, run_cli):
    from appliance import admins
    from tests.web.conftest import ADMIN, Dashboard

    send(relay, account, newsletter())
    send(relay, account, newsletter(stream=None))
    wait_for(lambda: len(sink.messages) == 2)
    broadcast = cli_json(run_cli("messages", "list", "--stream", "broadcast", "--json"))
    assert [(m["stream"], m["track_opens"], m["track_clicks"]) for m in broadcast] == [("broadcast", True, True)]
    transactional = cli_json(run_cli("messages", "list", "--stream", "transactional", "--json"))
    assert [m["stream"] for m in transactional] == ["transactional"]
    assert run_cli("messages", "list", "--stream", "marketing").exit_code != 0

    with app.app_context():
        admins.create(*ADMIN, role="admin")
    dashboard = Dashboard(app.test_client())
    dashboard.login(*ADMIN)
    page = dashboard.get("/messages/?stream=broadcast").get_data(as_text=True)
    assert page.count("<td>broadcast</td>") == 1 and "<td>transactional</td>" not in page
    refused = dashboard.get("/messages/?stream=marketing").get_data(as_text=True)
    assert "Pick transactional or broadcast." in refused
    shown = dashboard.get(f"/messages/{broadcast[0]['id']}").get_data(as_text=True)
    assert "broadcast (tracking opens and clicks)" in shown


def test_a_scanner_agent_and_every_link_clicked_at_once_are_marked_machine_and_a_reader_is_not(
    app, relay, account, sink, web, test_clock
):
    msg = newsletter()
    msg.get_body(("html",)).set_content(
        '<html><body><a href="https://shop.test/one">1</a> <a href="https://shop.test/two">2</a></body></html>',
        subtype="html",
    )
    send(relay, account, msg)
    (received,) = wait_for(lambda: sink.messages)
    html_part = parts(received.data)["html"]
    one, two = (html.unescape(m.group(0)) for m in CLICK.finditer(html_part))
    pixel = PIXEL.search(html_part).group(1)

    def flags(type_, count):
        """The machine flags of the events of ``type_`` once ``count`` are recorded (after the answers)."""
        found = wait_for(lambda: found if len(found := events_of(app, type_)) >= count else [])
        return [json.loads(e.details)["machine"] for e in found]

    request = urllib.request.Request(pixel, headers={"User-Agent": "Mimecast-Scanner/2.0"})
    with urllib.request.urlopen(request, timeout=10):
        pass
    fetch(pixel)  # the reader
    assert flags("opened", 2) == [True, False]

    fetch(one)
    fetch(two)  # the same moment (the test clock stands still): a scanner following every link
    assert flags("clicked", 2) == [True, True]
    test_clock.advance(60)
    fetch(one)  # a minute later: the reader
    assert flags("clicked", 3) == [True, True, False]


def test_an_open_from_apples_proxy_network_right_after_delivery_is_a_machine_open():
    from datetime import datetime, timedelta

    from appliance import engagement

    delivered = datetime(2026, 1, 5, 12, 0, 0)
    reader = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
    assert engagement.machine_open("17.58.100.7", reader, delivered, delivered + timedelta(seconds=20))
    assert not engagement.machine_open("17.58.100.7", reader, delivered, delivered + timedelta(hours=3))
    assert not engagement.machine_open("192.0.2.10", reader, delivered, delivered + timedelta(seconds=20))
    assert engagement.machine_open("192.0.2.10", "", delivered, delivered + timedelta(hours=3))


def test_an_account_created_for_the_broadcast_stream_sends_broadcast_mail_and_an_edit_changes_it(
    app, relay, sink, run_cli
):
    created = cli_json(run_cli("accounts", "create", "News", "--stream", "broadcast", "--no-track-clicks", "--json"))
    assert (created["stream"], created["track_opens"], created["track_clicks"]) == ("broadcast", None, False)
    account = (created["username"], created["password"])
    send(relay, account, newsletter(stream=None))
    (received,) = wait_for(lambda: sink.messages)
    assert "List-Unsubscribe-Post" in email.message_from_bytes(received.data)
    assert PIXEL.search(parts(received.data)["html"]) and not CLICK.search(parts(received.data)["html"])

    edited = cli_json(run_cli("accounts", "edit", str(created["id"]), "--stream", "transactional", "--json"))
    assert edited["stream"] == "transactional"
    send(relay, account, newsletter(stream=None))
    wait_for(lambda: len(sink.messages) == 2)
    assert b"List-Unsubscribe" not in sink.messages[1].data and b"/t/o/" not in sink.messages[1].data
    refused = run_cli("accounts", "create", "Bad", "--stream", "marketing")
    assert refused.exit_code != 0 and "marketing" in refused.output
