"""The HTTP API's request and response bodies as pydantic models: they validate the requests and
spectree writes the OpenAPI document's schemas from them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

Addresses = list[str] | str  # one address, or a list of them
# A stored UTC time, answered as ISO 8601 with its Z.
Timestamp = Annotated[
    dt.datetime | None,
    PlainSerializer(lambda v: v.isoformat(timespec="seconds") + "Z" if v else None, return_type=str | None),
]
# A list kept one item per line (an account's IP rules, authorized domains and senders).
Lines = Annotated[list[str], BeforeValidator(lambda v: v.split() if isinstance(v, str) else v)]


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
    """The message log's filters (appliance/message_log.py), always within an account's key's account."""

    account: int | None = Field(None, description="An account's id (admin keys only: an account's key sees its own).")
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
    account: int | None = Field(description="The SMTP account's id; null: the appliance's own mail (notices, DSNs).")
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


# -- the management endpoints ------------------------------------------------------------------
class PageQuery(BaseModel):
    """A page of a listing: ``page`` from 1, ``limit`` rows (at most 100)."""

    model_config = ConfigDict(extra="forbid")

    page: int = Field(1, ge=1, description="The page, from 1; `next_page` of the previous answer.")
    limit: int = Field(50, ge=1, le=100, description="Rows per page (at most 100).")


class Stored(BaseModel):
    """What the answers read from the appliance's rows."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class AccountOut(Stored):
    """An SMTP account as the dashboard shows it; never its password (only creation and a reset give it)."""

    id: int
    name: str
    username: str
    active: bool
    priority: int = Field(description="1 (very high) to 5 (very low).")
    note: str
    ip_rules: Lines = Field(description="The networks it may send from; empty: any.")
    ip_only: bool = Field(description="Authenticates by its networks alone, without a password.")
    stream: str
    track_opens: bool | None = Field(description="null: the stream's default.")
    track_clicks: bool | None = Field(description="null: the stream's default.")
    authorized_domains: Lines
    authorized_senders: Lines
    sender_mode: str = Field(description="block or alert: what an unauthorized sender gets.")
    created_at: Timestamp
    last_login_at: Timestamp
    last_login_ip: str | None


class AccountWithPassword(AccountOut):
    password: str = Field(description="The SMTP password, shown this once: keep it now.")


class AccountPage(BaseModel):
    accounts: list[AccountOut]
    next_page: int | None = Field(description="Ask for it with ?page=; null on the last page.")


class AccountChange(BaseModel):
    """An account's settings, checked as the dashboard checks them (appliance/accounts.py)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200, description="What it is for, e.g. the website that uses it.")
    note: str | None = Field(None, max_length=2000)
    priority: int | None = Field(None, description="1 (very high) to 5 (very low).")
    ip_rules: list[str] | None = Field(None, description="Addresses or networks (CIDR) it may send from.")
    ip_only: bool | None = None
    stream: str | None = Field(None, description="transactional or broadcast.")
    track_opens: bool | None = Field(None, description="null: the stream's default.")
    track_clicks: bool | None = Field(None, description="null: the stream's default.")
    authorized_domains: list[str] | None = Field(
        None, description="The domains it may send from (*.shop.example: and its subdomains); empty: any verified."
    )
    authorized_senders: list[str] | None = Field(None, description="The addresses it may send as; empty: any verified.")
    sender_mode: str | None = Field(None, description="block or alert: what an unauthorized sender gets.")


class AccountCreate(AccountChange):
    name: str = Field(max_length=200, description="What it is for, e.g. the website that uses it.")


class AccountUpdate(AccountChange):
    """The fields given change; the others stay as they are."""

    active: bool | None = Field(None, description="false disables it (its sessions end at once).")


class SenderOut(Stored):
    id: int
    email: str
    verified: bool
    verified_by: str = Field(description="link or admin; empty while not verified.")
    verified_at: Timestamp
    link_sent_at: Timestamp
    created_at: Timestamp


class SenderPage(BaseModel):
    senders: list[SenderOut]
    next_page: int | None


class SenderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(max_length=320)
    verified: bool = Field(False, description="Vouch for it now; else a verification link is mailed to it.")


class DnsRecord(BaseModel):
    key: str = Field(description="dkim, dkim-ed25519, spf, dmarc, bounce-mx, …")
    label: str
    type: str
    name: str
    value: str
    strings: list[str] = Field(description="A TXT value as DNS character-strings of at most 255 bytes.")
    note: str
    status: str = Field(description="pass, fail, error or unchecked: the last check's.")
    error: str


class DomainOut(Stored):
    id: int
    name: str
    verified: bool
    selector: str
    next_selector: str | None
    created_at: Timestamp
    last_checked_at: Timestamp
    warning: str = Field(description="What is wrong with the appliance's HOSTNAME for these records, if anything.")
    records: list[DnsRecord]


class DomainPage(BaseModel):
    domains: list[DomainOut]
    next_page: int | None


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=253)


class SuppressionOut(Stored):
    id: int
    address: str
    reason: str
    source: str = Field(description="manual, bounce, complaint or unsubscribe.")
    stream: str = Field(description="Empty: every stream.")
    domain: str = Field(description="Empty: every sending domain.")
    created_at: Timestamp


class SuppressionPage(BaseModel):
    suppressions: list[SuppressionOut]
    next_page: int | None


class SuppressionQuery(PageQuery):
    search: str = Field("", max_length=320, description="Text the address contains.")


class SuppressionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(max_length=320)
    reason: str = Field("", max_length=500)


class StatsQuery(BaseModel):
    """The figures of `appliance stats --json`."""

    model_config = ConfigDict(extra="forbid")

    period: Literal["today", "7d", "30d"] = Field(
        "today", description="Today, or the last 7 or 30 days, from midnight."
    )
    account: int | None = Field(
        None, description="Analytics of this account's mail (admin keys; an account's key: its own)."
    )
    stream: Literal["transactional", "broadcast"] | None = None
    since: dt.date | None = Field(None, description="Analytics of the messages received from this day (2025-01-31).")


class Analytics(BaseModel):
    """The analytics of the messages received since ``since`` (docs/analytics.md): counts, human rates."""

    model_config = ConfigDict(extra="allow")

    since: str
    account: int | None
    stream: str | None
    sent: int
    delivered: int
    bounced: int
    complained: int
    opened: int
    clicked: int
    unsubscribed: int
    providers: dict[str, dict]
    top_links: list[dict]


class Stats(BaseModel):
    period: str
    since: str = Field(description="The period's start (UTC).")
    counts: dict[str, int] = Field(description="Messages accepted and deliveries per outcome in the period.")
    queue: dict[str, int] = Field(description="Deliveries waiting to go out now, per status.")
    analytics: Analytics


class ListOut(BaseModel):
    """A list as `appliance lists show --json` gives it: members per status, tied accounts, figures."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    account: int | None = Field(description="The account whose Transactional Campaign Recipients it is, if one.")
    accounts: list[str] = Field(description="The usernames of the accounts tied to it (they may send to it).")
    members: int
    statuses: dict[str, int]


class ListPage(BaseModel):
    lists: list[ListOut]
    next_page: int | None


class ListCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    accounts: list[int] = Field(default_factory=list, description="The ids of the accounts tied to it.")


class MemberOut(BaseModel):
    email: str
    status: str
    source: str
    created_at: str
    updated_at: str


class MemberQuery(PageQuery):
    status: str = Field("", description="Only members of this status (subscribed, unsubscribed, …).")
    search: str = Field("", max_length=320, description="Text the address contains.")


class MemberPage(BaseModel):
    members: list[MemberOut]
    next_page: int | None


class CampaignOut(BaseModel):
    """A campaign as `appliance campaigns show --json` gives it, with its figures."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="What apps put in campaign_guid.")
    name: str
    subject: str | None
    account: int | None = Field(description="The account whose Transactional Campaign it is, if one.")
    archived: bool
    sent: int
    delivered: int
    opened: int
    clicked: int


class CampaignPage(BaseModel):
    campaigns: list[CampaignOut]
    next_page: int | None


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    subject: str | None = Field(None, max_length=998, description="Mail with exactly this Subject: is filed under it.")


class WebhookOut(BaseModel):
    """An endpoint (never its secret, but when it is made)."""

    id: int
    url: str
    events: list[str] = Field(description="The event types it wants; empty: every type.")
    accounts: list[str] = Field(
        description="The usernames of the accounts whose mail it hears of; empty: every account."
    )
    active: bool
    created_at: Timestamp
    failing_since: Timestamp
    last_success_at: Timestamp
    disabled_reason: str | None


class WebhookWithSecret(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_…), shown this once: keep it now.")


class WebhookPage(BaseModel):
    webhooks: list[WebhookOut]
    next_page: int | None


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    events: list[str] = Field(default_factory=list, description="Event types; empty: every type.")
    accounts: list[str] = Field(
        default_factory=list,
        description="Ids or usernames (admin keys; empty: every account); an account's key's hears of its own.",
    )


class WebhookTest(BaseModel):
    id: int = Field(description="The test event's delivery.")
    msg_id: str = Field(description="Its webhook-id header.")


class WebhookChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool = Field(description="false: nothing is sent or recorded for it; true: its waiting events go out.")


class WebhookCall(BaseModel):
    id: int
    delivery: int = Field(description="The event's delivery (replay it by this id).")
    event: str
    message_id: str | None
    delivery_status: str = Field(description="pending, sending, delivered or failed.")
    at: Timestamp
    status_code: int | None = Field(description="The endpoint's answer; null: no answer (refused, timed out).")
    ok: bool
    duration_ms: int | None
    excerpt: str = Field(description="The answer's first 200 characters.")


class WebhookCalls(BaseModel):
    calls: list[WebhookCall] = Field(description="The latest 50, newest first.")


class CampaignChange(BaseModel):
    """The fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    subject: str | None = Field(None, max_length=998, description='"": match no subject.')
    archived: bool | None = Field(None, description="true: its subject matches no more mail (its id still does).")
