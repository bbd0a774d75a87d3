"""Tracked mail in the tests: a newsletter with links, its tracked parts, fetching its links, its events."""

from __future__ import annotations

import email
import email.policy
import re
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage

from appliance.db import database
from appliance.models import Event

HTML = (
    "<html><body><h1>Caf\u00e9 news \u2013 \u00e9t\u00e9</h1>"
    '<p><a href="https://shop.test/sale?a=1&amp;b=2" class="cta">Sale</a> '
    '<a href="mailto:help@shop.test">Write</a> <a href="tel:+4912345">Call</a> '
    '<a href="#top">Top</a> <a href="https://shop.test/unsubscribe?u=7">Leave</a></p></body></html>'
)


TEXT = "Caf\u00e9 news: https://shop.test/sale?a=1&b=2.\nWrite to mailto:help@shop.test\n"


CLICK = re.compile(r"http://127\.0\.0\.1:\d+/t/c/([a-z2-7]{32})\?u=([^\"\s<>]*[^\"\s<>.])")


PIXEL = re.compile(r'<img src="(http://127\.0\.0\.1:\d+/t/o/[a-z2-7]{32}\.gif)"[^>]*>')


def parts(data: bytes) -> dict[str, str]:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    found = {}
    for part in parsed.walk():
        if part.get_content_type() in ("text/plain", "text/html") and not part.is_attachment():
            found[part.get_content_subtype()] = part.get_content()
    return found


def fetch(url: str, method: str = "GET", data: bytes | None = None):
    """Fetch without following redirects; return (status, headers, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=data, method=method, headers={"User-Agent": "test-reader/1.0"})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def unsubscribe_links(data: bytes) -> list[str]:
    """The URLs of a message's List-Unsubscribe field: the https one, then the mailto."""
    field = email.message_from_bytes(data, policy=email.policy.default)["List-Unsubscribe"]
    return [u.strip(" <>") for u in str(field).split(",")]


def newsletter(*, stream: str | None = "broadcast", cte: str = "quoted-printable", **headers) -> EmailMessage:
    """A message with a text part, an HTML part in ``cte`` and a PDF attachment."""
    msg = EmailMessage()
    msg["From"] = "Shop <news@shop.test>"
    msg["To"] = "alice@example.test"
    msg["Subject"] = "Caf\u00e9 news"
    if stream:
        msg["X-Stream"] = stream
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(TEXT, cte="8bit")
    msg.add_alternative(HTML, subtype="html", cte=cte)
    msg.add_attachment(b"%PDF-1.4 not really\n", maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg


def events_of(app, type_: str) -> list[Event]:
    with app.app_context():
        database.connect(reuse_if_open=True)
        return list(Event.select().where(Event.type == type_))
