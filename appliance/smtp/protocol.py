"""The aiosmtpd subclass: one SMTP connection, with connection caps, credentials checked off the loop,
failure counting, line and control-character checks and our reply wording.

Blocking work (password checks, database reads) runs in an executor, never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from .. import accounts, db, message_bytes, replies
from ..db import database
from ..metrics import auth_failed, session_closed, session_opened
from ..models import SmtpAccount
from ..policy import acceptance
from .context import NULL_SENDER, ServerContext, client_key

log = logging.getLogger(__name__)

# A plain <dot-atom@ldh-domain> is read without aiosmtpd's general parser (acceptance.PLAIN_ADDR_SPEC).
_PLAIN_ADDRESS = re.compile(rf"<({acceptance.PLAIN_ADDR_SPEC})>(.*)\Z", re.S)
# C0 controls but TAB, and DEL: no command argument has them, and a NUL would end up in the
# envelope, the Received: field or an echoed reply.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _in_db(fn, *args, **kwargs):
    """Run ``fn`` on an executor thread with that thread's database connection."""
    database.connect(reuse_if_open=True)
    return fn(*args, **kwargs)


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

    def __init__(self, handler, ctx: ServerContext, *, implicit_tls: bool, mx: bool, tls_context, loop):
        s = ctx.settings
        super().__init__(
            handler,
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
        self._smtp_methods = {name: _guarded(self, method) for name, method in self._smtp_methods.items()}

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
        if self.auth_failures >= self.ctx.settings["AUTH_FAILURES_PER_CONNECTION"] or throttle.refuses(ip, username):
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
            if message_bytes.has_long_line(content):
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
