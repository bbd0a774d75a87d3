"""The HTTP API's request and response bodies as pydantic models: they validate the requests and
spectree writes the OpenAPI document's schemas from them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Addresses = list[str] | str  # one address, or a list of them


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255, description="The file name the recipient sees.")
    content_type: str = Field(
        "application/octet-stream", pattern=r"^[\w.+-]+/[\w.+-]+$", description="Its MIME type, e.g. application/pdf."
    )
    content: str = Field(description="The file, base64-encoded.")


class SendRequest(BaseModel):
    """A message to send; ``from`` must be a sender the account may use, as over SMTP."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", min_length=3, description='The From: mailbox, "Name <address>" or an address.')
    to: Addresses = Field(default_factory=list, description="Recipients shown in To:.")
    cc: Addresses = Field(default_factory=list, description="Recipients shown in Cc:.")
    bcc: Addresses = Field(default_factory=list, description="Recipients not shown to the others.")
    reply_to: Addresses = Field(default_factory=list, description="Addresses for Reply-To:.")
    subject: str = Field("", max_length=998)
    text: str | None = Field(None, description="The plain-text body.")
    html: str | None = Field(None, description="The HTML body (with text, both are sent as alternatives).")
    headers: dict[str, str] = Field(default_factory=dict, description="More header fields, e.g. X-Order-Id.")
    attachments: list[Attachment] = Field(default_factory=list)
    stream: Literal["transactional", "broadcast"] | None = Field(
        None, description="Overrides the account's stream for this message (as the X-Stream header does)."
    )
    campaign: str | None = Field(None, max_length=64, description="The campaign id to file it under.")
    list_: str | None = Field(
        None, alias="list", max_length=64, description="The list id whose figures it shows under."
    )
    tags: list[str] = Field(default_factory=list, max_length=20, description="Kept on the message's accepted event.")


class SendHeaders(BaseModel):
    idempotency_key: str | None = Field(
        None,
        alias="Idempotency-Key",
        max_length=255,
        description="A retry with the same key within 24 hours gets the first answer and sends nothing new.",
    )


class Accepted(BaseModel):
    id: str = Field(description="The message's id (a ULID), as SMTP's 250 Ok: queued as <id> gives it.")


class FieldError(BaseModel):
    field: str
    detail: str


class ProblemDocument(BaseModel):
    """RFC 9457 problem details; ``reason`` and ``smtp_reply`` are those of the same refusal over SMTP."""

    type: str
    title: str
    status: int
    detail: str
    reason: str
    smtp_reply: str | None = None
    errors: list[FieldError] | None = None


class MessageQuery(BaseModel):
    """The message log's filters (appliance/message_log.py), always within the key's account."""

    rcpt: str | None = Field(None, description="A recipient address, or a domain for every recipient there.")
    sender: str | None = Field(None, description="The envelope sender's address, or a domain.")
    subject: str | None = Field(None, description="Text the subject contains.")
    msgid: str | None = Field(None, description="The message's id or its Message-ID header.")
    status: str | None = Field(None, description="queued, sending, deferred, delivered, bounced, failed, …")
    stream: Literal["transactional", "broadcast"] | None = None
    since: str | None = Field(None, description="Received on or after this day (2025-01-31).")
    until: str | None = Field(None, description="Received on or before this day (2025-01-31).")
    cursor: str | None = Field(None, description="The next_cursor of the previous page.")
    limit: int = Field(50, ge=1, le=100, description="Messages per page.")


class Recipient(BaseModel):
    address: str
    status: str
    attempts: int
    last_reply: str


class MessageSummary(BaseModel):
    id: str
    status: str
    mail_from: str
    from_: str = Field(alias="from", description="The From: header.")
    subject: str
    message_id: str = Field(description="The Message-ID header.")
    size: int
    priority: int
    stream: str
    received_at: str = Field(description="UTC, ISO 8601.")
    recipients: list[Recipient]


class MessagePage(BaseModel):
    messages: list[MessageSummary]
    next_cursor: str | None = Field(description="Ask for the next page with it; null on the last page.")


class Attempt(BaseModel):
    at: str
    recipient: str
    outcome: str
    code: int | None
    text: str
    mx_host: str
    tls: str
    duration_ms: int | None


class Event(BaseModel):
    type: str
    recipient: str
    at: str
    details: dict


class MessageDetail(MessageSummary):
    attempts: list[Attempt]
    events: list[Event]
