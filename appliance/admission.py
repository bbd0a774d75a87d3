"""Admission of an account's mail: the checks of MAIL FROM and of the From: and Sender: header fields.

The SMTP hooks ask these and reply with the answer; the rules themselves live in senders (sender
authorization), guard (reputation), policy.quotas (quotas) and accounts (a session outliving its account).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import accounts, campaigns, guard, intake, lists, message_bytes, senders
from .models import SmtpAccount
from .policy import acceptance, quotas
from .policy import sending as sp


def mail_from(settings: dict, account_id: int, sender: str, sender_known: bool, version: int | None):
    """MAIL FROM of an account (executor thread): that a signed-in session's account still is as
    it was at AUTH (``version``; None for an IP-only session), sender authorization, then quotas
    and the reputation guard. Return (session refusal reason or None, refusal or None,
    sending-policy verdict or None, whether the session may remember the sender as allowed: not
    in alert mode, which reports every use)."""
    if version is not None:
        expired = accounts.session_refusal(account_id, version)
        if expired:
            return expired, None, None, False
    cacheable = False
    if not sender_known:
        decision = senders.check(settings, account_id, [sender], header=False)
        if decision:
            return None, decision, None, False
        cacheable = bool(sender) and SmtpAccount.get_by_id(account_id).sender_mode != "alert"
    return None, None, guard.check_mail(settings, account_id), cacheable


def send_verdict(
    settings: dict, account_id: int, account_stream: str, data: bytes, list_send: str | None, hold: Any
) -> sp.QuotaDecision | None:
    """DATA of an account's message (executor thread, when quotas.needs_send_check says so): the quotas
    of its stream (X-Stream over the account's), and for a list send every quota with the list's
    subscribed members counted. Return the verdict to answer with (reject or defer), else the hold to
    store it with: MAIL FROM's ``hold`` or this one, whichever is released last."""
    if list_send:
        stream, adding = "broadcast", lists.subscribed_count(list_send)
    else:
        stream, adding = _stream(data, account_stream), 1
    decision, alarms = quotas.check_send(account_id, stream, adding, list_send=bool(list_send))
    guard.raise_alarms(settings, alarms)
    if decision is not None and decision.action != sp.HOLD:
        return decision
    return sp.later_hold(hold, decision)


def _stream(data: bytes, account_stream: str) -> str:
    """The stream a message names in X-Stream, else the account's (a malformed message or value is
    refused later, by intake.prepare)."""
    try:
        fields, _ = message_bytes.parse_header_block(message_bytes.normalise_line_endings(data))
        headers = {name.lower(): value for name, value in reversed(fields)}
        return acceptance.stream_and_tracking(headers, account_stream, None, None).stream
    except (message_bytes.MalformedMessage, ValueError):
        return account_stream


def admit(
    settings: dict,
    prepare: Callable[[], intake.Incoming],
    *,
    account_id: int | None,
    allowed: frozenset[str],
    hold: Any,
    arrival: Any,
) -> intake.Incoming:
    """Prepare a message for storing (the writer thread, right before it is stored): From: and
    Sender: of an account's mail are held to the same rule as MAIL FROM (``allowed``: the senders
    the session already passed), a MAIL FROM verdict to hold is put on it, and mail to a return
    path of ours is read by its ``arrival`` (bounces.Arrival), and an account's mail is filed under its
    campaign (campaigns.file). Raises intake.Refused."""
    item = prepare()
    if account_id is not None:
        for name, addresses in (("From:", item.from_addresses), ("Sender:", item.sender_addresses)):
            if addresses is None:
                continue  # no Sender: field
            unknown = [a for a in addresses if a.lower() not in allowed]
            if unknown or not addresses:
                decision = senders.check(settings, account_id, unknown, header=True, field=name)
                if decision:
                    raise intake.Refused(decision.reply, decision.reason)
        campaigns.file(settings, item)
    if hold is not None:
        item.hold_reply, item.hold_until = quotas.held_reply(hold), hold.release_at
    return arrival.read(item) if arrival else item
