"""The HTTP API's refusals as problem documents (RFC 9457, ``application/problem+json``).

A refusal that SMTP also makes carries the same reason slug and the same text as its SMTP reply
(``smtp_reply``), with the HTTP status that fits it.
"""

from __future__ import annotations

from typing import Any

from flask import Response, json

from .. import replies

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "tag:appliance,2026:problem:"  # + the reason slug: a stable name, not a page to fetch

# SMTP replies that are not a policy Decision (which carries its own slug): status, slug, title.
_REPLIES: list[tuple[str, int, str, str]] = [
    (replies.ACCOUNT_DISABLED, 403, "account-disabled", "The account is disabled"),
    (replies.IP_NOT_AUTHORIZED, 403, "ip-not-authorized", "The client IP is not authorized for the account"),
    (replies.SENDER_NOT_VERIFIED, 403, "sender-not-verified", "Sender address not authorized"),
    (replies.SENDER_NOT_AUTHORIZED_FOR_ACCOUNT, 403, "sender-not-authorized", "Sender address not authorized"),
    (replies.FROM_NOT_VERIFIED, 403, "sender-not-verified", "Sender address not authorized"),
    (replies.FROM_NOT_AUTHORIZED_FOR_ACCOUNT, 403, "sender-not-authorized", "Sender address not authorized"),
    (replies.SENDER_NOT_AUTHORIZED, 403, "sender-not-authorized", "Sender address not authorized"),
    (replies.MESSAGE_TOO_BIG, 413, "message-too-big", "Message size exceeds limit"),
    (replies.HEADER_TOO_BIG, 413, "header-too-big", "Message header section exceeds the limit"),
    (replies.TOO_MANY_HEADER_LINES, 422, "too-many-header-lines", "Malformed message"),
    (replies.NUL_IN_MESSAGE, 422, "nul-in-message", "Malformed message"),
    (replies.LINE_TOO_LONG, 422, "line-too-long", "Line too long"),
    (replies.MALFORMED_MESSAGE, 422, "malformed-message", "Malformed message"),
    (replies.TOO_MANY_RECIPIENTS, 422, "too-many-recipients", "Too many recipients"),
    (replies.LIST_NOT_ALLOWED, 403, "list-not-allowed", "The account may not send to this list"),
    (replies.LIST_UNKNOWN, 422, "list-unknown", "No such list"),
    (replies.LIST_ALONE, 422, "list-alone", "A list address must be the only recipient"),
    (replies.QUOTA_EXCEEDED, 429, "quota-exceeded", "Sending quota exceeded"),
    (replies.QUOTA_REJECTED, 429, "quota-exceeded", "Sending quota exceeded"),
    (replies.STORAGE_FULL, 503, "storage-full", "Insufficient system storage"),
    (replies.LOCAL_ERROR, 503, "local-error", "Temporary local problem"),
]
# The status of the policy Decisions' slugs (policy/acceptance.py, policy/sending.py).
_DECISION_STATUS = {
    "bad-sender-syntax": 422,
    "bad-recipient-syntax": 422,
    "routing-trick": 422,
    "too-many-recipients": 422,
    "relay-denied": 403,
    "sender-not-verified": 403,
    "sender-not-authorized": 403,
}


class Problem(Exception):
    """A refusal of the API: raised anywhere in a request, answered as a problem document."""

    def __init__(
        self,
        status: int,
        reason: str,
        title: str,
        detail: str,
        *,
        smtp_reply: str = "",
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status, self.reason, self.title, self.detail = status, reason, title, detail
        self.smtp_reply, self.errors, self.headers = smtp_reply, errors, headers or {}

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": TYPE_BASE + self.reason,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "reason": self.reason,
        }
        if self.smtp_reply:
            doc["smtp_reply"] = self.smtp_reply
        if self.errors:
            doc["errors"] = self.errors
        return doc

    def response(self) -> Response:
        return Response(json.dumps(self.document()), self.status, self.headers, mimetype=MEDIA_TYPE)


def reply_text(reply: str) -> str:
    """An SMTP reply without its code and enhanced status code: what a person reads."""
    parts = reply.split(" ", 2)
    if len(parts) == 3 and parts[1][:1].isdigit() and parts[1].count(".") == 2:
        return parts[2]
    return reply.split(" ", 1)[-1]


def _matches(template: str, reply: str) -> bool:
    fixed = template.split("{", 1)[0]
    return reply == template if fixed == template else reply.startswith(fixed)


def from_reply(reply: str, reason: str = "", field: str = "", headers: dict[str, str] | None = None) -> Problem:
    """The problem of an SMTP refusal (``reason``: its Decision's slug, when it has one; ``field``:
    the request field it is about)."""
    status, slug, title = 422, reason or "refused", "Refused"
    for template, status_, slug_, title_ in _REPLIES:
        if _matches(template, reply):
            status, slug, title = status_, slug_, title_
            break
    if reason:
        slug = reason
        status = _DECISION_STATUS.get(reason, 429 if reason.startswith(("quota-", "reputation-")) else status)
    text = reply_text(reply)
    errors = [{"field": field, "detail": text}] if field else None
    return Problem(status, slug, title, text, smtp_reply=reply, errors=errors, headers=headers)


def invalid(errors: list[dict[str, str]]) -> Problem:
    """A request whose fields do not validate (each error names its field)."""
    shown = "; ".join(f"{e['field']}: {e['detail']}" for e in errors[:5])
    return Problem(422, "invalid-request", "The request's fields are not valid", shown, errors=errors)
