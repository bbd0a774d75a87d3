"""A small authoritative DNS server on loopback (UDP and TCP) for delivery tests, built on dnspython.

It serves the records a test adds, NXDOMAIN for names it does not know, and never answers the
names a test marks as timing out.
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import struct
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.support.ports import free_port


class DnsServer:
    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.records: dict[tuple[str, str], list[str]] = {}
        self.silent: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self._servers: list[socketserver.BaseServer] = []

    # -- zone ----------------------------------------------------------------------------------
    @staticmethod
    def _key(name: str) -> str:
        return name.lower().rstrip(".") + "."

    def add(self, name: str, rdtype: str, *values: str) -> None:
        self.records.setdefault((self._key(name), rdtype.upper()), []).extend(values)

    def mx(self, domain: str, *hosts: tuple[int, str]) -> None:
        """Publish MX records: (preference, host) pairs."""
        self.add(domain, "MX", *(f"{pref} {self._key(host)}" for pref, host in hosts))

    def a(self, host: str, *addresses: str) -> None:
        self.add(host, "A", *addresses)

    def ptr(self, address: str, *names: str) -> None:
        """Publish reverse DNS: the PTR records of an IP address (in-addr.arpa / ip6.arpa)."""
        self.add(ipaddress.ip_address(address).reverse_pointer, "PTR", *(self._key(n) for n in names))

    def null_mx(self, domain: str) -> None:
        """Publish RFC 7505's null MX: `MX 0 .`."""
        self.add(domain, "MX", "0 .")

    def time_out(self, name: str) -> None:
        """Never answer queries for this name."""
        self.silent.add(self._key(name))

    @property
    def spec(self) -> str:
        """The DNS_SERVERS value that points at this server."""
        return f"{self.host}:{self.port}"

    # -- serving -------------------------------------------------------------------------------
    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name, rdtype = question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        values = self.records.get((name, rdtype))
        if values:
            response.answer.append(dns.rrset.from_text(name, 0, "IN", rdtype, *values))
        elif not any(key[0] == name for key in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def start(self) -> DnsServer:
        owner = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                reply = owner.answer(data)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self):
                header = self.request.recv(2)
                if len(header) < 2:
                    return
                (length,) = struct.unpack("!H", header)
                data = b""
                while len(data) < length:
                    chunk = self.request.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = owner.answer(data)
                if reply is not None:
                    self.request.sendall(struct.pack("!H", len(reply)) + reply)

        tcp_class = type("TcpServer", (socketserver.ThreadingTCPServer,), {"allow_reuse_address": True})
        self.port = free_port()
        udp = socketserver.ThreadingUDPServer((self.host, self.port), Udp)
        tcp = tcp_class((self.host, self.port), Tcp)
        for server in (udp, tcp):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()


def resolve_once(server: DnsServer, name: str, rdtype: str) -> list[str]:
    """Ask the server directly (used by the DNS server's own test)."""
    query = dns.message.make_query(name, rdtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query.to_wire(), (server.host, server.port))
        response = dns.message.from_wire(sock.recv(4096))
    return [rr.to_text() for rrset in response.answer for rr in rrset]
