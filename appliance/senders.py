"""Verified senders, each SMTP account's authorized domains and senders, and the check at MAIL FROM
and on the From: header (the rule itself is acceptance.sender_authorization)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from . import alerts, audit, clock, notices
from .models import DEFERRED, HELD, QUEUED, Delivery, Domain, Message, Sender, SmtpAccount
from .policy import acceptance

BLOCK, ALERT = "block", "alert"
MODES = (BLOCK, ALERT)
_SEPARATORS = re.compile(r"[;,\s]+")


class SenderError(ValueError):
    """Input for a sender that cannot be used, or a link that does not verify (shown as is)."""


def normalize_address(address: str) -> str:
    """Lower-case and check an address; raise SenderError when it is not one."""
    address = address.strip().lower()
    problem = acceptance.mailbox_problem(address)
    if problem:
        raise SenderError(f"{address!r} is not an email address: {problem}")
    return address


def parse_domain(part: str) -> str:
    """Normalize one authorized domain, `shop.example` or `*.shop.example` (it and its subdomains);
    raise SenderError saying what is wrong with it."""
    name = part.lower().rstrip(".")
    wildcard = name.startswith(acceptance.SUBDOMAINS)
    base = name[len(acceptance.SUBDOMAINS) :] if wildcard else name
    if "*" in base:
        raise SenderError(f"{part!r} is not a domain name: a * may only begin an entry, as in *.shop.example")
    if acceptance.address_problem(f"postmaster@{base}"):
        raise SenderError(f"{part!r} is not a domain name")
    if wildcard and "." not in base:
        raise SenderError(
            f"{part!r} would cover every domain under .{base}: name your own domain, as in *.shop.example"
        )
    return name


def parse_domains(text: str) -> list[str]:
    """Read authorized domains separated by `;` (or `,` or whitespace); return them normalized."""
    return list(dict.fromkeys(parse_domain(p) for p in _SEPARATORS.split(text.strip()) if p))


def parse_senders(text: str) -> list[str]:
    """Read authorized sender addresses separated by `;` (or `,` or whitespace); return them normalized."""
    return list(dict.fromkeys(normalize_address(p) for p in _SEPARATORS.split(text.strip()) if p))


class AuthorizationError(SenderError):
    """An account's sender authorization that cannot be saved; ``errors`` holds a sentence per
    field (``authorized_domains``, ``authorized_senders``, ``sender_mode``), for forms."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def authorization(domains: str | None = None, addresses: str | None = None, mode: str | None = None) -> dict[str, str]:
    """Check the sender authorization given (None: leave it): the authorized domains and senders
    (separated by `;`, `,` or whitespace) and the mode (block or alert); return them as SmtpAccount
    fields, or raise AuthorizationError naming each bad one. Nothing is saved."""
    values, errors = {}, {}
    for field, text, parse in (
        ("authorized_domains", domains, parse_domains),
        ("authorized_senders", addresses, parse_senders),
    ):
        if text is not None:
            try:
                values[field] = "\n".join(parse(text))
            except SenderError as exc:
                errors[field] = str(exc)
    if mode is not None:
        if mode in MODES:
            values["sender_mode"] = mode
        else:
            errors["sender_mode"] = f"the mode is block or alert, not {mode!r}"
    if errors:
        raise AuthorizationError(errors)
    return values


def authorize(account: SmtpAccount, values: dict[str, str]) -> None:
    """Save an account's sender authorization (checked by ``authorization``) and its audit entry."""
    if not values:
        return
    SmtpAccount.update(**values).where(SmtpAccount.id == account.id).execute()
    shown = {k: v.replace("\n", ", ") or "-" for k, v in values.items()}
    audit.record(
        "account.authorization",
        f"account {account.username}",
        "; ".join(
            f"{label} {shown[k]}"
            for k, label in (
                ("sender_mode", "mode"),
                ("authorized_domains", "domains:"),
                ("authorized_senders", "senders:"),
            )
            if k in shown
        ),
    )


def lines(text: str) -> list[str]:
    """The stored form of a list (one item per line) as a list."""
    return [x for x in text.split() if x]


# -- senders -----------------------------------------------------------------------------------
def find(ref: str) -> Sender | None:
    """Find a sender by id or address."""
    ref = ref.strip()
    if ref.isdigit():
        return Sender.get_or_none(Sender.id == int(ref))
    return Sender.get_or_none(Sender.email == ref.lower())


def add(address: str, *, verified_by_admin: bool = False) -> Sender:
    """Add a sender address; an admin may mark it verified at once (recorded as such)."""
    address = normalize_address(address)
    if find(address):
        raise SenderError(f"{address} is already a sender")
    now = clock.now()
    return Sender.create(
        email=address,
        created_at=now,
        verified_at=now if verified_by_admin else None,
        verified_by="admin" if verified_by_admin else "",
    )


def create(settings: dict, address: str, *, verified: bool = False) -> tuple[Sender, str | None]:
    """Add a sender as an admin does (the dashboard, the CLI and the API): mail it a verification
    link, or, ``verified``, vouch for it at once; return it and the link's message id (None when
    vouched for). Raise SenderError when it is no address, is a sender already, or the link could
    only be opened on this machine (``link_problem``)."""
    problem = None if verified else link_problem(settings)
    if problem:
        raise SenderError(problem)
    sender = add(address, verified_by_admin=verified)
    audit.record("sender.add", f"sender {sender.email}", "verified by the admin" if verified else "link mailed")
    return sender, None if verified else send_verification(settings, sender)


def delete(sender: Sender) -> None:
    """Delete a sender: mail from it is refused again unless its domain is verified."""
    sender.delete_instance()
    audit.record("sender.delete", f"sender {sender.email}")


def mark_verified(sender: Sender, by: str) -> Sender:
    """Record that ``sender`` is verified, and how ("link" or "admin")."""
    if sender.verified_at is None:
        sender.verified_at, sender.verified_by = clock.now(), by
        sender.save()
    return sender


def _serializer(settings: dict) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings["SECRET_KEY"], salt="sender-verification")


def link_base(settings: dict) -> str:
    """Where the links in the appliance's mail point: PUBLIC_URL, else the dashboard's WEB_LISTEN."""
    return settings["PUBLIC_URL"].rstrip("/") or f"http://{settings['WEB_LISTEN']}"


def link_problem(settings: dict) -> str | None:
    """Why a verification link cannot be mailed now: its address opens only on this machine (a
    loopback or wildcard address, or localhost), so the owner's phone could never open it."""
    base = link_base(settings)
    host = (urlsplit(base).hostname or "").lower()
    try:
        local = ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        local = host == "localhost" or host.endswith(".localhost")
    if not local:
        return None
    where = "PUBLIC_URL" if settings["PUBLIC_URL"] else "WEB_LISTEN (PUBLIC_URL is empty)"
    return (
        f"No link was mailed: it would point at {base}, from {where}, which only this machine can open. "
        "Set PUBLIC_URL to the address people reach the dashboard at, or, if you own the address, "
        "vouch for it (mark it verified) instead."
    )


def verification_url(settings: dict, sender: Sender) -> str:
    """Return the signed link that verifies ``sender`` (it expires after VERIFY_LINK_TTL seconds)."""
    token = _serializer(settings).dumps({"id": sender.id, "email": sender.email})
    return f"{link_base(settings)}/verify/{token}"


def _link_subject(sender: Sender) -> str:
    return f"Verify {sender.email} as a sender"


def pending_links(sender: Sender) -> list[Delivery]:
    """The verification mails to ``sender`` still waiting to go out: not needed once it is verified."""
    return list(
        Delivery.select()
        .join(Message)
        .where(
            Message.account.is_null()
            & (Message.subject == _link_subject(sender))
            & (Delivery.rcpt == sender.email)
            & Delivery.status.in_([QUEUED, DEFERRED, HELD])
        )
    )


def sender_for_token(settings: dict, token: str) -> Sender:
    """The sender a verification link names; raise SenderError saying why a link does not work."""
    try:
        data = _serializer(settings).loads(token, max_age=settings["VERIFY_LINK_TTL"])
    except SignatureExpired:
        raise SenderError("This verification link has expired. Ask the admin to send a new one.") from None
    except BadSignature:
        raise SenderError("This verification link is not valid (it may have been cut short when copied).") from None
    sender = Sender.get_or_none((Sender.id == data.get("id")) & (Sender.email == data.get("email")))
    if sender is None:
        raise SenderError("This sender address was removed from the relay; the link no longer applies.")
    return sender


def verify_token(settings: dict, token: str) -> Sender:
    """Verify the sender a link names (as ``sender_for_token`` reads it)."""
    return mark_verified(sender_for_token(settings, token), "link")


def send_verification(settings: dict, sender: Sender) -> str:
    """Mail ``sender`` a verification link through the appliance itself; return the message id.
    Raise SenderError (``link_problem``) when the link could not be opened anywhere but here."""
    problem = link_problem(settings)
    if problem:
        raise SenderError(problem)
    hours = settings["VERIFY_LINK_TTL"] // 3600
    text = (
        f"Someone (we hope you) asked the mail relay {settings['HOSTNAME']} to send mail as {sender.email}.\n\n"
        f"To allow it, open this link within {hours} hours and press the button there:\n\n"
        f"{verification_url(settings, sender)}\n\n"
        "If you did not expect this, ignore this message: nothing is sent as you until the button is pressed.\n"
    )
    message_id = notices.send(settings, [sender.email], _link_subject(sender), text)
    sender.link_sent_at = clock.now()
    sender.save()
    return message_id


# -- the check at MAIL FROM and on the From: header -----------------------------------------------
def is_verified(address: str) -> bool:
    """Tell whether ``address`` is a verified sender or belongs to a verified domain."""
    address = address.lower()
    if Sender.select().where((Sender.email == address) & Sender.verified_at.is_null(False)).exists():
        return True
    return Domain.verified_for(acceptance.split_address(address)[1]) is not None


def check(
    settings: dict, account_id: int, addresses: list[str], *, header: bool, field: str = "From:"
) -> acceptance.Decision | None:
    """Look the account and addresses up, ask policy, raise an alert when an unauthorized sender is
    seen; return the first refusal, else None (blocking: the SMTP hooks run it on their executor).
    ``field`` names the header (From: or Sender:) the addresses were read from."""
    account = SmtpAccount.get_by_id(account_id)
    domains, allowed = lines(account.authorized_domains), lines(account.authorized_senders)
    where = f"{field} header" if header else "MAIL FROM"
    for address in addresses or [""]:  # a From: without a readable address is refused
        verified = bool(address) and "@" in address and is_verified(address)
        decision = acceptance.sender_authorization(
            address,
            header=header,
            verified=verified,
            authorized_domains=domains,
            authorized_senders=allowed,
            mode=account.sender_mode,
            field=field,
        )
        if decision is None:
            continue
        refused = acceptance.refuses(decision)
        alerts.raise_alert(
            settings,
            alerts.UNAUTHORIZED_SENDER_BLOCKED if refused else alerts.UNAUTHORIZED_SENDER_ALLOWED,
            f"account {account.username}",
            f"{where} {address or '(none)'}: {decision.reason}" + ("" if refused else " (accepted: alert mode)"),
        )
        if refused:
            return decision
    return None
