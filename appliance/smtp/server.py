"""aiosmtpd subclass and handler: thin hooks that ask accounts/policy and hand mail to intake.

Blocking work (password checks, database reads, message preparation) runs in an executor, never on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ipaddress
import logging
import re
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, TLSSetupException

from .. import accounts, bounces, db, engagement, guard, intake, message_bytes, replies, returnpath, senders, tracking
from ..db import database
from ..metrics import auth_failed, session_closed, session_opened
from ..models import SmtpAccount
from ..policy import acceptance, quotas
from ..policy import sending as sp

log = logging.getLogger(__name__)

NULL_SENDER = "<>"  # marker: aiosmtpd would refuse MAIL FROM:<> as a syntax error

# RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF (1001 with a stuffed dot).
MAX_LINE = 999
# A plain <dot-atom@ldh-domain> is read without aiosmtpd's general parser (acceptance.PLAIN_ADDR_SPEC).
_PLAIN_ADDRESS = re.compile(rf"<({acceptance.PLAIN_ADDR_SPEC})>(.*)\Z", re.S)
# C0 controls but TAB, and DEL: no command argument has them, and a NUL would end up in the
# envelope, the Received: field or an echoed reply.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Entries a throttle keeps before it forgets the stale ones (memory stays bounded under a spray).
_THROTTLE_ENTRIES = 10000


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


def client_key(ip: str) -> str:
    """The client that per-client limits count: its IPv4 address, or the /64 of an IPv6 one (what
    one host usually gets), an IPv4-mapped IPv6 address read as IPv4."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return ip


class AuthThrottle:
    """Failed AUTH attempts over a sliding window, per (client, username) and per client; loop
    thread only, so no lock.

    It throttles the guesser, not the victim (OWASP Authentication Cheat Sheet and "Slow Down
    Online Guessing Attacks with Device Cookies"): a username that failed ``per_username`` times
    from a client is refused from that client only, and a client that failed ``per_ip`` times over
    all usernames is refused only for usernames that have not logged in from it before. So an app
    with a wrong password cools down itself, not the other apps behind the same address, and not
    its own account elsewhere.
    """

    def __init__(self, per_username: int, per_ip: int, window: float, cooldown: float):
        self.per_username, self.per_ip = per_username, per_ip
        self.window, self.cooldown = window, cooldown
        self._failures: dict[tuple[str, ...], deque] = {}  # (client, username) and (client,)
        self._cool_until: dict[tuple[str, ...], float] = {}
        self._trusted: OrderedDict[tuple[str, str], None] = OrderedDict()  # logged in from there

    def _cooling(self, key: tuple[str, ...], now: float) -> bool:
        until = self._cool_until.get(key)
        if until is None:
            return False
        if now >= until:
            del self._cool_until[key]
            return False
        return True

    def refuses(self, ip: str, username: str, now: float | None = None) -> bool:
        """Tell whether AUTH as ``username`` from ``ip`` is refused without looking at the password."""
        now = time.monotonic() if now is None else now
        client = client_key(ip)
        if self._cooling((client, username), now):
            return True
        return self._cooling((client,), now) and (client, username) not in self._trusted

    def failed(self, ip: str, username: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        client = client_key(ip)
        for key, budget in (((client, username), self.per_username), ((client,), self.per_ip)):
            recent = self._failures.setdefault(key, deque())
            recent.append(now)
            while recent and recent[0] < now - self.window:
                recent.popleft()
            if len(recent) >= budget:
                self._cool_until[key] = now + self.cooldown
                recent.clear()
        if len(self._failures) > _THROTTLE_ENTRIES:
            self._failures = {k: v for k, v in self._failures.items() if v and v[-1] >= now - self.window}
        if len(self._cool_until) > _THROTTLE_ENTRIES:
            self._cool_until = {k: v for k, v in self._cool_until.items() if v > now}

    def succeeded(self, ip: str, username: str) -> None:
        """Remember that ``username`` logged in from ``ip``: a cool-down of that client spares it."""
        key = (client_key(ip), username)
        self._trusted[key] = None
        self._trusted.move_to_end(key)
        if len(self._trusted) > _THROTTLE_ENTRIES:
            self._trusted.popitem(last=False)


@dataclass
class ServerContext:
    """What every SMTP connection shares: settings, intake, throttles and executors."""

    settings: dict[str, Any]
    committer: intake.GroupCommitter
    throttle: AuthThrottle
    executor: concurrent.futures.Executor
    local_domains: frozenset[str]
    active: int = 0
    per_client: Counter = field(default_factory=Counter)  # open connections by client_key

    @classmethod
    def build(cls, settings: dict[str, Any], committer: intake.GroupCommitter) -> ServerContext:
        domains = {settings["HOSTNAME"].lower()}
        domains.update(d.strip().lower() for d in settings["LOCAL_DOMAINS"].split(",") if d.strip())
        return cls(
            settings=settings,
            committer=committer,
            throttle=AuthThrottle(
                settings["AUTH_FAILURES_PER_USERNAME"], settings["AUTH_FAILURES_PER_IP"],
                settings["AUTH_FAILURE_WINDOW"], settings["AUTH_COOLDOWN"],
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
    return None, None, guard.check_mail(settings, account_id), cacheable


_SESSION_REFUSALS = {
    accounts.SESSION_DELETED: replies.SESSION_ACCOUNT_DELETED,
    accounts.SESSION_DISABLED: replies.SESSION_ACCOUNT_DISABLED,
    accounts.SESSION_CREDENTIALS_CHANGED: replies.SESSION_CREDENTIALS_CHANGED,
}


def _guarded(server: ApplianceSMTP, method):
    """Wrap an smtp_* method: nothing runs once the connection is closing (aiosmtpd goes on reading
    the commands a client pipelined after our 421), and an argument with a control character gets
    501 and goes no further."""

    @functools.wraps(method)
    async def checked(arg: str | None) -> None:
        if server.closing:
            return
        if arg and _CONTROL.search(arg):
            await server.push(replies.CONTROL_CHARACTERS)
            return
        await method(arg)

    return checked


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
        self.reading_data = False  # between 354 and the final dot: every read restarts the timer
        self._counted: str | None = None  # the client_key this connection is counted under
        self._smtp_methods = {name: _guarded(self, method)
                              for name, method in self._smtp_methods.items()}

    # -- connection ---------------------------------------------------------------------------
    @property
    def peer_ip(self) -> str:
        peer = self.session.peer if self.session else None
        return peer[0] if isinstance(peer, tuple) else str(peer or "")

    def connection_made(self, transport) -> None:
        first = self._counted is None and self._original_transport is None  # not the STARTTLS upgrade
        if first:
            peer = transport.get_extra_info("peername")
            self._counted = client_key(peer[0] if isinstance(peer, tuple) else str(peer or ""))
            self.ctx.active += 1
            self.ctx.per_client[self._counted] += 1
            session_opened(self.mx)
        super().connection_made(transport)
        if first:  # until its first command, a client gets a short time only
            self._reset_timeout(self.ctx.settings["SMTP_FIRST_COMMAND_TIMEOUT"])

    def connection_lost(self, error) -> None:
        if self._counted is not None:
            session_closed()
            self.ctx.active -= 1
            self.ctx.per_client[self._counted] -= 1
            if not self.ctx.per_client[self._counted]:
                del self.ctx.per_client[self._counted]
            self._counted = None
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        settings = self.ctx.settings
        if self.ctx.active > settings["MAX_CONNECTIONS"]:
            refusal = replies.TOO_MANY_CONNECTIONS
        elif self.ctx.per_client[self._counted] > settings["MAX_CONNECTIONS_PER_IP"]:
            refusal = replies.TOO_MANY_CONNECTIONS_FROM_IP
        else:
            await super()._handle_client()
            return
        await self.push(refusal)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        # SMTP_TIMEOUT during DATA is the longest wait for the next bytes, not for the whole message
        # (aiosmtpd restarts its timer at commands only).
        if self.reading_data:
            self._reset_timeout()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        # aiosmtpd closes without a word; RFC 5321 §4.2.2 gives 421 for a server closing the session.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(replies.TIMEOUT.format(hostname=self.hostname).encode() + b"\r\n")
        super()._timeout_cb()

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

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    async def push(self, status) -> None:
        if self.closing:
            return  # closed by us or by the client: nothing more reaches it (a TLS transport would raise)
        if isinstance(status, str):
            status = replies.AIOSMTPD_REWRITES.get(status, status)
            # aiosmtpd echoes unknown commands: never send a client's control bytes back raw.
            status = _CONTROL.sub("?", status)
        await super().push(status)

    async def smtp_STARTTLS(self, arg: str) -> None:
        # aiosmtpd would answer 220 again inside TLS and fail in the handshake it then starts.
        if self.implicit_tls or self._tls_protocol is not None:
            await self.push(replies.TLS_ALREADY_ACTIVE)
            return
        await super().smtp_STARTTLS(arg)

    async def run_blocking(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.ctx.executor, functools.partial(_in_db, fn, *args, **kwargs))

    # -- AUTH ---------------------------------------------------------------------------------
    # Before TLS aiosmtpd answers 538 without reading the credentials, and nothing is looked up:
    # a client without the password must not be able to write to any account.

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
        ip, throttle = self.peer_ip, self.ctx.throttle
        username = parsed.auth_data.login.decode("utf-8", "replace")
        password = parsed.auth_data.password.decode("utf-8", "replace")
        if throttle.refuses(ip, username):  # cooling down: the password is not even looked at
            auth_failed("throttled")
            await self.push(replies.TOO_MANY_AUTH_FAILURES)
            self.transport.close()
            return AuthResult(success=False, handled=True)
        result = await self.run_blocking(accounts.verify, username, password, ip)
        if result.failure is None:
            try:
                await asyncio.wrap_future(accounts.record_login(result.account.id, ip))
            except db.WRITE_ERRORS as exc:  # bookkeeping: the sign-in itself stands
                log.error("could not record the login of %r: %s", username, exc)
            self.account, self.username = result.account, result.account.username
            self.credential_version = result.account.credential_version
            self.allowed_senders = set()
            throttle.succeeded(ip, username)
            return AuthResult(success=True, auth_data=username, message=replies.AUTH_SUCCESS)
        self.auth_failures += 1
        auth_failed(result.failure)
        throttle.failed(ip, username)
        log.info("AUTH failed for %r from %s: %s", username, ip, result.failure)
        if (
            self.auth_failures >= self.ctx.settings["AUTH_FAILURES_PER_CONNECTION"]
            or throttle.refuses(ip, username)
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
        self.reading_data = True
        try:
            raw, too_big = await self._read_data()
        except asyncio.IncompleteReadError:
            return  # the client went away in the middle: nothing to answer
        except asyncio.CancelledError:
            self._writer.close()
            raise
        finally:
            self.reading_data = False
        refusal = replies.MESSAGE_TOO_BIG if too_big else None
        if refusal is None:
            # RFC 5321 §4.5.2: remove the dot the client added in front of every line starting with
            # one (only after CRLF, where the client stuffs them), then make every line end CRLF
            # before the lengths are checked: a message saved with LF endings is one long "line".
            content = (raw[1:] if raw.startswith(b".") else raw).replace(b"\r\n.", b"\r\n")
            content = message_bytes.normalise_line_endings(content)
            if has_long_line(content):
                refusal = replies.LINE_TOO_LONG
            elif b"\x00" in content:
                refusal = replies.NUL_IN_MESSAGE
        if refusal is not None:
            await self.push(refusal)
            self._set_post_data_state()
            return
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
        if isinstance(error, TLSSetupException):
            # The client's fault (it went away or spoke no TLS after STARTTLS): aiosmtpd closes
            # the connection and sends nothing; worth a line, not a traceback.
            log.info("STARTTLS handshake failed: %r", error.__cause__)
            return replies.LOCAL_ERROR
        # Without this aiosmtpd answers "500 Error: (ExceptionName) text": a bare 500 that shows
        # our internals and tells the client to give up. A fault of ours is temporary.
        log.error("SMTP session error", exc_info=error)
        return replies.LOCAL_ERROR

    async def handle_MAIL(self, server: ApplianceSMTP, session, envelope, address: str, mail_options):
        account = await server.sending_account()
        if account is None and not server.mx:
            return replies.AUTH_REQUIRED
        decision = acceptance.sender("" if address == NULL_SENDER else address)
        if decision:
            return decision.reply
        envelope.policy_hold = None
        envelope.reported = []  # ids of the messages whose return paths are recipients (bounces.py)
        envelope.unsubscribes = []  # the deliveries whose unsubscribe addresses are recipients
        if account is not None:
            sender = "" if address == NULL_SENDER else address
            known = sender.lower() in server.allowed_senders
            signed_in = server.account is not None
            answered, verdict = quotas.cached_verdict(account.id) if known else (False, None)
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
            if verdict is not None and verdict.action != sp.HOLD:
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
        unsubscribe = tracking.unsubscribe_token(self.ctx.settings, address) if server.mx else None
        if unsubscribe is not None and len(envelope.rcpt_tos) < limit:  # the mailto: of List-Unsubscribe
            found = await server.run_blocking(engagement.recipient, self.ctx.settings, tracking.UNSUBSCRIBE,
                                              unsubscribe)
            if found is None:
                return replies.UNSUBSCRIBE_UNKNOWN
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            envelope.unsubscribes.append(found)
            return replies.RCPT_OK
        returned = returnpath.message_for(self.ctx.settings, address) if server.mx else None
        if returned and len(envelope.rcpt_tos) < limit:  # a later bounce or a complaint (bounces.py)
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            envelope.reported.append(returned)
            return replies.RCPT_OK
        decision = acceptance.recipient(
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
        # The header bounds are checked here, on the loop, in a bounded scan: a message over them
        # never reaches the writer thread that every session's mail goes through.
        refusal = acceptance.header_limits_refusal(
            envelope.original_content, max_size=settings["MAX_HEADER_SIZE"], max_lines=settings["MAX_HEADER_LINES"]
        )
        if refusal:
            return refusal
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
            account_stream=account.stream if account else "transactional",
            account_track_opens=account.track_opens if account else None,
            account_track_clicks=account.track_clicks if account else None,
        )
        hold = envelope.policy_hold
        allowed = frozenset(server.allowed_senders)
        # Mail to a return path of ours (a later bounce, a complaint) is applied as it is stored.
        arrival = bounces.Arrival(settings, envelope.reported) if envelope.reported else None

        def admit() -> intake.Incoming:
            # Runs on the writer thread, right before the message is stored (no executor hop).
            item = prepare()
            if account is not None:  # From: and Sender: are held to the same rule as MAIL FROM
                for name, addresses in (("From:", item.from_addresses), ("Sender:", item.sender_addresses)):
                    if addresses is None:
                        continue  # no Sender: field
                    unknown = [a for a in addresses if a.lower() not in allowed]
                    if unknown or not addresses:
                        decision = senders.check(settings, account.id, unknown, header=True, field=name)
                        if decision:
                            raise intake.Refused(decision.reply)
            if hold is not None:
                item.hold_reply, item.hold_until = quotas.held_reply(hold), hold.release_at
            return arrival.read(item) if arrival else item

        store = arrival.store if arrival else None
        if envelope.unsubscribes:  # the unsubscribes are applied in the transaction that stores the mail
            store = engagement.storing_unsubscribes(envelope.unsubscribes, store or intake.store_many)
        try:
            kind = {"store": store} if store else {}
            message_id = await self.ctx.committer.accept(admit, **kind)
        except message_bytes.MalformedMessage as exc:
            return replies.MALFORMED_MESSAGE.format(reason=exc)
        except (intake.Refused, intake.StorageError) as exc:
            return exc.reply
        return replies.ACCEPTED.format(id=message_id)
