"""A webhook receiver for tests: a threaded HTTP server on 127.0.0.1 that records every POST, and a
check of the Standard Webhooks signature written independently of the appliance's signer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.ports import free_port


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A threaded HTTP server that records every POST and answers as ``answer(call_number, body)`` says."""

    answer: object = None
    tls: ssl.SSLContext | None = None  # serve HTTPS with this context
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 — http.server's name
                data = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    code = receiver.answer(len(receiver.calls), data) if receiver.answer else 200
                    receiver.calls.append(Call(self.path, {k.lower(): v for k, v in self.headers.items()}, data, code))
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"receiver is down")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that refused our certificate: nothing to record

        self.port = free_port()
        self.server = Server(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hooks/mail?token=t1"

    def accepted(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.answered < 300]

    def types(self) -> list[str]:
        return [c.payload["type"] for c in self.accepted()]


def signature_ok(secret: str, call: Call) -> bool:
    """Standard Webhooks, written out here independently of the appliance's signer."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{call.headers['webhook-id']}.{call.headers['webhook-timestamp']}.".encode() + call.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in call.headers["webhook-signature"].split())
