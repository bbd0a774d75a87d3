"""Steps 3, connect (``Session.open``), and 5, send (``Session.send``): one outbound SMTP session that
carries several messages for one destination.

Runs on worker threads only (blocking sockets), never on the SMTP event loop.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from dataclasses import dataclass

from .. import message_bytes
from . import smarthost as smarthost_mod
from .replies import Reply
from .route import Route, Target

NOT_CONNECTED = Reply(451, "4.4.1", "no connection to the destination")


class SessionError(Exception):
    """The session could not be opened or died; ``reply`` is the temporary reason."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


@dataclass
class Peer:
    """Who we ended up talking to: shown in every attempt."""

    host: str = ""
    ip: str = ""
    tls: str = ""  # "TLSv1.3 TLS_AES_256_GCM_SHA384", "" for plain text


class _Client(smtplib.SMTP):
    """smtplib with a separate connect timeout and a fixed target address (the MX's IP)."""

    def __init__(self, address: str, connect_timeout: float, command_timeout: float, local_hostname: str):
        self._address = address
        self._connect_timeout = connect_timeout
        super().__init__(local_hostname=local_hostname, timeout=command_timeout)

    def _get_socket(self, host, port, timeout):
        self._host = host  # smtplib names the TLS server (SNI, verification) after this
        sock = socket.create_connection((self._address, port), self._connect_timeout)
        sock.settimeout(timeout)
        return sock


class _TlsClient(_Client):
    """Implicit TLS from the first byte (smtps://, RFC 8314)."""

    def __init__(self, *args, context: ssl.SSLContext, **kwargs):
        self.context = context
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        return self.context.wrap_socket(super()._get_socket(host, port, timeout), server_hostname=host)


def _opportunistic_context() -> ssl.SSLContext:
    # RFC 7435 opportunistic TLS towards MX hosts: encrypt when offered, without authenticating,
    # since most MX certificates would not verify against the MX name anyway.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def needs_smtputf8(mail_from: str, rcpts: list[str], data: bytes) -> bool:
    """Tell whether the envelope or the header section is not ASCII (RFC 6531/6532)."""
    header_end = data.find(b"\r\n\r\n")
    headers = data if header_end < 0 else data[:header_end]
    return not (mail_from + "".join(rcpts)).isascii() or not headers.isascii()


class Session:
    """An SMTP client session to the first target of a route that answers."""

    def __init__(self, route: Route, settings: dict):
        self.route = route
        self.settings = settings
        self.client: _Client | None = None
        self.peer = Peer()
        self.alive = False
        self.last_error: Reply = NOT_CONNECTED

    def open(self) -> None:
        """Step 3, connect: try the route's targets in order; raise SessionError when none can be used."""
        for target in self.route.targets:
            try:
                self._open(target)
            except (OSError, smtplib.SMTPException, SessionError) as exc:
                self.last_error = exc.reply if isinstance(exc, SessionError) else _network_reply(target, exc)
                self._drop()
                continue
            self.alive = True
            return
        raise SessionError(self.last_error)

    def _open(self, target: Target) -> None:
        s = self.settings
        upstream = self.route.smarthost
        self.peer = Peer(host=target.name, ip=target.address)
        kwargs = dict(
            connect_timeout=s["CONNECT_TIMEOUT"], command_timeout=s["COMMAND_TIMEOUT"], local_hostname=s["HOSTNAME"]
        )
        if upstream and upstream.implicit_tls:
            context = smarthost_mod.tls_context(s["SMARTHOST_CA_FILE"])
            self.client = _TlsClient(target.address, context=context, **kwargs)
        else:
            self.client = _Client(target.address, **kwargs)
        code, banner = self.client.connect(target.name, target.port)
        self.peer.ip = self.client.sock.getpeername()[0]
        if code != 220:
            raise SessionError(_as_temporary(Reply.parse(code, banner), target))
        self._ehlo(target)
        if upstream is None:
            if self.client.has_extn("starttls"):
                self._starttls(target, _opportunistic_context())
        else:
            if not upstream.implicit_tls:
                if not self.client.has_extn("starttls"):
                    raise SessionError(Reply(451, "4.7.0", f"smarthost {target.name} does not offer STARTTLS"))
                self._starttls(target, smarthost_mod.tls_context(s["SMARTHOST_CA_FILE"]))
            if upstream.username:
                try:
                    self._login(upstream.username, upstream.password)
                except smtplib.SMTPAuthenticationError as exc:
                    reply = Reply.parse(exc.smtp_code, exc.smtp_error)
                    raise SessionError(Reply(454, "4.7.0", f"smarthost refused our AUTH: {reply}")) from None
        self.peer.tls = _tls_info(self.client.sock)

    def _login(self, username: str, password: str) -> None:
        # One mechanism, PLAIN when offered: smtplib's login() would try every other offered
        # mechanism after a refusal, multiplying failed logins on the upstream's counters.
        offered = self.client.esmtp_features.get("auth", "").upper().split()
        mechanism = "PLAIN" if "PLAIN" in offered or "LOGIN" not in offered else "LOGIN"
        self.client.user, self.client.password = username, password
        self.client.auth(mechanism, getattr(self.client, f"auth_{mechanism.lower()}"))

    def _ehlo(self, target: Target) -> None:
        code, text = self.client.ehlo()
        if code != 250:
            code, text = self.client.helo()
            if code != 250:
                raise SessionError(_as_temporary(Reply.parse(code, text), target))

    def _starttls(self, target: Target, context: ssl.SSLContext) -> None:
        try:
            self.client.starttls(context=context)
        except ssl.SSLError as exc:
            raise SessionError(_tls_failure(target, exc)) from None
        except smtplib.SMTPResponseException as exc:
            raise SessionError(_as_temporary(Reply.parse(exc.smtp_code, exc.smtp_error), target)) from None
        self._ehlo(target)

    def send(self, mail_from: str, rcpts: list[str], data: bytes) -> list[Reply]:
        """Step 5, send: one message in one transaction; return a reply per recipient (in order)."""
        if not self.alive or self.client is None:
            return [self.last_error] * len(rcpts)
        client = self.client
        options = []
        if needs_smtputf8(mail_from, rcpts, data):
            if not client.has_extn("smtputf8"):
                return [
                    Reply(
                        553,
                        "5.6.7",
                        f"the message has non-ASCII addresses or headers and "
                        f"{self.peer.host} does not offer SMTPUTF8 (RFC 6531)",
                    )
                ] * len(rcpts)
            options.append("SMTPUTF8")
        if not data.isascii():
            if not client.has_extn("8bitmime"):
                return [
                    Reply(
                        554,
                        "5.6.3",
                        f"the message has 8-bit content and {self.peer.host} does not offer 8BITMIME (RFC 6152)",
                    )
                ] * len(rcpts)
            options.append("BODY=8BITMIME")
        try:
            return self._transaction(client, mail_from, rcpts, data, options)
        except (OSError, smtplib.SMTPException) as exc:
            self.last_error = Reply(451, "4.4.2", f"connection to {self.peer.host} lost: {exc or type(exc).__name__}")
            self._drop()
            return [self.last_error] * len(rcpts)
        finally:
            client.command_encoding = "ascii"

    def _transaction(self, client, mail_from, rcpts, data, options) -> list[Reply]:
        if "SMTPUTF8" in options:
            client.command_encoding = "utf-8"
        # Envelope addresses were checked at intake and are stored bare ("" is the null sender).
        commands = [f"MAIL FROM:<{mail_from}>{''.join(' ' + o for o in options)}"]
        commands += [f"RCPT TO:<{rcpt}>" for rcpt in rcpts]
        if client.has_extn("pipelining"):
            # RFC 2920: MAIL, every RCPT and DATA in one write, then their replies in order.
            client.send("".join(c + "\r\n" for c in [*commands, "DATA"]))
            replies = [Reply.parse(*client.getreply()) for _ in commands]
            data_reply = Reply.parse(*client.getreply())
        else:
            replies = []
            for command in commands:
                client.putcmd(command)
                replies.append(Reply.parse(*client.getreply()))
                if replies[-1].code not in (250, 251) and (len(replies) == 1 or replies[-1].code == 421):
                    break  # MAIL refused, or the server is closing: no more commands
            data_reply = None
        mail_reply = replies[0]
        per_rcpt = [None if r.code in (250, 251) else r for r in replies[1:]]  # None: accepted
        closing = next((r for r in replies if r.code == 421), None)  # RFC 5321 §3.8
        if mail_reply.code != 250:
            failure = mail_reply
        elif closing is not None:
            failure = closing
        elif all(per_rcpt):
            failure = per_rcpt[-1]  # no recipient accepted
        else:
            failure = None
        if failure is not None:
            if data_reply is not None and data_reply.code == 354 and closing is None:
                client.send(".\r\n")  # RFC 2920 §3.1: DATA was accepted anyway; end it empty
                client.getreply()
            self._after_failure(failure)
            if mail_reply.code != 250:
                return [mail_reply] * len(rcpts)
            return [r or failure for r in per_rcpt] + [failure] * (len(rcpts) - len(per_rcpt))
        if data_reply is None:
            client.putcmd("DATA")
            data_reply = Reply.parse(*client.getreply())
        if data_reply.code == 354:
            client.send(_wire_body(data))
            data_reply = Reply.parse(*client.getreply())
        if data_reply.code != 250:
            self._after_failure(data_reply)
        return [r or data_reply for r in per_rcpt]

    def _after_failure(self, reply: Reply) -> None:
        if reply.code == 421:  # RFC 5321 §3.8: the server is closing the channel
            self.last_error = reply
            self._drop()
            return
        try:
            self.client.rset()
        except (OSError, smtplib.SMTPException):
            self.last_error = Reply(451, "4.4.2", f"connection to {self.peer.host} lost after {reply}")
            self._drop()

    def close(self) -> None:
        if self.client is not None and self.alive:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self.client.quit()
        self._drop()

    def _drop(self) -> None:
        self.alive = False
        if self.client is not None:
            with contextlib.suppress(OSError):
                self.client.close()
        self.client = None


def _wire_body(data: bytes) -> bytes:
    """Return ``data`` as DATA content: CRLF lines, leading dots doubled, ended by CRLF.CRLF."""
    data = message_bytes.normalise_line_endings(data)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    return data + (b".\r\n" if data.endswith(b"\r\n") or not data else b"\r\n.\r\n")


def _tls_info(sock) -> str:
    if not isinstance(sock, ssl.SSLSocket):
        return ""
    cipher = sock.cipher()
    return f"{sock.version()} {cipher[0] if cipher else ''}".strip()


def _as_temporary(reply: Reply, target: Target) -> Reply:
    # A refusal at greeting or EHLO concerns the server, not this message: try later (or elsewhere).
    return Reply(451, "4.4.0" if reply.code >= 500 else reply.enhanced or "4.4.0", f"{target.name} answered {reply}")


def _tls_failure(target: Target, exc: ssl.SSLError) -> Reply:
    detail = getattr(exc, "verify_message", "")
    reason = f"{exc.reason or exc}" + (f" ({detail})" if detail else "")
    return Reply(451, "4.7.5", f"TLS with {target.name} failed: {reason}")


def _network_reply(target: Target, exc: Exception) -> Reply:
    if isinstance(exc, ssl.SSLError):
        return _tls_failure(target, exc)
    if isinstance(exc, socket.timeout | TimeoutError):
        return Reply(451, "4.4.1", f"{target.name} [{target.address}]:{target.port} timed out")
    if isinstance(exc, ConnectionRefusedError):
        return Reply(451, "4.4.1", f"{target.name} [{target.address}]:{target.port} refused the connection")
    return Reply(451, "4.4.1", f"{target.name} [{target.address}]:{target.port}: {exc}")
