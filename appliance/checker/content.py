"""The message itself, as spam filters read it: Message-ID, Date, a text part beside the HTML, the
share of images, where the links go, the subject's words, and List-Unsubscribe on broadcast mail."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import urllib.parse
from email.message import Message
from html.parser import HTMLParser

from .authentication import organizational_domain
from .findings import FAIL, PASS, WARN, Finding

# The knowledge base's advice (mySMTP): "Don't use spammy words in subject lines (free, win, urgent)".
SUBJECT_WORDS = ("free", "win", "urgent")
_WORDS = re.compile(r"\b(" + "|".join(SUBJECT_WORDS) + r")\b", re.I)
_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.I)
TEXT_PER_IMAGE = 400  # characters of text per image below which a message reads as "mostly pictures"
DATE_SKEW = dt.timedelta(hours=24)


class _Html(HTMLParser):
    """The visible text, the images and the link targets of an HTML part."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.images = 0
        self.links: list[str] = []
        self._hidden = 0  # inside <style> or <script>

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag in ("style", "script"):
            self._hidden += 1
        elif tag == "img":
            self.images += 1
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"])

    def handle_endtag(self, tag):
        if tag in ("style", "script") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True) or b""
    return payload.decode(part.get_content_charset() or "utf-8", "replace")


class Body:
    """The text and HTML parts of a message, read once."""

    def __init__(self, message: Message):
        self.text = ""
        self.html = ""
        self.has_text = self.has_html = False
        for part in message.walk():
            if part.is_multipart() or part.get_content_maintype() != "text" or part.get_filename():
                continue
            if part.get_content_subtype() == "plain":
                self.has_text, self.text = True, self.text + _decoded(part)
            elif part.get_content_subtype() == "html":
                self.has_html, self.html = True, self.html + _decoded(part)
        self.parsed = _Html()
        if self.html:
            self.parsed.feed(self.html)
            self.parsed.close()


def message_id_finding(message: Message) -> Finding:
    value = (message.get("Message-ID") or "").strip()
    if re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", value):
        return Finding("message-id", PASS, f"Message-ID {value}")
    return Finding(
        "message-id",
        FAIL,
        f"the Message-ID is {'missing' if not value else 'malformed: ' + value}",
        "let your app or mail library set Message-ID (<unique@your-domain>), or send through the appliance, "
        "which adds one",
        10,
    )


def date_finding(message: Message, now: dt.datetime) -> Finding:
    value = (message.get("Date") or "").strip()
    fix = "let your app or mail library set Date: from a clock that is right (NTP)"
    try:
        when = email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        when = None
    if when is None:
        return Finding(
            "date", FAIL, f"the Date: header is {'missing' if not value else 'unreadable: ' + value}", fix, 10
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    skew = abs(when.astimezone(dt.UTC).replace(tzinfo=None) - now)
    if skew > DATE_SKEW:
        return Finding("date", WARN, f"the Date: header ({value}) is more than a day off", fix, 10)
    return Finding("date", PASS, f"Date: {value}")


def text_part_finding(body: Body) -> Finding:
    if body.has_html and not body.has_text:
        return Finding(
            "text-part",
            FAIL,
            "the message is HTML only, with no plain-text part",
            "send multipart/alternative with a text/plain version of the HTML (most mail libraries make one "
            "when you give both)",
            10,
        )
    if not body.has_html and not body.has_text:
        return Finding("text-part", WARN, "the message has no text at all", "give the message a text part", 10)
    return Finding("text-part", PASS, "a plain-text part" + (" beside the HTML" if body.has_html else ""))


def images_finding(body: Body) -> Finding:
    images = body.parsed.images
    text = len(" ".join("".join(body.parsed.text).split()))
    if not images:
        return Finding("images", PASS, "no images")
    if text < TEXT_PER_IMAGE * images:
        status = FAIL if text < 40 else WARN
        return Finding(
            "images",
            status,
            f"{images} image(s) and {text} characters of text: filters read mostly-picture mail as spam",
            f"write at least {TEXT_PER_IMAGE} characters of text per image, and never put the message in a picture",
            5,
        )
    return Finding("images", PASS, f"{images} image(s) with {text} characters of text")


def links_finding(body: Body, from_domain: str) -> Finding:
    urls = body.parsed.links + _TEXT_URL.findall(body.text)
    hosts = set()
    for url in urls:
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme in ("http", "https") and parsed.hostname:
            hosts.add(parsed.hostname.lower())
    own = organizational_domain(from_domain) if from_domain else ""
    foreign = sorted(h for h in hosts if organizational_domain(h) != own)
    if not hosts:
        return Finding("links", PASS, "no links")
    if foreign:
        return Finding(
            "links",
            WARN,
            f"links go to {', '.join(foreign)}, not to {own or 'the From: domain'}",
            "link to your own domain (a link shortener or a tracking domain of someone else's looks like "
            "phishing); point TRACKING_URL at a name under your domain",
            5,
        )
    return Finding("links", PASS, f"every link goes to {own}")


def subject_finding(subject: str) -> Finding:
    words = sorted({w.lower() for w in _WORDS.findall(subject)})
    if words:
        return Finding(
            "subject",
            WARN,
            f"the subject uses words that filters count against you: {', '.join(words)}",
            'say what the message is ("Your order 1042 has shipped") instead of selling it',
            5,
        )
    return Finding("subject", PASS, f"subject: {subject}" if subject else "no spammy words in the subject")


def unsubscribe_finding(message: Message, body: Body) -> Finding:
    """RFC 8058 one-click unsubscribe on broadcast mail (Gmail and Yahoo require it for bulk senders)."""
    header = message.get("List-Unsubscribe") or ""
    post = (message.get("List-Unsubscribe-Post") or "").replace(" ", "").lower()
    broadcast = (
        bool(header)
        or bool(message.get("List-Id"))
        or (message.get("Precedence") or "").strip().lower() in ("bulk", "list")
        or "unsubscribe" in (body.text + body.html).lower()
    )
    if not broadcast:
        return Finding("list-unsubscribe", PASS, "transactional mail: no List-Unsubscribe needed")
    fix = (
        "send newsletters from an SMTP account whose stream is broadcast: the appliance adds List-Unsubscribe "
        "(https and mailto) and List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    )
    if not header:
        return Finding("list-unsubscribe", FAIL, "broadcast mail without a List-Unsubscribe header", fix, 15)
    if "<https://" not in header.lower():
        return Finding("list-unsubscribe", WARN, "List-Unsubscribe has no https link for one-click", fix, 15)
    if post != "list-unsubscribe=one-click":
        return Finding(
            "list-unsubscribe", FAIL, "List-Unsubscribe-Post: List-Unsubscribe=One-Click is missing", fix, 15
        )
    return Finding("list-unsubscribe", PASS, "List-Unsubscribe with one-click (RFC 8058)")
