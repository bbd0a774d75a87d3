"""Tracking benchmark: the relay with tracking on against the same relay with it off, and the tracking
endpoints' requests/s while the relay runs (a benchmark, not a test).

One appliance process (`python app.py`, an IP-only account, DNS on loopback: MX dst.test → a sink in
this process). Batches of the same HTML newsletter (text part, HTML part with LINKS links, quoted-
printable) alternate between `X-Stream: transactional` (no tracking: sent as it came) and
`X-Stream: broadcast` (a copy per recipient with pixel, rewritten links and List-Unsubscribe).
Each batch: SESSIONS sessions submit MESSAGES messages; messages/s from the first byte sent to the
last message at the sink. Then a broadcast batch again while THREADS clients fetch pixels of
delivered copies through the web server (keep-alive connections); requests/s over that time.

    python bench/tracking.py
    python bench/tracking.py --messages 1000 --sessions 4 --pairs 3 --threads 8
"""

from __future__ import annotations

import argparse
import http.client
import re
import smtplib
import statistics
import sys
import threading
import time
import urllib.parse

from _common import REPO, Appliance, free_port, machine

sys.path.insert(0, str(REPO))
from aiosmtpd.controller import Controller  # noqa: E402

from tests.dnsserver import DnsServer  # noqa: E402

_PIXEL = re.compile(rb'src=3D"(http://[^"]+?\.gif)"|src="(http://[^"]+?\.gif)"')


class CountingSink:
    def __init__(self):
        self.count = 0
        self.last = 0.0
        self.pixels: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content.replace(b"=\r\n", b"")
        match = _PIXEL.search(content)
        with self.lock:
            self.count += 1
            self.last = time.monotonic()
            if match and len(self.pixels) < 1000:
                self.pixels.append((match.group(1) or match.group(2)).decode())
        return "250 2.0.0 Ok"


def newsletter(stream: str, links: int) -> bytes:
    anchors = "".join(f'<p><a href="https://shop.dst.test/item/{i}?ref=news">Item {i}</a> - a good thing to buy.</p>'
                      for i in range(links))
    html = f"<html><body><h1>This week</h1>{anchors}{'<p>' + 'Text of the newsletter. ' * 200 + '</p>'}</body></html>"
    text = "This week\r\n" + "".join(f"Item {i}: https://shop.dst.test/item/{i}?ref=news\r\n" for i in range(links))
    qp = html.replace("=", "=3D")
    qp = "=\r\n".join(qp[i:i + 74] for i in range(0, len(qp), 74))
    return (f"From: a@src.test\r\nTo: b@dst.test\r\nSubject: This week\r\nX-Stream: {stream}\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\n'
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n--b1\r\n"
            "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            + qp + "\r\n--b1--\r\n").encode()


def batch(app: Appliance, sink: CountingSink, stream: str, messages: int, sessions: int, links: int) -> float:
    body = newsletter(stream, links)
    target = sink.count + messages
    per_session = messages // sessions

    def submit() -> None:
        with smtplib.SMTP("127.0.0.1", app.submission_port, local_hostname="client.test", timeout=60) as client:
            client.ehlo()
            for _ in range(per_session):
                client.sendmail("a@src.test", ["b@dst.test"], body)

    start = time.monotonic()
    threads = [threading.Thread(target=submit) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 300
    while sink.count < target and time.monotonic() < deadline:
        time.sleep(0.02)
    if sink.count < target:
        raise RuntimeError(f"only {sink.count - target + messages} of {messages} arrived:\n{app.log_tail()}")
    return messages / (sink.last - start)


def fetch_pixels(urls: list[str], threads: int, stop: threading.Event) -> tuple[int, int, float]:
    """Fetch the pixels over keep-alive connections until ``stop``; return (ok, failed, seconds)."""
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def worker(offset: int) -> None:
        parsed = urllib.parse.urlsplit(urls[0])
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        ok = failed = 0
        i = offset
        while not stop.is_set():
            path = urllib.parse.urlsplit(urls[i % len(urls)]).path
            i += threads
            try:
                conn.request("GET", path, headers={"User-Agent": "Mozilla/5.0 bench-reader"})
                response = conn.getresponse()
                response.read()
                ok, failed = (ok + 1, failed) if response.status == 200 else (ok, failed + 1)
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        conn.close()
        with lock:
            counts["ok"] += ok
            counts["failed"] += failed

    start = time.monotonic()
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return counts["ok"], counts["failed"], time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--links", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    print(machine())
    dns, port = DnsServer().start(), free_port()
    dns.mx("dst.test", (10, "mx.dst.test"))
    dns.a("mx.dst.test", "127.0.0.1")
    sink = CountingSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, server_hostname="mx.dst.test")
    controller.start()
    env = {"APPLIANCE_DNS_SERVERS": dns.spec, "APPLIANCE_DELIVERY_PORT": str(port)}
    try:
        with Appliance(extra_env=env) as app:
            app.create_account("bench-ip", "--ip", "127.0.0.0/8", "--ip-only")
            app.cli("senders", "add", "a@src.test", "--verified")
            batch(app, sink, "transactional", 100, args.sessions, args.links)  # warm-up
            off, on = [], []
            for _ in range(args.pairs):
                off.append(batch(app, sink, "transactional", args.messages, args.sessions, args.links))
                on.append(batch(app, sink, "broadcast", args.messages, args.sessions, args.links))
            ratios = [b / a for a, b in zip(off, on, strict=True)]
            print(f"relay, {args.messages} messages of {len(newsletter('broadcast', args.links))} bytes, "
                  f"{args.sessions} sessions, {args.pairs} alternating pairs:")
            print("  tracking off  " + "  ".join(f"{v:6.1f}" for v in off) + "  msg/s")
            print("  tracking on   " + "  ".join(f"{v:6.1f}" for v in on) + "  msg/s")
            print(f"  on/off ratio per pair {', '.join(f'{r:.2f}' for r in ratios)}; "
                  f"median {statistics.median(ratios):.2f} (target >= 0.85)")

            urls = list(sink.pixels)
            stop = threading.Event()
            result: dict = {}
            fetcher = threading.Thread(target=lambda: result.update(
                zip(("ok", "failed", "seconds"), fetch_pixels(urls, args.threads, stop), strict=True)))
            fetcher.start()
            relayed = batch(app, sink, "broadcast", args.messages, args.sessions, args.links)
            stop.set()
            fetcher.join()
            print(f"pixel fetches while relaying ({args.threads} keep-alive clients, {len(urls)} distinct pixels): "
                  f"{result['ok'] / result['seconds']:.0f} requests/s, {result['failed']} failed "
                  f"(target >= 500); relay meanwhile {relayed:.1f} msg/s")
    finally:
        controller.stop()
        dns.stop()


if __name__ == "__main__":
    main()
