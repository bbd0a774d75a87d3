"""A message's content for admins: its text, its HTML in a sandboxed frame that loads nothing remote,
its attachments and its raw source; viewers see none of it."""

from __future__ import annotations

import http.server
import threading
from email.message import EmailMessage

import pytest

from appliance.models import MessageBody

from .conftest import ADMIN, CHROMIUM, shot, sign_in

PIXEL_PATH = "/pixel.gif"


def newsletter(pixel_url: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "news@shop.test"
    msg["To"] = "bob@example.com"
    msg["Subject"] = "Autumn sale"
    msg.set_content("Caf\u00e9 sale: 20% off until Sunday.\n")
    msg.add_alternative(
        f'<html><body><h1 id="headline">Autumn sale</h1><img src="{pixel_url}" alt="">'
        '<script>document.title = "script ran"</script></body></html>',
        subtype="html",
    )
    msg.add_attachment(b"%PDF-1.4 invoice\n", maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg.as_bytes()


def test_an_admin_reads_the_text_the_attachments_and_the_raw_source(client, store_message):
    raw = newsletter("https://tracker.example/p.gif")
    message_id = store_message(raw=raw)
    assert f"/messages/{message_id}/content" in client.get(f"/messages/{message_id}").get_data(as_text=True)

    page = client.get(f"/messages/{message_id}/content").get_data(as_text=True)
    assert "Caf\u00e9 sale: 20% off until Sunday." in page
    assert "<td>invoice.pdf</td><td><code>application/pdf</code></td><td>17 Bytes</td>" in page
    assert '<iframe class="message-html" id="html-part" sandbox referrerpolicy="no-referrer"' in page
    assert "Subject: Autumn sale" in page and "&lt;script&gt;" in page  # the source, escaped

    download = client.get(f"/messages/{message_id}/raw")
    assert download.data == bytes(MessageBody.get_by_id(message_id).data)
    assert download.headers["Content-Disposition"] == f'attachment; filename="{message_id}.eml"'
    assert download.mimetype == "message/rfc822"


def test_the_html_part_is_served_with_a_policy_that_runs_nothing_and_loads_nothing_remote(client, store_message):
    message_id = store_message(raw=newsletter("https://tracker.example/p.gif"))
    part = client.get(f"/messages/{message_id}/content.html")
    assert part.status_code == 200 and b'<h1 id="headline">Autumn sale</h1>' in part.data
    policy = part.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "img-src data:" in policy and "sandbox" in policy.split("; ")
    assert part.headers["X-Frame-Options"] == "SAMEORIGIN"
    # Every other page keeps the dashboard's own policy and may not be framed.
    other = client.get(f"/messages/{message_id}/content")
    assert "frame-ancestors 'none'" in other.headers["Content-Security-Policy"]
    assert other.headers["X-Frame-Options"] == "DENY"


def test_a_viewer_gets_no_content_link_and_no_content(viewer_client, store_message):
    message_id = store_message(raw=newsletter("https://tracker.example/p.gif"))
    assert "/content" not in viewer_client.get(f"/messages/{message_id}").get_data(as_text=True)
    for path in ("content", "content.html", "raw"):
        assert viewer_client.get(f"/messages/{message_id}/{path}").status_code == 403


def test_a_purged_body_is_said_and_a_message_without_html_has_no_frame(client, store_message):
    plain = store_message(subject="Plain")
    page = client.get(f"/messages/{plain}/content").get_data(as_text=True)
    assert "No HTML part." in page and "<iframe" not in page
    assert client.get(f"/messages/{plain}/content.html").status_code == 404

    MessageBody.delete().where(MessageBody.message == plain).execute()
    page = client.get(f"/messages/{plain}/content").get_data(as_text=True)
    assert 'id="body-purged"' in page and "days after they were received" in page
    assert client.get(f"/messages/{plain}/raw").status_code == 404


def test_a_part_in_an_unknown_charset_still_shows_the_raw_source(client, store_message):
    raw = (
        b"From: shop@shop.test\r\nSubject: Odd\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nhello odd\r\n"
    )
    message_id = store_message(raw=raw)
    page = client.get(f"/messages/{message_id}/content")
    assert page.status_code == 200 and "hello odd" in page.get_data(as_text=True)


class _Pixel(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def pixel_server():
    """A remote image's server on loopback that counts the requests it gets."""
    _Pixel.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pixel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}{PIXEL_PATH}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")
def test_in_the_browser_the_html_shows_but_its_script_does_not_run_and_its_pixel_is_not_fetched(
    app, page, admin, store_message, pixel_server
):
    message_id = store_message(raw=newsletter(pixel_server))
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")
    page.goto(f"/messages/{message_id}")
    page.click("#content-link")
    frame = page.frame_locator("#html-part")
    assert frame.locator("#headline").inner_text() == "Autumn sale"
    assert page.title() != "script ran"
    page.wait_for_load_state("networkidle")
    shot(page, "message-content")
    assert _Pixel.hits == []  # the remote image was blocked: no one learns the admin opened it
    assert frame.locator("html").evaluate("() => document.title") == ""  # its own script did not run either
