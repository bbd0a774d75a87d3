"""A raw SMTP line client for tests that need exact bytes on the wire (smtplib rewrites line endings)."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl


class RawSMTP:
    def __init__(self, host: str, port: int, *, source_ip: str = "127.0.0.1", timeout: float = 20):
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=(source_ip, 0))
        self.file = self.sock.makefile("rb")
        self.banner = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """Read one (possibly multi-line) reply; return (code, text joined by newlines)."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("connection closed")
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                break
        return int(lines[0][:3]), "\n".join(x[4:] for x in lines)

    def cmd(self, line: str) -> tuple[int, str]:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        code, _ = self.cmd("STARTTLS")
        assert code == 220
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.file = self.sock.makefile("rb")

    def closed_by_server(self) -> bool:
        """Tell whether the server has closed the connection."""
        try:
            return self.file.readline() == b""
        except (ConnectionError, OSError):
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def encrypted_raw(smtp_server, source_ip: str = "127.0.0.1") -> RawSMTP:
    """A RawSMTP session on the STARTTLS port, after STARTTLS and a second EHLO."""
    raw = RawSMTP("127.0.0.1", smtp_server.starttls_port, source_ip=source_ip)
    raw.cmd("EHLO client.test")
    raw.starttls(smtp_server.client_context(), "relay.test")
    raw.cmd("EHLO client.test")
    return raw


def plain(username: str, password: str) -> str:
    """The AUTH PLAIN initial response for these credentials."""
    return base64.b64encode(f"\0{username}\0{password}".encode()).decode()


def authenticated_raw(smtp_server, username: str, password: str) -> RawSMTP:
    """A RawSMTP session on the STARTTLS port, encrypted and logged in."""
    raw = encrypted_raw(smtp_server)
    code, text = raw.cmd(f"AUTH PLAIN {plain(username, password)}")
    assert code == 235, text
    return raw
