"""aiosmtpd subclass and handler: thin hooks that ask accounts/policy and hand mail to intake.

Blocking work (password checks, database reads, message preparation) runs in an executor, never on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import functools
import logging
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from .. import accounts, bounces, db, intake, limits, policy, returnpath, senders, sending_policy
from ..db import database
from ..models import SmtpAccount
from . import replies

log = logging.getLogger(__name__)

NULL_SENDER = "<>"  # marker: aiosmtpd would refuse MAIL FROM:<> as a syntax error

# RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF (1001 with a stuffed dot).
MAX_LINE = 999
# A plain <dot-atom@ldh-domain> is read without aiosmtpd's general parser (policy.PLAIN_ADDR_SPEC).
_PLAIN_ADDRESS = re.compile(rf"<({policy.PLAIN_ADDR_SPEC})>(.*)\Z", re.S)


def has_long_line(data: bytes, limit: int = MAX_LINE) -> bool:
    """Tell whether a CRLF-separated line of ``data`` is longer than ``limit`` octets.

    Looks only at the lines around every ``limit``-th octet: a longer line must cover one of those
    positions. For a 10 KB message that is a dozen short searches instead of splitting it into
    lines (a third of the time)."""
    find, rfind, size = data.find, data.rfind, len(data)
    for position in range(0, size, limit):
        start = rfind(b"\r\n", 0, position + 1)
        start = 0 if start < 0 else start + 2
        if start > position:  # the position is the LF of a line break
            continue
        end = find(b"\r\n", position)
        if (size if end < 0 else end) - start > limit:
            return True
    return False


class AuthThrottle:
    """Failed AUTH attempts per client IP over a sliding window; loop thread only, so no lock."""

    def __init__(self, max_failures: int, window: float, cooldown: float):
        self.max_failures, self.window, self.cooldown = max_failures, window, cooldown
        self._failures: dict[str, deque] = {}
        self._cool_until: dict[str, float] = {}

    def cooling(self, ip: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        until = self._cool_until.get(ip)
        if until is None:
            return False
        if now >= until:
            del self._cool_until[ip]
            return False
        return True

    def failed(self, ip: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        recent = self._failures.setdefault(ip, deque())
        recent.append(now)
        while recent and recent[0] < now - self.window:
            recent.popleft()
        if len(recent) >= self.max_failures:
            self._cool_until[ip] = now + self.cooldown
            recent.clear()
        if len(self._failures) > 10000:  # bound memory under a spray from many IPs
            self._failures = {k: v for k, v in self._failures.items() if v}


@dataclass
class ServerContext:
    """What every SMTP connection shares: settings, intake, throttles and executors."""

    settings: dict[str, Any]
    committer: intake.GroupCommitter
    throttle: AuthThrottle
    executor: concurrent.futures.Executor
    local_domains: frozenset[str]
    active: int = 0

    @classmethod
    def build(cls, settings: dict[str, Any], committer: intake.GroupCommitter) -> ServerContext:
        domains = {settings["HOSTNAME"].lower()}
        domains.update(d.strip().lower() for d in settings["LOCAL_DOMAINS"].split(",") if d.strip())
        return cls(
            settings=settings,
            committer=committer,
            throttle=AuthThrottle(
                settings["AUTH_FAILURES_PER_IP"], settings["AUTH_FAILURE_WINDOW"], settings["AUTH_COOLDOWN"]
            ),
            executor=concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="smtp-work"),
            local_domains=frozenset(domains),
        )


def _in_db(fn, *args, **kwargs):
    """Run ``fn`` on an executor thread with that thread's database connection."""
    database.connect(reuse_if_open=True)
    return fn(*args, **kwargs)


def _mail_from_checks(settings: dict, account_id: int, sender: str, sender_known: bool, version: int | None):
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
    return None, None, limits.check_mail(settings, account_id), cacheable


_SESSION_REFUSALS = {
    accounts.SESSION_DELETED: replies.SESSION_ACCOUNT_DELETED,
    accounts.SESSION_DISABLED: replies.SESSION_ACCOUNT_DISABLED,
    accounts.SESSION_CREDENTIALS_CHANGED: replies.SESSION_CREDENTIALS_CHANGED,
}


class ApplianceSMTP(SMTP):
    """One SMTP connection. Extends aiosmtpd with connection caps, async credential checks,
    per-connection and per-IP failure counting, and our reply wording."""

    # aiosmtpd's default challenges contain a NUL byte that breaks curl and Go clients (aiosmtpd#566).
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, ctx: ServerContext, *, implicit_tls: bool, mx: bool, tls_context, loop):
        s = ctx.settings
        super().__init__(
            Handler(ctx),
            hostname=s["HOSTNAME"],
            ident="ESMTP ready",
            data_size_limit=s["MAX_MESSAGE_SIZE"],
            enable_SMTPUTF8=True,
            # On the implicit-TLS port the socket is TLS from the first byte; aiosmtpd only knows
            # about STARTTLS, so it must not be told to require TLS there (aiosmtpd#274).
            tls_context=None if implicit_tls else tls_context,
            auth_require_tls=not implicit_tls,
            timeout=s["SMTP_TIMEOUT"],
            loop=loop,
        )
        self.ctx = ctx
        self.implicit_tls = implicit_tls
        self.mx = mx
        self.account: SmtpAccount | None = None
        self.username: str | None = None
        self.credential_version = 0  # the account's, when this session signed in
        self.ip_only_account: SmtpAccount | None | bool = False  # False: not looked up yet
        # Sender addresses this session's account was allowed to use (lower-cased). Looking them
        # up again for every message and again on its From: header was a quarter of intake's CPU.
        self.allowed_senders: set[str] = set()
        self.auth_failures = 0
        self._counted = False

    # -- connection ---------------------------------------------------------------------------
    @property
    def peer_ip(self) -> str:
        peer = self.session.peer if self.session else None
        return peer[0] if isinstance(peer, tuple) else str(peer or "")

    def connection_made(self, transport) -> None:
        if not self._counted and self._original_transport is None:
            self._counted = True
            self.ctx.active += 1
        super().connection_made(transport)

    def connection_lost(self, error) -> None:
        if self._counted:
            self._counted = False
            self.ctx.active -= 1
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self.ctx.active > self.ctx.settings["MAX_CONNECTIONS"]:
            await self.push(replies.TOO_MANY_CONNECTIONS)
            self.transport.close()
            return
        await super()._handle_client()

    @property
    def tls_info(self) -> str:
        """Return 'TLSv1.3 TLS_AES_256_GCM_SHA384' for an encrypted session, '' otherwise."""
        if self.transport is None:
            return ""
        ssl_object = self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return ""
        cipher = ssl_object.cipher()
        return f"{ssl_object.version()} {cipher[0] if cipher else ''}".strip()

    async def push(self, status) -> None:
        if isinstance(status, str):
            status = replies.AIOSMTPD_REWRITES.get(status, status)
        await super().push(status)

    async def run_blocking(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.ctx.executor, functools.partial(_in_db, fn, *args, **kwargs))

    # -- AUTH ---------------------------------------------------------------------------------
    async def smtp_AUTH(self, arg: str) -> None:
        if self.session.host_name and self.session.extended_smtp and not self.tls_info:
            await self._record_plaintext_attempt(arg)
        elif self.ctx.throttle.cooling(self.peer_ip):
            await self.push(replies.TOO_MANY_AUTH_FAILURES)
            self.transport.close()
            return
        await super().smtp_AUTH(arg)

    async def _record_plaintext_attempt(self, arg: str | None) -> None:
        """AUTH PLAIN with an initial response before TLS: tell the account's admin why it failed."""
        parts = (arg or "").split()
        if len(parts) != 2 or parts[0].upper() != "PLAIN":
            return
        try:
            _, login, _ = base64.b64decode(parts[1], validate=True).split(b"\x00")
        except (binascii.Error, ValueError):
            return
        await self.run_blocking(
            accounts.record_failure_for_username, login.decode("utf-8", "replace"), self.peer_ip, accounts.NO_TLS
        )

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # aiosmtpd calls this synchronously; hand the parsed credentials back to _verify instead.
        return AuthResult(success=False, handled=False, auth_data=auth_data)

    async def auth_PLAIN(self, _, args):
        return await self._verify(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _, args):
        return await self._verify(await super().auth_LOGIN(_, args))

    async def _verify(self, parsed: AuthResult) -> AuthResult:
        if not isinstance(parsed.auth_data, LoginPassword):
            return parsed  # the client's blob did not parse; aiosmtpd has replied already
        ip = self.peer_ip
        username = parsed.auth_data.login.decode("utf-8", "replace")
        password = parsed.auth_data.password.decode("utf-8", "replace")
        result = await self.run_blocking(accounts.verify, username, password, ip)
        if result.failure is None:
            try:
                await asyncio.wrap_future(accounts.record_login(result.account.id, ip))
            except db.WRITE_ERRORS as exc:  # bookkeeping: the sign-in itself stands
                log.error("could not record the login of %r: %s", username, exc)
            self.account, self.username = result.account, result.account.username
            self.credential_version = result.account.credential_version
            self.allowed_senders = set()
            return AuthResult(success=True, auth_data=username, message=replies.AUTH_SUCCESS)
        self.auth_failures += 1
        self.ctx.throttle.failed(ip)
        log.info("AUTH failed for %r from %s: %s", username, ip, result.failure)
        if (
            self.auth_failures >= self.ctx.settings["AUTH_FAILURES_PER_CONNECTION"]
            or self.ctx.throttle.cooling(ip)
        ):
            await self.push(replies.TOO_MANY_AUTH_FAILURES)
            self.transport.close()
            return AuthResult(success=False, handled=True)
        message = {
            accounts.IP_NOT_AUTHORIZED: replies.IP_NOT_AUTHORIZED.format(ip=ip),
            accounts.ACCOUNT_DISABLED: replies.ACCOUNT_DISABLED,
        }.get(result.failure, replies.BAD_CREDENTIALS)
        return AuthResult(success=False, handled=False, message=message)

    # -- DATA ---------------------------------------------------------------------------------
    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd reads DATA line by line (a readuntil and a debug log per line); reading up to
        # each ".\r\n" costs a few calls per message instead. Replies and checks stay the same.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            raw, too_big = await self._read_data()
        except asyncio.IncompleteReadError:
            return  # the client went away in the middle: nothing to answer
        except asyncio.CancelledError:
            self._writer.close()
            raise
        if too_big or has_long_line(raw):
            await self.push(replies.MESSAGE_TOO_BIG if too_big else replies.LINE_TOO_LONG)
            self._set_post_data_state()
            return
        # RFC 5321 §4.5.2: remove the dot the client added in front of every line starting with one.
        content = (raw[1:] if raw.startswith(b".") else raw).replace(b"\r\n.", b"\r\n")
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    async def _read_data(self) -> tuple[bytes, bool]:
        """Read the message up to the <CRLF>.<CRLF> that ends it (dot-stuffed, without the final
        dot line); past MAX_MESSAGE_SIZE keep reading to stay in step, but keep nothing."""
        reader, limit = self._reader, self.data_size_limit
        pieces: list[bytes] = []
        size, too_big, tail = 0, False, b"\r\n"  # a lone "." as the very first line ends DATA too
        while True:
            try:
                piece = await reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as exc:  # no ".\r\n" within the reader's line limit
                piece = await reader.readexactly(exc.consumed)
            else:
                before = piece[:-3]
                if (tail + before)[-2:] == b"\r\n":  # the dot starts a line: end of DATA
                    piece = before
                    size += len(piece)
                    if not too_big and not (limit and size > limit):
                        pieces.append(piece)
                    return b"".join(pieces), too_big or bool(limit and size > limit)
            size += len(piece)
            tail = (tail + piece)[-2:]
            if limit and size > limit:
                too_big = True
                pieces.clear()
            elif not too_big:
                pieces.append(piece)

    # -- envelope -----------------------------------------------------------------------------
    def _getaddr(self, arg: str):
        arg = arg.lstrip()
        if arg.startswith("<>"):
            return NULL_SENDER, arg[2:].strip()
        if arg.startswith("<") and ">" not in arg:
            return None, None  # the email parser would accept "<a@b" as a@b
        plain = _PLAIN_ADDRESS.match(arg)
        if plain:
            return plain.group(1), plain.group(2)
        return super()._getaddr(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        # Without this, a client skipping MAIL gets aiosmtpd's 503 instead of the 530 it must see.
        if self.session.host_name and not self.mx and await self.sending_account() is None:
            await self.push(replies.AUTH_REQUIRED)
            return
        await super().smtp_RCPT(arg)

    def sign_out(self, reason: str) -> str:
        """End this session's sign-in (its account changed since AUTH); return the reply that
        says why. The client may AUTH again on the same connection."""
        log.info("session of %r from %s refused at MAIL FROM: %s", self.username, self.peer_ip, reason)
        self.account = self.username = None
        self.session.authenticated = False
        self.allowed_senders = set()
        return _SESSION_REFUSALS[reason]

    async def sending_account(self) -> SmtpAccount | None:
        """Return the AUTH account, else the IP-only account for the client's network (looked up once)."""
        if self.account is not None:
            return self.account
        if self.ip_only_account is False:
            self.ip_only_account = await self.run_blocking(accounts.ip_only_account_for, self.peer_ip)
        return self.ip_only_account or None


class Handler:
    """aiosmtpd hooks: each parses, asks policy, and replies."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx

    async def handle_exception(self, error: Exception) -> str:
        # Without this aiosmtpd answers "500 Error: (ExceptionName) text": a bare 500 that shows
        # our internals and tells the client to give up. A fault of ours is temporary.
        log.error("SMTP session error", exc_info=error)
        return replies.LOCAL_ERROR

    async def handle_MAIL(self, server: ApplianceSMTP, session, envelope, address: str, mail_options):
        account = await server.sending_account()
        if account is None and not server.mx:
            return replies.AUTH_REQUIRED
        decision = policy.sender("" if address == NULL_SENDER else address)
        if decision:
            return decision.reply
        envelope.policy_hold = None
        envelope.reported = []  # ids of the messages whose return paths are recipients (bounces.py)
        if account is not None:
            sender = "" if address == NULL_SENDER else address
            known = sender.lower() in server.allowed_senders
            signed_in = server.account is not None
            answered, verdict = limits.cached_verdict(account.id) if known else (False, None)
            if answered and signed_in:  # the policy is cached; the account's state never is
                expired = await server.run_blocking(
                    accounts.session_refusal, account.id, server.credential_version
                )
                if expired:
                    return server.sign_out(expired)
            if not answered:  # something to look up: off the loop
                expired, decision, verdict, cacheable = await server.run_blocking(
                    _mail_from_checks, self.ctx.settings, account.id, sender, known,
                    server.credential_version if signed_in else None,
                )
                if expired:
                    return server.sign_out(expired)
                if decision:
                    return decision.reply
                if cacheable:
                    server.allowed_senders.add(sender.lower())
            if verdict is not None and verdict.action != sending_policy.HOLD:
                return verdict.reply
            envelope.policy_hold = verdict  # accepted; intake stores its deliveries as held
        envelope.mail_from = address  # NULL_SENDER stays a marker: aiosmtpd treats "" as "no MAIL yet"
        envelope.mail_options.extend(mail_options)
        return replies.MAIL_OK

    async def handle_RCPT(self, server: ApplianceSMTP, session, envelope, address: str, rcpt_options):
        account = await server.sending_account()
        if account is None and not server.mx:
            return replies.AUTH_REQUIRED
        if address == NULL_SENDER:
            return replies.MALFORMED_ADDRESS
        limit = self.ctx.settings["MAX_RECIPIENTS"]
        returned = returnpath.message_for(self.ctx.settings, address) if server.mx else None
        if returned and len(envelope.rcpt_tos) < limit:  # a later bounce or a complaint (bounces.py)
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            envelope.reported.append(returned)
            return replies.RCPT_OK
        decision = policy.recipient(
            address,
            authenticated=account is not None,
            local_domains=self.ctx.local_domains,
            count=len(envelope.rcpt_tos),
            limit=limit,
        )
        if decision:
            return decision.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.RCPT_OK

    async def handle_DATA(self, server: ApplianceSMTP, session, envelope):
        account = await server.sending_account()
        settings = self.ctx.settings
        prepare = functools.partial(
            intake.prepare,
            envelope.original_content,
            mail_from="" if envelope.mail_from == NULL_SENDER else envelope.mail_from,
            rcpts=list(envelope.rcpt_tos),
            hostname=settings["HOSTNAME"],
            client_ip=server.peer_ip,
            client_helo=session.host_name or "",
            tls=server.tls_info,
            username=server.username,
            account_id=account.id if account else None,
            account_priority=account.priority if account else 3,
            direction="outbound" if account else "inbound",
        )
        hold = envelope.policy_hold
        allowed = frozenset(server.allowed_senders)
        # Mail to a return path of ours (a later bounce, a complaint) is applied as it is stored.
        arrival = bounces.Arrival(settings, envelope.reported) if envelope.reported else None

        def admit() -> intake.Incoming:
            # Runs on the writer thread, right before the message is stored (no executor hop).
            item = prepare()
            if account is not None:  # the From: header is held to the same rule as MAIL FROM
                unknown = [a for a in item.from_addresses if a.lower() not in allowed]
                if unknown or not item.from_addresses:
                    decision = senders.check(settings, account.id, unknown, header=True)
                    if decision:
                        raise intake.Refused(decision.reply)
            if hold is not None:
                item.hold_reply, item.hold_until = limits.held_reply(hold), hold.release_at
            return arrival.read(item) if arrival else item

        try:
            kind = {"store": arrival.store, "after": arrival.committed} if arrival else {}
            message_id = await self.ctx.committer.accept(admit, **kind)
        except intake.MalformedMessage as exc:
            return replies.MALFORMED_MESSAGE.format(reason=exc)
        except (intake.Refused, intake.StorageError) as exc:
            return exc.reply
        return replies.ACCEPTED.format(id=message_id)
