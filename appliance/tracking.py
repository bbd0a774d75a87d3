"""Open and click tracking and one-click unsubscribe (RFC 8058): signed tokens, and each recipient's copy
of a message with its pixel, its rewritten links and its List-Unsubscribe fields.

A token is a delivery's random tracking id and an HMAC of it (with what the link does and, for a
click, the URL it leads to) under SECRET_KEY: it names no database row, and a changed character, a
URL of someone else's or a token of another kind fails. The copy is made with the standard email
package (every transfer encoding and charset), before DKIM signing, so the signature covers it.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hmac
import html
import io
import quopri
import re
import secrets
import urllib.parse
from email.generator import BytesGenerator
from email.message import Message
from html.parser import HTMLParser

from . import message_bytes

OPEN, CLICK, UNSUBSCRIBE = "o", "c", "u"  # what a token lets its link do
CHECK = "k"  # a check address of the deliverability checker, and its result page (appliance/checker/)
_PART = 16  # characters of the tracking id, and of the signature (80 bits each, base32)
_TOKEN = re.compile(rf"[a-z2-7]{{{2 * _PART}}}")
UNSUBSCRIBE_LOCAL = "unsubscribe"  # mailto:unsubscribe+TOKEN@HOSTNAME, read on port 25
MAX_LINE = 998  # RFC 5322 §2.1.1; a rewritten 7bit or 8bit part past it is re-encoded quoted-printable
_COMPAT = email.policy.compat32.clone(linesep="\r\n")
_ENCODINGS = ("7bit", "8bit", "binary", "quoted-printable", "base64")  # the transfer encodings rewritten
# Links in plain text: an http(s) URL up to white space or a character that cannot end one in prose.
_TEXT_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")
# Links never rewritten: other schemes (mailto:, tel:), anchors and relative links are not
# http(s); unsubscribe links are the recipient's way out and must work without us.
_UNSUBSCRIBE_WORDS = ("unsubscribe", "opt-out", "optout")


def new_id() -> str:
    """A fresh tracking id: 80 random bits, lower-case base32."""
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()


def _signature(settings: dict, kind: str, tracking_id: str, url: str) -> str:
    message = f"tracking:{kind}:{tracking_id}:{url}".encode()
    digest = hmac.digest(settings["SECRET_KEY"].encode(), message, "sha256")
    return base64.b32encode(digest[:10]).decode().lower()


def token(settings: dict, kind: str, tracking_id: str, url: str = "") -> str:
    return tracking_id + _signature(settings, kind, tracking_id, url)


def verify(settings: dict, kind: str, value: str, url: str = "") -> str | None:
    """The tracking id of a token of ``kind`` (for a click: leading to ``url``), or None."""
    value = value.lower()
    if not _TOKEN.fullmatch(value):
        return None
    tracking_id, signature = value[:_PART], value[_PART:]
    return tracking_id if hmac.compare_digest(signature, _signature(settings, kind, tracking_id, url)) else None


def base_url(settings: dict) -> str:
    """Where the tracking links point: TRACKING_URL, else PUBLIC_URL, else the dashboard address."""
    return (settings["TRACKING_URL"] or settings["PUBLIC_URL"]).rstrip("/") or f"http://{settings['WEB_LISTEN']}"


def open_url(settings: dict, tracking_id: str) -> str:
    return f"{base_url(settings)}/t/o/{token(settings, OPEN, tracking_id)}.gif"


def click_url(settings: dict, tracking_id: str, url: str) -> str:
    quoted = urllib.parse.quote(url, safe="")
    return f"{base_url(settings)}/t/c/{token(settings, CLICK, tracking_id, url)}?u={quoted}"


def unsubscribe_url(settings: dict, tracking_id: str) -> str:
    return f"{base_url(settings)}/t/u/{token(settings, UNSUBSCRIBE, tracking_id)}"


def unsubscribe_address(settings: dict, tracking_id: str) -> str:
    return f"{UNSUBSCRIBE_LOCAL}+{token(settings, UNSUBSCRIBE, tracking_id)}@{settings['HOSTNAME']}"


def unsubscribe_token(settings: dict, address: str) -> str | None:
    """The token of an unsubscribe address of ours (``unsubscribe+TOKEN@HOSTNAME``), or None
    when ``address`` is not one; whether the token is good is ``verify``'s to say."""
    local, _, domain = address.rpartition("@")
    prefix, plus, value = local.partition("+")
    if not plus or prefix.lower() != UNSUBSCRIBE_LOCAL or domain.lower().rstrip(".") != settings["HOSTNAME"].lower():
        return None
    return value


# -- each recipient's copy ---------------------------------------------------------------------
def personalize(settings: dict, data: bytes, tracking_id: str, *, stream: str, opens: bool, clicks: bool) -> bytes:
    """The copy of a stored message for the recipient of ``tracking_id``: the open pixel in its HTML
    (``opens``), its links through the click endpoint (``clicks``), and for broadcast mail the
    List-Unsubscribe fields (unless the app set its own List-Unsubscribe)."""
    fields, body_start = message_bytes.parse_header_block(data)
    names = {name.lower(): value for name, value in fields}
    own_unsubscribe = names.get("list-unsubscribe", "")
    out = data
    if opens or clicks:
        out = _rewritten(settings, data, body_start, tracking_id, opens, clicks, own_unsubscribe)
    if stream == "broadcast" and "list-unsubscribe" not in names:
        added = (
            f"List-Unsubscribe: <{unsubscribe_url(settings, tracking_id)}>,\r\n"
            f" <mailto:{unsubscribe_address(settings, tracking_id)}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        )
        out = added.encode() + out
    return out


def _rewritten(
    settings: dict, data: bytes, body_start: int, tracking_id: str, opens: bool, clicks: bool, own_unsubscribe: str
) -> bytes:
    message = email.message_from_bytes(data, policy=_COMPAT)

    def link(url: str) -> str | None:
        if not clicks or not _trackable(url, own_unsubscribe):
            return None
        return click_url(settings, tracking_id, url)

    changed = []  # (part, the multipart it is in, (its new transfer encoding, its new payload))
    for part, parent in _text_parts(message, None):
        subtype = part.get_content_subtype()
        text = _decoded(part)
        if text is None:
            continue
        if subtype == "html":
            new = _rewrite_html(text, link, open_url(settings, tracking_id) if opens else None)
        elif clicks:
            new = _TEXT_URL.sub(lambda m: link(m.group(0)) or m.group(0), text)
        else:
            continue
        if new == text:
            continue
        encoded = _encoded(part, new)
        if encoded is not None:
            changed.append((part, parent, encoded))
    if not changed:
        return data
    spliced = _spliced(data, body_start, changed)
    if spliced is not None:
        return spliced
    for part, _, (encoding, payload) in changed:  # a part whose place was not found: the whole tree written out
        if encoding != (part.get("Content-Transfer-Encoding") or "7bit").strip().lower():
            del part["Content-Transfer-Encoding"]
            part["Content-Transfer-Encoding"] = encoding
        part.set_payload(payload.decode("ascii", "surrogateescape"))
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_COMPAT).flatten(message)
    generated = out.getvalue()
    if message.is_multipart():  # the header section as it came (the generator would refold it)
        return data[:body_start] + generated[generated.index(b"\r\n\r\n") + 4 :]
    return generated  # a single part: its Content-Transfer-Encoding may have changed


def _spliced(data: bytes, body_start: int, changed: list) -> bytes | None:
    """``data`` with the payload of each changed part replaced in place (every other byte as it came),
    or None when a part's payload cannot be placed for certain or its transfer encoding changed.

    The parser gives each part's payload as it stood in the message: after the blank line that
    ends its header section, up to the line break before its parent's next boundary (the end of
    the message for a message of one part). It is looked for in that shape, in document order,
    and used only where it stands once."""
    pieces, cursor = [], 0
    for part, parent, (encoding, payload) in changed:
        if encoding != (part.get("Content-Transfer-Encoding") or "7bit").strip().lower():
            return None
        raw = _payload_as_it_came(part, encoding)
        if raw is None:
            return None
        if parent is None:
            at = body_start
            if data[at:] != raw:
                return None
        else:
            at = _payload_at(data, raw, parent.get_boundary() or "", cursor)
            if at is None:
                return None
        if raw.endswith(b"\r\n") and not payload.endswith(b"\r\n"):
            payload += b"\r\n"  # the part ended with a line break: so does its new payload
        elif not raw.endswith(b"\r\n"):
            payload = payload.removesuffix(b"\r\n")
        pieces += [data[cursor:at], payload]
        cursor = at + len(raw)
    return b"".join([*pieces, data[cursor:]])


def _payload_as_it_came(part: Message, encoding: str) -> bytes | None:
    """The part's payload bytes as they stand in the message (None for 8-bit bytes in a quoted-printable
    or base64 part, which the parser gives only as decoded text)."""
    if encoding not in ("base64", "quoted-printable"):
        return part.get_payload(decode=True)  # 7bit, 8bit, binary: the bytes as they came
    try:
        return part.get_payload().encode("ascii")
    except UnicodeEncodeError:
        return None


def _payload_at(data: bytes, raw: bytes, boundary: str, start: int) -> int | None:
    """Where ``raw`` stands in ``data`` after ``start`` as a part's payload before a line of
    ``boundary``; None unless it stands there exactly once."""
    if not boundary:
        return None
    shape = b"\r\n\r\n" + raw + b"\r\n--" + boundary.encode("ascii", "surrogateescape")
    at = data.find(shape, start)
    if at < 0 or data.find(shape, at + 1) >= 0:
        return None
    return at + 4


def _trackable(url: str, own_unsubscribe: str) -> bool:
    lowered = url.lower()
    if not lowered.startswith(("http://", "https://")):
        return False
    return not any(word in lowered for word in _UNSUBSCRIBE_WORDS) and url not in own_unsubscribe


def _text_parts(part: Message, parent: Message | None):
    """The text/plain and text/html parts that are the message's text, each with the multipart it is
    in (None for a message of one part): inside multiparts, not in attached messages and not
    attachments."""
    if part.is_multipart():
        if part.get_content_maintype() == "multipart":
            for sub in part.get_payload():
                yield from _text_parts(sub, part)
        return
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    if part.get_content_type() in ("text/plain", "text/html") and disposition != "attachment":
        yield part, parent


def _charset(part: Message) -> str:
    return part.get_content_charset() or "us-ascii"


def _decoded(part: Message) -> str | None:
    """The part's text, or None when it cannot be read (an unknown charset or transfer encoding): such a
    part is sent as it came."""
    if (part.get("Content-Transfer-Encoding") or "7bit").strip().lower() not in _ENCODINGS:
        return None
    raw = part.get_payload(decode=True)
    if raw is None:
        return None
    try:
        return raw.decode(_charset(part), "surrogateescape")
    except (LookupError, UnicodeError):
        return None


def _encoded(part: Message, text: str) -> tuple[str, bytes] | None:
    """``text`` in the part's charset and transfer encoding (quoted-printable when a 7bit or 8bit line
    would be too long), with CRLF line breaks: (the transfer encoding, the payload); None when it
    cannot be encoded as it was."""
    try:
        raw = text.encode(_charset(part), "surrogateescape")
    except (LookupError, UnicodeError):
        return None
    encoding = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if encoding not in ("base64", "quoted-printable") and max(map(len, raw.splitlines() or [b""])) > MAX_LINE:
        encoding = "quoted-printable"
    if encoding == "base64":
        return encoding, base64.encodebytes(raw).replace(b"\n", b"\r\n")
    if encoding == "quoted-printable":  # the codec of the email package's own encoders (binascii); its
        # soft line breaks are bare LF unless the text already had a CRLF
        return encoding, message_bytes.normalise_line_endings(quopri.encodestring(raw))
    return encoding, raw  # 7bit, 8bit, binary: the bytes themselves


class _Links(HTMLParser):
    """Finds the start tags to change (links, and the end of the body for the pixel) with their offsets."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.starts = [0]
        for line in text.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))
        self.links: list[tuple[int, str, list[tuple[str, str | None]]]] = []
        self.body_end: int | None = None

    def position(self) -> int:
        line, column = self.getpos()
        return self.starts[line - 1] + column

    def handle_starttag(self, tag, attrs):
        if tag in ("a", "area") and any(name == "href" for name, _ in attrs):
            self.links.append((self.position(), self.get_starttag_text() or "", attrs))

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "body" and self.body_end is None:
            self.body_end = self.position()


def _rewrite_html(text: str, link, pixel: str | None) -> str:
    parser = _Links(text)
    parser.feed(text)
    parser.close()
    edits: list[tuple[int, int, str]] = []
    for offset, original, attrs in parser.links:
        href = next(value for name, value in attrs if name == "href")
        target = link(href.strip()) if href else None
        if target is None:
            continue
        values = [(name, target if name == "href" else value) for name, value in attrs]
        rebuilt = "".join(f" {name}" if value is None else f' {name}="{html.escape(value)}"' for name, value in values)
        tag = original[1:].split(None, 1)[0].rstrip("/>")  # as written: <A HREF…> stays <A
        closing = "/>" if original.endswith("/>") else ">"
        edits.append((offset, offset + len(original), f"<{tag}{rebuilt}{closing}"))
    if pixel is not None:
        img = f'<img src="{html.escape(pixel)}" width="1" height="1" alt="" style="border:0;width:1px;height:1px">'
        at = parser.body_end if parser.body_end is not None else len(text)
        edits.append((at, at, img))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text
