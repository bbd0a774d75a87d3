"""``/api/v1/messages``: send a message (JSON or message/rfc822)."""

from __future__ import annotations

import hashlib

from flask import current_app, g, request
from spectree import Response

from .. import api_keys
from ..models import SEND
from . import bp, needs, problems
from .common import json_body
from .compose import build, from_raw
from .schemas import Accepted, ProblemDocument, SendHeaders, SendRequest
from .send import Idempotency, Stored, submit
from .spec import spec

# A JSON body carries attachments in base64 (4/3 of their size) around the message's own limit.
_JSON_OVERHEAD = 64 * 1024
REFUSALS = {f"HTTP_{s}": ProblemDocument for s in (400, 401, 403, 413, 415, 422, 429, 503)}


def _read_body(limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise problems.Problem(413, "message-too-big", "Message size exceeds limit", f"the body is over {limit} bytes")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise problems.Problem(413, "message-too-big", "Message size exceeds limit", f"the body is over {limit} bytes")
    return body


def _idempotency(body: bytes) -> Idempotency | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable() or not key.isascii():
        raise problems.invalid([{"field": "Idempotency-Key", "detail": "1 to 255 printable ASCII characters"}])
    digest = hashlib.sha256(request.mimetype.encode() + b"\0" + body).hexdigest()
    return Idempotency(g.api_key.key.id, key, digest)


@bp.post("/messages")
@needs(SEND)
@spec.validate(
    json=SendRequest,
    headers=SendHeaders,
    resp=Response(HTTP_202=Accepted, **REFUSALS),
    tags=["messages"],
    skip_validation=True,
)
def api_send():
    """Send a message

    As JSON (from, to, cc, bcc, reply_to, subject, text, html, headers, attachments in base64,
    stream, campaign, list, tags), or the whole message as `message/rfc822` (the envelope read from
    From:, To:, Cc: and Bcc:, which is removed). The message passes the checks SMTP mail passes
    (sender authorization, quotas, suppressions, priority) and is stored durably before the 202.
    """
    settings = current_app.config
    limit = settings["MAX_MESSAGE_SIZE"]
    kind = request.mimetype
    if kind not in ("application/json", "message/rfc822"):
        raise problems.Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"send application/json or message/rfc822, not {kind or 'no Content-Type'}",
        )
    body = _read_body(limit * 4 // 3 + _JSON_OVERHEAD if kind == "application/json" else limit)
    idempotency = _idempotency(body)
    if idempotency is not None:  # answered before: the same answer, whatever the checks say now
        found = api_keys.answered(idempotency.key_id, idempotency.key)
        if found is not None:
            return _answer(Stored(found.message_id, True, found.request_hash), idempotency)
    composed = build(json_body(SendRequest, body)) if kind == "application/json" else from_raw(body)
    stored = submit(
        settings,
        g.api_key.account,
        composed,
        client_ip=request.remote_addr or "",
        secure=request.is_secure,
        idempotency=idempotency,
        after=current_app.extensions["api_enqueuer"].on_committed,
    )
    return _answer(stored, idempotency)


def _answer(stored: Stored, idempotency: Idempotency | None):
    if stored.replayed and idempotency is not None and stored.request_hash != idempotency.request_hash:
        raise problems.Problem(
            422,
            "idempotency-key-reused",
            "The Idempotency-Key was used for another request",
            "this key's earlier request with the same Idempotency-Key had another body",
        )
    headers = {"Location": f"/api/v1/messages/{stored.message_id}"}
    if stored.replayed:
        headers["Idempotent-Replayed"] = "true"
    return {"id": stored.message_id}, 202, headers
