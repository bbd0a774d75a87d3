"""aiosmtpd sinks that play the remote side of delivery: MX hosts and a smarthost, on 127.x only.

Recipients steer a sink's answers by their local part:
  unknown…  → 550 5.1.1 (hard bounce)      full…     → 552 5.2.2 (soft bounce)
  greylist… → 451 4.7.1 the first time, then accepted
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

_QUEUE_ID = re.compile(rb"\tid ([0-9A-Z]{26})")


@dataclass
class Received:
    sink: str
    mail_from: str
    rcpts: list[str]
    data: bytes
    helo: str
    tls: str
    mail_options: list[str]

    @property
    def queue_id(self) -> str:
        """The appliance's message id, read from its Received: header."""
        match = _QUEUE_ID.search(self.data)
        return match.group(1).decode() if match else ""


@dataclass
class SinkHandler:
    name: str
    delay: float = 0.0  # seconds spent on each DATA (to keep a batch in flight)
    messages: list[Received] = field(default_factory=list)
    greylisted: Counter = field(default_factory=Counter)
    peers: set = field(default_factory=set)  # client (ip, port) of each connection that sent mail
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("unknown"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("full"):
            return f"552 5.2.2 <{address}>: Mailbox full"
        if local.startswith("greylist"):
            with self.lock:
                self.greylisted[address] += 1
                if self.greylisted[address] == 1:
                    return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            time.sleep(self.delay)  # deliberately blocks this sink's loop: a slow remote
        ssl_object = server.transport.get_extra_info("ssl_object")
        tls = f"{ssl_object.version()} {ssl_object.cipher()[0]}" if ssl_object else ""
        with self.lock:
            self.messages.append(
                Received(
                    self.name,
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    session.host_name,
                    tls,
                    list(envelope.mail_options),
                )
            )
            number = len(self.messages)
            self.peers.add(session.peer)
        return f"250 2.0.0 Ok: queued as {self.name}-{number}"


class Sink:
    """One aiosmtpd server on (ip, port); ``handler.messages`` holds what it received."""

    def __init__(
        self,
        ip: str,
        port: int,
        *,
        name: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        smtputf8: bool = True,
        delay: float = 0.0,
    ):
        self.ip, self.port = ip, port
        self.handler = SinkHandler(name or ip, delay)
        self.auth = auth
        params = dict(server_hostname=name or ip, enable_SMTPUTF8=smtputf8)
        if auth:
            params.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=not implicit_tls)
        if tls_context is not None and not implicit_tls:
            params.update(tls_context=tls_context, require_starttls=auth is not None)
        self.controller = Controller(
            self.handler,
            hostname=ip,
            port=port,
            ssl_context=tls_context if implicit_tls else None,
            **params,
        )

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self.auth
        )
        return AuthResult(success=ok, handled=False)  # handled=True would send no reply at all

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    def start(self) -> Sink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class PipeliningSink:
    """A scripted SMTP server that offers PIPELINING (RFC 2920) and keeps every chunk the client
    wrote, as received, so a test can see which commands came in one write and the DATA bytes on
    the wire. Recipients steer replies as in SinkHandler (unknown… → 550 5.1.1)."""

    def __init__(self, ip: str, port: int):
        self.server = socket.create_server((ip, port))
        self.chunks: list[bytes] = []
        self.bodies: list[bytes] = []  # DATA content as sent, dot-stuffing included
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> PipeliningSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.sendall(b"220 pipe.test ESMTP\r\n")
        pending = b""
        in_data = False
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            self.chunks.append(chunk)
            pending += chunk
            replies = []
            while True:
                if in_data:
                    if pending.startswith(b".\r\n"):  # empty content
                        end, skip = -2, 3
                    else:
                        end, skip = pending.find(b"\r\n.\r\n"), 5
                        if end < 0:
                            break
                    self.bodies.append(pending[: end + 2])
                    pending, in_data = pending[end + skip :], False
                    replies.append(b"250 2.0.0 Ok: queued")
                    continue
                line, sep, rest = pending.partition(b"\r\n")
                if not sep:
                    break
                pending = rest
                verb = line[:4].upper()
                if verb == b"EHLO":
                    replies.append(b"250-pipe.test\r\n250-PIPELINING\r\n250 8BITMIME")
                elif verb == b"RCPT":
                    unknown = line.split(b"<", 1)[1].lower().startswith(b"unknown")
                    replies.append(b"550 5.1.1 User unknown" if unknown else b"250 2.1.5 Ok")
                elif verb == b"DATA":
                    replies.append(b"354 End data with <CR><LF>.<CR><LF>")
                    in_data = True
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:  # MAIL, RSET, NOOP
                    replies.append(b"250 2.0.0 Ok")
            if replies:
                conn.sendall(b"".join(r + b"\r\n" for r in replies))
