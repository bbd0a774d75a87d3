"""SMTP reply codes explained in plain words (RFC 5321 §4.2, RFC 3463): what each means and what
to do about it, for the message log's timeline and the dashboard's reference page that every code in
a timeline links to."""

from __future__ import annotations

import re

from flask import Blueprint, render_template

from .permissions import viewer_required

bp = Blueprint("smtp_codes", __name__, url_prefix="/smtp-codes")

# Enhanced status codes (RFC 3463, IANA registry) are more precise than the basic code: tried first.
ENHANCED: dict[str, str] = {
    "2.0.0": "Accepted: the receiving server took the message.",
    "2.1.5": "Accepted: the recipient address is valid.",
    "2.6.0": "Accepted: the message was queued by the receiving server.",
    "4.1.1": "The recipient's server does not know this mailbox right now; it may exist later. We keep trying.",
    "4.2.0": "The recipient's mailbox is temporarily unavailable. We keep trying.",
    "4.2.1": "The recipient's mailbox is disabled for now. We keep trying.",
    "4.2.2": "The recipient's mailbox is full. We keep trying; it may be emptied.",
    "4.3.0": "The receiving server had a temporary problem. We keep trying.",
    "4.3.1": "The receiving server is out of storage. We keep trying.",
    "4.3.2": "The receiving server is shutting down or not accepting mail now. We keep trying.",
    "4.4.1": "No answer from the recipient's server (connection failed or timed out). We keep trying.",
    "4.4.2": "The connection to the recipient's server broke off. We keep trying.",
    "4.4.3": "The recipient's domain could not be looked up in DNS right now. We keep trying.",
    "4.4.4": "No route to the recipient's domain right now. We keep trying.",
    "4.4.5": "The receiving server is too busy. We keep trying.",
    "4.4.7": "The message waited too long in a queue. We keep trying.",
    "4.5.3": "Too many recipients in one go; the rest are sent later.",
    "4.7.0": "The receiving server refused for now, often greylisting or rate limiting. We keep trying.",
    "4.7.1": "The receiving server refused for now because of a policy (greylisting, rate limit or reputation). "
    "We keep trying.",
    "4.7.26": "The receiving server wants the message authenticated (SPF or DKIM) and will accept it once it is.",
    "5.0.0": "The receiving server refused the message permanently without saying why.",
    "5.1.0": "The recipient address was refused.",
    "5.1.1": "The mailbox does not exist: check the spelling of the address. The address is suppressed.",
    "5.1.2": "The recipient's domain does not exist or does not receive mail: check the part after @.",
    "5.1.3": "The recipient address is not a valid address.",
    "5.1.6": "The mailbox has moved and no forwarding address is known.",
    "5.1.8": "The sender's address or domain was refused; the domain may not exist in DNS.",
    "5.1.10": "The recipient's domain publishes a null MX: it receives no mail at all.",
    "5.2.0": "The recipient's mailbox cannot take mail.",
    "5.2.1": "The recipient's mailbox is disabled.",
    "5.2.2": "The recipient's mailbox is full.",
    "5.2.3": "The message is larger than the recipient's server accepts.",
    "5.3.0": "The receiving server has a permanent problem.",
    "5.3.4": "The message is larger than the receiving server accepts.",
    "5.4.1": "The recipient's server says it does not accept mail for this address (no relay).",
    "5.4.4": "The recipient's domain cannot be reached (no MX or address records).",
    "5.4.7": "The message could not be delivered within the retry period and was given up.",
    "5.5.0": "The receiving server did not understand a command.",
    "5.5.1": "The receiving server rejected a command as invalid.",
    "5.5.2": "The receiving server rejected a command's syntax.",
    "5.6.0": "The receiving server refused the message content.",
    "5.7.0": "Refused for security or policy reasons.",
    "5.7.1": "Refused by the recipient's policy: the sender is blocked, the content looks like spam, "
    "or relaying is not allowed.",
    "5.7.8": "Authentication failed: wrong username or password.",
    "5.7.9": "The authentication method is too weak for the receiving server.",
    "5.7.23": "SPF check failed: this server is not allowed to send for the sender's domain.",
    "5.7.25": "The sending server's IP has no reverse DNS (PTR) record.",
    "5.7.26": "The message failed authentication (SPF and DKIM): publish SPF/DKIM records for the sender's domain.",
    "5.7.27": "The sender's domain publishes a null MX and cannot be used as a sender.",
}

BASIC: dict[int, str] = {
    200: "Success, in a non-standard form (rarely used).",
    211: "System status reply.",
    214: "Help message.",
    220: "The server is ready.",
    221: "The server is closing the connection.",
    235: "Authentication succeeded.",
    250: "Accepted: the receiving server took the message.",
    251: "Accepted; the server will forward the message.",
    252: "The server cannot verify the address but will try to deliver.",
    334: "The server waits for authentication data.",
    354: "The server waits for the message text.",
    400: "A temporary failure without a more precise code. We keep trying.",
    421: "The receiving server is not available now and closed the connection. We keep trying.",
    450: "The recipient's mailbox is temporarily unavailable (busy, greylisting or rate limit). We keep trying.",
    451: "The receiving server had a local error. We keep trying.",
    452: "The receiving server is out of storage or got too many recipients. We keep trying.",
    454: "TLS or authentication is temporarily unavailable on the receiving server. We keep trying.",
    455: "The receiving server cannot take the parameters now. We keep trying.",
    500: "The receiving server did not recognise a command.",
    501: "The receiving server rejected a command's arguments.",
    502: "The receiving server does not implement a command.",
    503: "Commands were sent in the wrong order.",
    504: "The receiving server does not implement a command parameter.",
    521: "The receiving server does not accept mail at all.",
    530: "The receiving server requires authentication or encryption first.",
    534: "The authentication method is too weak.",
    535: "Authentication failed: wrong username or password.",
    538: "Authentication requires an encrypted connection first (STARTTLS).",
    550: "The recipient's server refused permanently: usually the mailbox does not exist or the message was blocked.",
    551: "The recipient is not local to that server; no forwarding.",
    552: "The message is too large or the mailbox is over its storage allowance.",
    553: "The address was refused as not allowed or badly formed.",
    554: "The transaction failed permanently: the message was refused, often as spam or by policy.",
    555: "The server does not accept a MAIL FROM or RCPT TO parameter.",
    556: "The recipient's domain does not accept mail (null MX).",
}

CLASS: dict[str, str] = {
    "1": "Informational (not used in SMTP).",
    "2": "Success.",
    "3": "The server waits for more input.",
    "4": "A temporary failure: we keep trying until the give-up age.",
    "5": "A permanent failure: we stop trying this recipient.",
}

# Basic reply codes: what to do about each, for the appliance's owner reading a timeline or an app's
# log. The mySMTP knowledge base's list (SMTP Status Codes and Their Meanings) and its limits table
# (421 lower the rate, 451 slow down, 550 remove bad addresses, 554 improve content) are all here.
TODO: dict[int, str] = {
    200: "Nothing: a success, though non-standard.",
    211: "Nothing: information only.",
    214: "Nothing: information only.",
    220: "Nothing: the conversation can begin.",
    221: "Nothing: the conversation ended normally.",
    235: "Nothing: the username and password were right.",
    250: "Nothing: the step succeeded.",
    251: "Nothing: the server forwards the message itself.",
    252: "Nothing: delivery is still attempted.",
    334: "Nothing: the client sends its credentials next.",
    354: "Nothing: the client sends the message next.",
    400: "Wait: the appliance retries on its schedule; if it keeps coming back, read the reply text.",
    421: "Send more slowly or with fewer connections; the appliance retries later and, after a rate-limit "
    "reply, slows the provider group down by itself.",
    450: "Wait: the appliance retries; a mailbox that stays unavailable is given up at the give-up age.",
    451: "Slow down and retry later; the appliance retries on its schedule.",
    452: "Retry later, or send to fewer recipients per message; the appliance sends the rest later.",
    454: "Retry later; if it lasts, the receiving server's TLS is broken.",
    455: "Retry later without the parameter the server could not take.",
    500: "Check the client software: it sent something the server does not understand.",
    501: "Check the address or command: it is malformed (a missing @, a space, brackets).",
    502: "Use another command or feature: the server does not offer this one.",
    503: "Check the client's order of commands (EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO, DATA).",
    504: "Remove the parameter the server does not support.",
    521: "Stop sending to this domain: it receives no mail.",
    530: "Turn on STARTTLS (or port 465) and AUTH in the client's settings.",
    534: "Choose a stronger login method (PLAIN or LOGIN over TLS).",
    535: "Check the username and password; an SMTP password can be reset on the account's page.",
    538: "Turn on STARTTLS (or use port 465) before logging in.",
    550: "Remove the address from your list if the mailbox does not exist; if the message was blocked, "
    "improve your reputation (SPF, DKIM, DMARC, fewer bounces and complaints).",
    551: "Use the recipient's current address.",
    552: "Send a smaller message (link large files instead of attaching them), or wait for the mailbox to be emptied.",
    553: "Correct the address, or send from a sender this account is allowed to use.",
    554: "Improve the content and check the domain's reputation and authentication: the message was "
    "refused, often as spam.",
    555: "Remove the MAIL FROM or RCPT TO parameter the server does not support.",
    556: "Stop sending to this domain: it publishes a null MX.",
}

CLASS_TODO: dict[str, str] = {
    "1": "Nothing: SMTP does not use these.",
    "2": "Nothing.",
    "3": "Nothing: the client goes on with the next step.",
    "4": "Usually nothing: the appliance retries until the give-up age. If it keeps happening, read the reply.",
    "5": "Fix the cause before sending again: a permanent failure is not retried.",
}

CLASS_NAMES = {
    "1": "1xx Informational",
    "2": "2xx Success",
    "3": "3xx Waiting for more input",
    "4": "4xx Temporary failure",
    "5": "5xx Permanent failure",
}

_ENHANCED_IN_TEXT = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def enhanced_in(text: str) -> str:
    """Return the first enhanced status code (x.y.z) found in a reply text, or ''."""
    match = _ENHANCED_IN_TEXT.search(text or "")
    return match.group(1) if match else ""


def explain(code: int | None, enhanced: str = "", text: str = "") -> str:
    """Say in plain words what an SMTP reply means (enhanced code first, then basic code, then class)."""
    enhanced = enhanced or enhanced_in(text)
    if enhanced in ENHANCED:
        return ENHANCED[enhanced]
    if code in BASIC:
        return BASIC[code]
    if code is None:
        return "No SMTP reply: the connection failed before the server answered."
    return CLASS.get(str(code)[0], "An unknown reply code.")


@bp.app_template_global("smtp_code_anchor")
def anchor(code: int | str | None) -> str:
    """The fragment of a code's entry on the reference page: a basic code, an enhanced code, or the
    class of a code the page does not list."""
    text = str(code or "")
    if text in ENHANCED or (text.isdigit() and int(text) in BASIC):
        return f"code-{text}"
    return f"class-{text[:1]}" if text[:1] in CLASS else ""


def reference() -> list[dict]:
    """Every class with its basic and enhanced codes, for the reference page."""
    sections = []
    for digit, name in CLASS_NAMES.items():
        sections.append(
            {
                "digit": digit,
                "name": name,
                "meaning": CLASS[digit],
                "todo": CLASS_TODO[digit],
                "basic": [(code, BASIC[code], TODO[code]) for code in sorted(BASIC) if str(code)[0] == digit],
                "enhanced": [
                    (code, ENHANCED[code])
                    for code in sorted(
                        (c for c in ENHANCED if c[0] == digit), key=lambda c: tuple(int(n) for n in c.split("."))
                    )
                ],
            }
        )
    return sections


@bp.get("/")
@viewer_required
def smtp_codes_reference():
    """Every SMTP reply class and code: what it means and what to do."""
    return render_template("smtp_codes/index.html", sections=reference())
