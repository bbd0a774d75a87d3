"""The message of an API request: a MIME message built with the stdlib email package from the JSON
fields, or the raw message/rfc822 body with its envelope read from its header (as ``sendmail -t``)."""

from __future__ import annotations

import base64
import binascii
import email.utils
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

from .. import message_bytes
from ..policy import acceptance
from .problems import Problem, invalid
from .schemas import SendRequest

# Header fields the JSON fields set, or MIME's own: ``headers`` may not set them.
RESERVED = {"from", "to", "cc", "bcc", "reply-to", "subject", "mime-version", "content-type"}
RESERVED_PREFIX = "content-"


@dataclass
class Composed:
    mail_from: str
    rcpts: list[str]
    data: bytes
    fields: list[str] = field(default_factory=list)  # the request field each recipient came from
    tags: list[str] = field(default_factory=list)


def _listed(value: list[str] | str) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _mailboxes(name: str, value: list[str] | str, errors: list[dict[str, str]]) -> list[tuple[str, str]]:
    """Each entry's (as written, address); an entry that is not one mailbox is an error of its field."""
    found = []
    for i, entry in enumerate(_listed(value)):
        where = f"{name}[{i}]" if not isinstance(value, str) else name
        if "\r" in entry or "\n" in entry:
            errors.append({"field": where, "detail": "line breaks are not allowed"})
            continue
        addresses = acceptance.header_addresses(entry)
        if len(addresses) != 1 or not addresses[0]:
            errors.append({"field": where, "detail": f"expected one address like name@example.com, got {entry!r}"})
            continue
        found.append((entry.strip(), addresses[0]))
    return found


def build(req: SendRequest) -> Composed:
    """The MIME message of a JSON request; raise Problem (422) naming the fields that cannot be used."""
    errors: list[dict[str, str]] = []
    sender = _mailboxes("from", req.from_, errors)
    to, cc, bcc = (_mailboxes(n, getattr(req, n), errors) for n in ("to", "cc", "bcc"))
    reply_to = _mailboxes("reply_to", req.reply_to, errors)
    if not (to or cc or bcc) and not any(e["field"].startswith(("to", "cc", "bcc")) for e in errors):
        errors.append({"field": "to", "detail": "at least one recipient in to, cc or bcc"})
    if req.text is None and req.html is None:
        errors.append({"field": "text", "detail": "a text or an html body (or both)"})
    for name, value in req.headers.items():
        lower = name.lower()
        if lower in RESERVED or lower.startswith(RESERVED_PREFIX):
            errors.append({"field": f"headers.{name}", "detail": "set by the request's own fields"})
        elif not name or any(c in name for c in ": \t\r\n") or not name.isascii():
            errors.append({"field": f"headers.{name}", "detail": "not a header field name"})
        elif "\r" in value or "\n" in value:
            errors.append({"field": f"headers.{name}", "detail": "line breaks are not allowed"})
    if "\r" in req.subject or "\n" in req.subject:
        errors.append({"field": "subject", "detail": "line breaks are not allowed"})
    files = []
    for i, attachment in enumerate(req.attachments):
        try:
            files.append((attachment, base64.b64decode(attachment.content, validate=True)))
        except (binascii.Error, ValueError):
            errors.append({"field": f"attachments[{i}].content", "detail": "not base64"})
    if errors:
        raise invalid(errors)

    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender[0][0]
    if to:
        msg["To"] = ", ".join(shown for shown, _ in to)
    if cc:
        msg["Cc"] = ", ".join(shown for shown, _ in cc)
    if reply_to:
        msg["Reply-To"] = ", ".join(shown for shown, _ in reply_to)
    msg["Subject"] = req.subject
    # The relay's own header fields, read and removed by intake as for SMTP mail.
    relay_fields = {"X-Stream": req.stream, "campaign_guid": req.campaign, "mailing_list_id": req.list_}
    for name, value in list(req.headers.items()) + [(k, v) for k, v in relay_fields.items() if v]:
        msg[name] = value
    if req.text is not None:
        msg.set_content(req.text)
        if req.html is not None:
            msg.add_alternative(req.html, subtype="html")
    else:
        msg.set_content(req.html or "", subtype="html")
    for attachment, data in files:
        maintype, _, subtype = attachment.content_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=attachment.filename)
    recipients = [
        (f"{n}[{i}]", a) for n, found in (("to", to), ("cc", cc), ("bcc", bcc)) for i, (_, a) in enumerate(found)
    ]
    return Composed(
        mail_from=sender[0][1],
        rcpts=[a for _, a in recipients],
        data=msg.as_bytes(),
        fields=[f for f, _ in recipients],
        tags=list(req.tags),
    )


def from_raw(raw: bytes) -> Composed:
    """A message/rfc822 body: the envelope sender is its From: address, the recipients those of To:,
    Cc: and Bcc:, and Bcc: is removed; raise Problem (400 for no body, 422) when they cannot be read."""
    if not raw.strip():
        raise Problem(400, "empty-body", "The request has no body", "send the message as the request body")
    data = message_bytes.normalise_line_endings(raw)
    try:
        fields, _ = message_bytes.parse_header_block(data)
    except message_bytes.MalformedMessage as exc:
        raise invalid([{"field": "body", "detail": str(exc)}]) from None
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name.lower(), []).append(message_bytes.decode_words(value))
    senders = [a for v in values.get("from", []) for a in acceptance.header_addresses(v)]
    if len(senders) != 1 or not senders[0]:
        raise invalid([{"field": "From", "detail": "the message needs a From: header with one address"}])
    recipients = []
    for name in ("to", "cc", "bcc"):
        for _, address in email.utils.getaddresses(values.get(name, [])):
            if address:
                recipients.append((name.capitalize(), address))
    if not recipients:
        raise invalid([{"field": "To", "detail": "the message has no recipient in To:, Cc: or Bcc:"}])
    if "bcc" in values:
        data = message_bytes.without_fields(data, {"bcc"})
    return Composed(senders[0], [a for _, a in recipients], data, [f for f, _ in recipients])
