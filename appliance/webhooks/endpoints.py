"""Webhook endpoints: the one validation of a URL, its event types and accounts, and the SSRF guard
that every call passes again (docs/webhooks.md). The dashboard and the CLI create, list, change and
delete endpoints through these functions only."""

from __future__ import annotations

import base64
import ipaddress
import secrets
import threading
import time
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from .. import audit, clock, dns, events
from ..models import SmtpAccount, Webhook

SECRET_PREFIX = "whsec_"  # Standard Webhooks: the secret is this prefix and the base64 of the key
SECRET_BYTES = 32
MAX_URL = 2000
CACHE_SECONDS = 5  # how stale the subscriber's list of active endpoints may be in another process


class WebhookError(ValueError):
    """A request about webhooks that cannot be done, saying why in a sentence."""


class Target(NamedTuple):
    """Where one call goes: the URL's parts and the vetted address to connect to."""

    scheme: str
    host: str
    port: int
    path: str  # with the query
    address: str


# -- the SSRF guard -------------------------------------------------------------------------------
def _kind(address: str) -> str:
    """What kind of non-public address this is ("" for a public one)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    for kind, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
    ):
        if flag:
            return kind
    return "" if ip.is_global else "reserved"


def _split(url: str) -> tuple[str, str, int, str]:
    """Read a webhook URL into (scheme, host, port, path); raise WebhookError with what is wrong."""
    url = url.strip()
    if not url:
        raise WebhookError("a webhook needs a URL, like https://shop.example.com/hooks/mail")
    if len(url) > MAX_URL:
        raise WebhookError(f"the URL is longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise WebhookError("the URL contains a space or a control character")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookError(f"{url} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookError(f"{url} is not an http:// or https:// URL")
    if not parts.hostname:
        raise WebhookError(f"{url} has no host name")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("the URL carries a user name or password: put a token in its path or query instead")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def _addresses(settings: dict, host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        found = dns.addresses(settings, host)
    except dns.DnsError as exc:
        raise WebhookError(f"{host} does not resolve ({exc})") from None
    if not found:
        raise WebhookError(f"{host} has no address (no A or AAAA record)")
    return found


def target(settings: dict, url: str) -> Target:
    """Check ``url`` and resolve its host through the appliance's DNS; return where to connect.

    Unless WEBHOOK_ALLOW_PRIVATE is true, a host with any loopback, private, link-local, multicast,
    unspecified or otherwise non-public address is refused (one such address is enough: the other
    may be what the next lookup gives)."""
    scheme, host, port, path = _split(url)
    found = _addresses(settings, host)
    if not settings["WEBHOOK_ALLOW_PRIVATE"]:
        for address in found:
            kind = _kind(address)
            if kind:
                shown = host if host == address else f"{host} resolves to {address},"
                raise WebhookError(
                    f"{shown} a {kind} address: webhooks may only reach public addresses "
                    "unless WEBHOOK_ALLOW_PRIVATE is true"
                )
    return Target(scheme, host, port, path, found[0])


# -- what an endpoint wants ----------------------------------------------------------------------
def event_types(given: list[str] | str) -> list[str]:
    """Read event types (a list, or text separated by commas or spaces); [] means every type."""
    names = given.replace(",", " ").split() if isinstance(given, str) else [n for g in given for n in g.split(",")]
    wanted = []
    for name in (n.strip().lower() for n in names):
        if not name or name in wanted:
            continue
        if name not in events.TYPES:
            raise WebhookError(f"{name!r} is not an event type (the types: {', '.join(events.TYPES)})")
        wanted.append(name)
    return [] if set(wanted) == set(events.TYPES) else wanted


def accounts(given: list[str] | str) -> list[SmtpAccount]:
    """Read SMTP accounts by id or username (a list, or text separated by commas or spaces); [] means all."""
    names = given.replace(",", " ").split() if isinstance(given, str) else [n for g in given for n in g.split(",")]
    found: list[SmtpAccount] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        account = SmtpAccount.get_or_none(
            (SmtpAccount.id == int(name)) if name.isdigit() else (SmtpAccount.username == name.lower())
        )
        if account is None:
            raise WebhookError(f"there is no SMTP account {name!r} (give its id or its username)")
        if account not in found:
            found.append(account)
    return found


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def create(settings: dict, url: str, types: list[str] | str = "", account_names: list[str] | str = "") -> Webhook:
    """Add an endpoint (its secret is on the returned row: show it once); raise WebhookError."""
    target(settings, url)
    wanted, owners = event_types(types), accounts(account_names)
    hook = Webhook.create(
        url=url.strip(),
        event_types=" ".join(wanted),
        account_ids=" ".join(str(a.id) for a in owners),
        secret=new_secret(),
        created_at=clock.now(),
    )
    audit.record("webhook.create", f"webhook {hook.id}", describe(hook))
    invalidate()
    return hook


def get(webhook_id: int | str) -> Webhook:
    text = str(webhook_id).strip()
    hook = Webhook.get_or_none(Webhook.id == int(text)) if text.isdigit() else None
    if hook is None:
        raise WebhookError(f"there is no webhook {text}")
    return hook


def listed() -> list[Webhook]:
    return list(Webhook.select().order_by(Webhook.id))


def delete(webhook_id: int | str) -> Webhook:
    """Delete an endpoint with its waiting events and its calls."""
    hook = get(webhook_id)
    hook.delete_instance()
    audit.record("webhook.delete", f"webhook {hook.id}", hook.url)
    invalidate()
    return hook


def set_active(webhook_id: int | str, active: bool) -> Webhook:
    """Turn an endpoint on (its waiting events go out again) or off (nothing is sent or recorded for it)."""
    hook = get(webhook_id)
    hook.active = active
    if active:
        hook.failing_since, hook.disabled_reason = None, ""
    hook.save()
    audit.record(f"webhook.{'enable' if active else 'disable'}", f"webhook {hook.id}", hook.url)
    invalidate()
    return hook


def type_list(hook: Webhook) -> list[str]:
    return hook.event_types.split()


def account_usernames(hook: Webhook) -> list[str]:
    ids = [int(i) for i in hook.account_ids.split()]
    if not ids:
        return []
    names = dict(SmtpAccount.select(SmtpAccount.id, SmtpAccount.username).where(SmtpAccount.id.in_(ids)).tuples())
    return [names.get(i) or f"(deleted account {i})" for i in ids]


def describe(hook: Webhook) -> str:
    types = ", ".join(type_list(hook)) or "every event"
    owners = ", ".join(account_usernames(hook)) or "every account"
    return f"{hook.url} ({types}; {owners})"


def as_dict(hook: Webhook) -> dict[str, Any]:
    """An endpoint as the CLI's JSON shows it (never its secret)."""
    return {
        "id": hook.id,
        "url": hook.url,
        "events": type_list(hook),  # [] : every type
        "accounts": account_usernames(hook),  # [] : every account
        "active": hook.active,
        "created_at": hook.created_at,
        "failing_since": hook.failing_since,
        "last_success_at": hook.last_success_at,
        "disabled_reason": hook.disabled_reason or None,
    }


# -- the subscriber's view: active endpoints, cached -----------------------------------------------
class Subscription(NamedTuple):
    id: int
    types: frozenset[str] | None  # None: every type
    accounts: frozenset[int] | None  # None: every account

    def wants(self, type_: str, account_id: int | None) -> bool:
        return (self.types is None or type_ in self.types) and (
            self.accounts is None or (account_id is not None and account_id in self.accounts)
        )


_cache: list = [0.0, []]  # [valid until (monotonic), subscriptions]
_cache_lock = threading.Lock()


def invalidate() -> None:
    """Make the next ``subscriptions`` read the table (a change made in this process)."""
    _cache[0] = 0.0


def subscriptions() -> list[Subscription]:
    """The active endpoints, read at most every CACHE_SECONDS (every commit asks)."""
    with _cache_lock:
        if _cache[0] > time.monotonic():
            return _cache[1]
        rows = Webhook.select(Webhook.id, Webhook.event_types, Webhook.account_ids).where(Webhook.active).tuples()
        found = [
            Subscription(
                i,
                frozenset(types.split()) or None,
                frozenset(int(a) for a in ids.split()) or None,
            )
            for i, types, ids in rows
        ]
        _cache[:] = [time.monotonic() + CACHE_SECONDS, found]
        return found
