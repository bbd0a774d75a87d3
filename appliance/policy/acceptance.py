"""Small pure rules that decide; each refusal is a Decision with a reply and a stable reason slug."""

from __future__ import annotations

import email.utils
import re
from typing import NamedTuple

from .. import replies


class Decision(NamedTuple):
    reply: str
    reason: str  # stable slug, e.g. "relay-denied"


def split_address(address: str) -> tuple[str, str]:
    """Split an envelope address into (local part, lower-cased domain without trailing dot)."""
    local, _, domain = address.rpartition("@")
    return local, domain.lower().rstrip(".")


# A plain dot-atom@ldh-domain, the form nearly every client sends; read without the general RFC 5322
# parsers (aiosmtpd's for MAIL/RCPT, email.utils for From:), which cost more than the rest of a command.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
PLAIN_ADDR_SPEC = rf"{ATEXT}(?:\.{ATEXT})*@{LABEL}(?:\.{LABEL})*"
# `addr` or `Display Name <addr>` with no quoting, comments, groups or lists in the name.
_PLAIN_MAILBOX = re.compile(rf'\s*(?:[^"(),.:;<>@\[\]\\]*<({PLAIN_ADDR_SPEC})>|({PLAIN_ADDR_SPEC}))\s*\Z')


def header_addresses(value: str) -> list[str]:
    """Return the addresses of an address header such as From: (as email.utils reads them)."""
    plain = _PLAIN_MAILBOX.match(value)
    if plain:
        return [plain.group(1) or plain.group(2)]
    return [address for _, address in email.utils.getaddresses([value])]


_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([^\W_]([\w-]{0,61}[^\W_])?\.)*[^\W_]([\w-]{0,61}[^\W_])?$", re.UNICODE)


def address_problem(address: str) -> str | None:
    """Say what is wrong with an envelope address's syntax, or None when it is usable."""
    if "@" not in address:
        return "no domain (expected local-part@domain)"
    local, domain = split_address(address)
    if not local:
        return "empty local part"
    if len(local.encode()) > 64:
        return "local part longer than 64 octets"
    if domain.startswith("["):
        return "IP-literal domains are not accepted"
    if not _DOMAIN_RE.match(domain):
        return f"invalid domain {domain!r}"
    return None


ROUTING_TRICK = "routing characters (%, !, a quoted local part) are not accepted"


# A stored address (a sender, a suppression) has a dot-atom local part: RFC 5322 atext, or any
# non-ASCII character (RFC 6531). No quoting, spaces, brackets or control characters.
_LOCAL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\U0010ffff-]+"
_DOT_ATOM_LOCAL = re.compile(rf"{_LOCAL_ATOM}(?:\.{_LOCAL_ATOM})*\Z")


def mailbox_problem(address: str) -> str | None:
    """Say what keeps ``address`` from being stored as a mailbox (a sender, a suppression), or None."""
    problem = address_problem(address)
    if problem:
        return problem
    if not _DOT_ATOM_LOCAL.match(split_address(address)[0]):
        return "the local part may only have letters, digits, dots and !#$%&'*+/=?^_`{|}~-"
    return None


def suppression_address(text: str) -> str:
    """Read an address to suppress, lower-cased (``Name <address>`` as pasted from a mail client
    is read as the address); raise ValueError saying why when it is not a mailbox."""
    address = text.strip().lower()
    if address.endswith(">") and "<" in address:
        address = address[address.rindex("<") + 1 : -1].strip()
    problem = mailbox_problem(address)
    if problem:
        raise ValueError(f"{address!r} is not an email address: {problem}")
    return address


def header_limits_refusal(data: bytes, *, max_size: int, max_lines: int) -> str | None:
    """Return the reply refusing a header section (of CRLF-normalised ``data``) over ``max_size``
    octets or ``max_lines`` lines (fields and their folded continuation lines), else None. Looks
    at no more than ``max_size`` octets, so it is cheap enough for the event loop whatever the
    message."""
    if data.startswith(b"\r\n"):
        return None  # an empty header section
    end = data.find(b"\r\n\r\n", 0, max_size + 2)
    if end < 0:
        if len(data) > max_size:
            return replies.HEADER_TOO_BIG.format(limit=max_size)
        end = len(data)
    if data.count(b"\r\n", 0, end) >= max_lines:
        return replies.TOO_MANY_HEADER_LINES.format(limit=max_lines)
    return None


def is_routing_trick(local: str) -> bool:
    """Tell whether a local part could smuggle another destination (%-hack, bang path, quoted @)."""
    return any(c in local for c in "%!@") or local.startswith('"')


def sender(address: str) -> Decision | None:
    """Check MAIL FROM syntax ('' is the null sender, always allowed)."""
    if address == "":
        return None
    problem = address_problem(address)
    if problem:
        return Decision(replies.BAD_SENDER_SYNTAX.format(reason=problem), "bad-sender-syntax")
    return None


def recipient(
    address: str, *, authenticated: bool, local_domains: frozenset[str], count: int, limit: int
) -> Decision | None:
    """Decide a RCPT TO: recipient limit, syntax, then relay (no open relay, whatever the trickery)."""
    if count >= limit:
        return Decision(replies.TOO_MANY_RECIPIENTS, "too-many-recipients")
    local, domain = split_address(address)
    # Only mail for the appliance's own domains comes in unauthenticated; any routing trick in
    # the local part or an IP literal could make us forward it elsewhere, so it is relaying.
    if not authenticated and (domain not in local_domains or is_routing_trick(local)):
        return Decision(replies.RELAY_DENIED, "relay-denied")
    if is_routing_trick(local):  # authenticated: still never a second destination (README)
        return Decision(replies.BAD_RECIPIENT_SYNTAX.format(reason=ROUTING_TRICK), "routing-trick")
    problem = address_problem(address)
    if problem:
        return Decision(replies.BAD_RECIPIENT_SYNTAX.format(reason=problem), "bad-recipient-syntax")
    return None


SUBDOMAINS = "*."  # an authorized domain written `*.shop.example` covers shop.example and its subdomains


def domain_authorized(domain: str, authorized_domains: list[str]) -> bool:
    """Tell whether ``domain`` is one of ``authorized_domains``: a plain entry is that domain alone, a
    `*.` entry is that domain and every subdomain of it (`*.shop.example` covers news.shop.example,
    never evilshop.example)."""
    for entry in authorized_domains:
        if entry.startswith(SUBDOMAINS):
            base = entry[len(SUBDOMAINS) :]
            if domain == base or domain.endswith("." + base):
                return True
        elif domain == entry:
            return True
    return False


def sender_authorization(
    address: str,
    *,
    header: bool,
    verified: bool,
    authorized_domains: list[str],
    authorized_senders: list[str],
    mode: str,
    field: str = "From:",
) -> Decision | None:
    """Decide whether an account may send as ``address`` (MAIL FROM, or the ``field`` header,
    From: or Sender:, when ``header``).

    The address must be a verified sender or belong to a verified domain. Then, when the account lists
    authorized domains or senders (both empty: any verified sender), the address must be among them
    (a `*.` domain also covers its subdomains, see domain_authorized); otherwise mode "block" refuses
    and mode "alert" accepts with a 2xx Decision, so it is reported.
    """
    if address == "" and not header:
        return None  # the null sender: bounces and notices (the From: header is checked after DATA)
    shown = address or "(none)"
    if not verified:
        reply = replies.FROM_NOT_VERIFIED if header else replies.SENDER_NOT_VERIFIED
        return Decision(reply.format(address=shown, field=field), "sender-not-verified")
    if not authorized_domains and not authorized_senders:
        return None
    if address.lower() in authorized_senders or domain_authorized(split_address(address)[1], authorized_domains):
        return None
    if mode == "alert":
        return Decision(replies.MAIL_OK, "sender-not-authorized-allowed")
    reply = replies.FROM_NOT_AUTHORIZED_FOR_ACCOUNT if header else replies.SENDER_NOT_AUTHORIZED_FOR_ACCOUNT
    return Decision(reply.format(address=shown, field=field), "sender-not-authorized")


def refuses(decision: Decision | None) -> bool:
    """Tell whether a decision refuses (a 2xx Decision accepts but is reported)."""
    return decision is not None and not decision.reply.startswith("2")


_X_PRIORITY = re.compile(r"^\s*([1-5])")
_WORDS = {
    "importance": {"high": 1, "normal": 3, "low": 5},
    "priority": {"urgent": 1, "normal": 3, "non-urgent": 5},
}


def header_priority(headers: dict[str, str]) -> int | None:
    """Read X-Priority / Importance / Priority (1 highest … 5 lowest); the highest wins."""
    found = []
    match = _X_PRIORITY.match(headers.get("x-priority", ""))
    if match:
        found.append(int(match.group(1)))
    for name, words in _WORDS.items():
        value = headers.get(name, "").strip().lower()
        if value in words:
            found.append(words[value])
    return min(found) if found else None


def effective_priority(account_priority: int, headers: dict[str, str]) -> int:
    """Combine the account's priority with the message's headers; the higher (smaller) wins."""
    from_headers = header_priority(headers)
    return account_priority if from_headers is None else min(account_priority, from_headers)


# Per-message choices an app makes in headers that the relay reads and removes (DESIGN §8).
STREAM_HEADER, TRACK_OPENS_HEADER, TRACK_CLICKS_HEADER = "x-stream", "x-track-opens", "x-track-clicks"
# The campaign and list a message is filed under (Moosend's names; docs/campaigns-and-lists.md).
CAMPAIGN_HEADERS, LIST_HEADER = ("campaign_guid", "x-campaign-id"), "mailing_list_id"
RELAY_HEADERS = (STREAM_HEADER, TRACK_OPENS_HEADER, TRACK_CLICKS_HEADER, *CAMPAIGN_HEADERS, LIST_HEADER)
STREAMS = ("transactional", "broadcast")
_YES_NO = {"yes": True, "no": False}


class Tracking(NamedTuple):
    stream: str
    opens: bool
    clicks: bool


def campaign_and_list(headers: dict[str, str]) -> tuple[str, str]:
    """The campaign id (campaign_guid, else X-Campaign-ID) and the list id (mailing_list_id) a message
    names, lower-cased without spaces or braces ("": none named)."""

    def read(name: str) -> str:
        return headers.get(name, "").strip().strip("{}<>").strip().lower()

    return read(CAMPAIGN_HEADERS[0]) or read(CAMPAIGN_HEADERS[1]), read(LIST_HEADER)


def stream_and_tracking(headers: dict[str, str], stream: str, opens: bool | None, clicks: bool | None) -> Tracking:
    """The message's stream and tracking: its X-Stream, X-Track-Opens and X-Track-Clicks headers
    over the account's choices (``opens``/``clicks`` None: the stream's default, on for broadcast).
    Raises ValueError with a sentence for a value that is none of those the headers take."""
    chosen = headers.get(STREAM_HEADER)
    if chosen is not None:
        stream = chosen.strip().lower()
        if stream not in STREAMS:
            raise ValueError(f"X-Stream must be transactional or broadcast, not {chosen.strip()[:40]!r}")
    flags = []
    for name, account_choice in ((TRACK_OPENS_HEADER, opens), (TRACK_CLICKS_HEADER, clicks)):
        value = headers.get(name)
        if value is None:
            flags.append(stream == "broadcast" if account_choice is None else account_choice)
        elif value.strip().lower() in _YES_NO:
            flags.append(_YES_NO[value.strip().lower()])
        else:
            shown = "-".join(part.capitalize() for part in name.split("-"))
            raise ValueError(f"{shown} must be yes or no, not {value.strip()[:40]!r}")
    return Tracking(stream, *flags)
