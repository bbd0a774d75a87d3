"""Tracking benchmark: the relay with tracking on against the same relay with it off, and the tracking
endpoints' requests/s while the relay runs (a benchmark, not a test).

The user's path: one appliance process (`python app.py`), mail From: src.test, a DKIM-verified domain
(RSA-2048 + Ed25519, its records in a loopback DNS server; MX dst.test → a sink in this process),
SESSIONS persistent STARTTLS + AUTH sessions. Batches of the same HTML newsletter (text part, HTML
part with LINKS links, quoted-printable) alternate between `X-Stream: transactional` (no tracking:
signed and sent as it came) and `X-Stream: broadcast` (a copy per recipient with pixel, rewritten
links and List-Unsubscribe, then signed). Each batch: MESSAGES messages; messages/s from the first
byte sent to the last message at the sink. Then a broadcast batch again while THREADS clients fetch
pixels and follow tracked links of delivered copies through the web server (keep-alive connections,
pixels and clicks alternating), offering RATE requests/s (0: as fast as they answer); requests/s
answered over that time, their p50/p99, the relay's messages/s meanwhile, and at the end how many
opens and clicks the appliance recorded (`appliance stats --json`) against how many were answered.

    python bench/tracking.py
    python bench/tracking.py --messages 1000 --sessions 8 --pairs 3 --threads 8 --rate 500 0
    python bench/tracking.py --pairs 1 --profile /tmp/tracking-profile   # py-spy's raw stacks per run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import re
import statistics
import sys
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

from _common import REPO, free_port, machine, percentile
from intake import RECIPIENT, SENDER, Session, SmtpError
from userpath import Profile, appliance, dns_server, sign_as_src_test

sys.path.insert(0, str(REPO))
from aiosmtpd.controller import Controller  # noqa: E402

_PIXEL = re.compile(rb'src=3D"(http://[^"]+?\.gif)"|src="(http://[^"]+?\.gif)"')
_CLICK = re.compile(rb"http://[^\s/]+/t/c/[a-z2-7]+\?u=[^\s]+")
KEPT = 1000  # pixel and click URLs kept from the sink's copies


class CountingSink:
    """Counts arrivals and keeps the first KEPT pixel and click URLs of the tracked copies."""

    def __init__(self):
        self.count = 0
        self.last = 0.0
        self.pixels: list[str] = []
        self.clicks: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content
        with self.lock:
            self.count += 1
            self.last = time.monotonic()
            if len(self.pixels) < KEPT:
                match = _PIXEL.search(content.replace(b"=\r\n", b""))
                if match:
                    self.pixels.append((match.group(1) or match.group(2)).decode())
                self.clicks.extend(m.decode() for m in _CLICK.findall(content)[:1])
        return "250 2.0.0 Ok"


def newsletter(stream: str, links: int) -> bytes:
    """The newsletter as sent after DATA: dot-stuffed (nothing to stuff) and ending CRLF.CRLF."""
    anchors = "".join(
        f'<p><a href="https://shop.dst.test/item/{i}?ref=news">Item {i}</a> - a good thing to buy.</p>'
        for i in range(links)
    )
    html = f"<html><body><h1>This week</h1>{anchors}{'<p>' + 'Text of the newsletter. ' * 200 + '</p>'}</body></html>"
    text = "This week\r\n" + "".join(f"Item {i}: https://shop.dst.test/item/{i}?ref=news\r\n" for i in range(links))
    qp = html.replace("=", "=3D")
    qp = "=\r\n".join(qp[i : i + 74] for i in range(0, len(qp), 74))
    return (
        f"From: Shop <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: This week\r\nX-Stream: {stream}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\n'
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n--b1\r\n"
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + qp
        + "\r\n--b1--\r\n.\r\n"
    ).encode()


async def _submit(app, login: tuple[str, str], body: bytes, messages: int, sessions: int) -> int:
    opened = await asyncio.gather(
        *(Session.open(app.submission_port, app.client_context(), *login) for _ in range(sessions))
    )
    counter = iter(range(messages))
    sent = 0

    async def worker(s: Session) -> None:
        nonlocal sent
        for _ in counter:
            await s.send(body)
            sent += 1

    try:
        await asyncio.gather(*(worker(s) for s in opened))
    finally:
        await asyncio.gather(*(s.close() for s in opened))
    return sent


def batch(
    app, login: tuple[str, str], sink: CountingSink, stream: str, messages: int, sessions: int, links: int
) -> float:
    """Relay ``messages`` newsletters of ``stream``; messages/s from the first byte to the last arrival."""
    body = newsletter(stream, links)
    target = sink.count + messages
    start = time.monotonic()
    try:
        asyncio.run(_submit(app, login, body, messages, sessions))
    except (SmtpError, OSError) as exc:
        raise RuntimeError(f"submission failed: {exc}\n{app.log_tail()}") from exc
    deadline = time.monotonic() + 300
    while sink.count < target and time.monotonic() < deadline:
        time.sleep(0.02)
    if sink.count < target:
        raise RuntimeError(f"only {sink.count - target + messages} of {messages} arrived:\n{app.log_tail()}")
    return messages / (sink.last - start)


def fetch(urls: list[str], threads: int, rate: float, stop: threading.Event) -> dict:
    """GET ``urls`` over ``threads`` keep-alive connections until ``stop``, offering ``rate`` requests/s in
    all (0: as fast as they answer); return the answers by status, errors, seconds and latencies (ms)."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    parsed = urllib.parse.urlsplit(urls[0])
    interval = threads / rate if rate else 0.0
    start = time.monotonic()

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        mine: dict[int, int] = {}
        took: list[float] = []
        failed = 0
        i = offset
        due = start + offset * interval / threads
        while not stop.is_set():
            if interval:
                due += interval
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
            url = urllib.parse.urlsplit(urls[i % len(urls)])
            i += threads
            t0 = time.perf_counter()
            try:
                conn.request(
                    "GET",
                    f"{url.path}?{url.query}" if url.query else url.path,
                    headers={"User-Agent": "Mozilla/5.0 (bench reader)"},
                )
                response = conn.getresponse()
                response.read()
                mine[response.status] = mine.get(response.status, 0) + 1
                took.append((time.perf_counter() - t0) * 1000)
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        conn.close()
        with lock:
            for status, n in mine.items():
                statuses[status] = statuses.get(status, 0) + n
            latencies.extend(took)
            errors[0] += failed

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"statuses": statuses, "errors": errors[0], "seconds": time.monotonic() - start, "latencies": latencies}


def fetching(urls: list[str], threads: int, rate: float, during) -> tuple[dict, float]:
    """``fetch`` while ``during()`` runs; return fetch's result and during's."""
    stop, result = threading.Event(), {}

    def go() -> None:
        result.update(fetch(urls, threads, rate, stop))

    fetcher = threading.Thread(target=go)
    fetcher.start()
    try:
        value = during()
    finally:
        stop.set()
        fetcher.join()
    return result, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--links", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[500, 0],
        help="requests/s offered to the tracking endpoints, one run each (0: as fast as they answer)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the appliance with py-spy during the pairs and the endpoints' run, into DIR",
    )
    args = parser.parse_args()
    Profile.directory = args.profile

    print(machine())
    dns, port = dns_server(), free_port()
    sink = CountingSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port, server_hostname="mx.dst.test")
    controller.start()
    try:
        with appliance(dns, port) as app:
            sign_as_src_test(app, dns)
            account = app.create_account("bench")
            login = (account["username"], account["password"])

            def run(stream: str, n: int, label: str = "") -> float:
                with Profile(app, label) if label else contextlib.nullcontext():
                    return batch(app, login, sink, stream, n, args.sessions, args.links)

            run("transactional", 100)  # warm-up
            run("broadcast", 100)
            off, on = [], []
            for n in range(args.pairs):  # alternating who goes first
                if n % 2:
                    on.append(run("broadcast", args.messages, f"on {n}"))
                    off.append(run("transactional", args.messages, f"off {n}"))
                else:
                    off.append(run("transactional", args.messages, f"off {n}"))
                    on.append(run("broadcast", args.messages, f"on {n}"))
            ratios = [b / a for a, b in zip(off, on, strict=True)]
            print(
                f"relay, STARTTLS + AUTH, DKIM-signed (RSA-2048 + Ed25519), {args.messages} HTML newsletters of "
                f"{len(newsletter('broadcast', args.links))} bytes with {args.links} links, {args.sessions} "
                f"sessions, {args.pairs} alternating pairs:"
            )
            print("  tracking off  " + "  ".join(f"{v:6.1f}" for v in off) + "  msg/s")
            print("  tracking on   " + "  ".join(f"{v:6.1f}" for v in on) + "  msg/s")
            print(
                f"  on/off ratio per pair {', '.join(f'{r:.2f}' for r in ratios)}; "
                f"median {statistics.median(ratios):.2f} (target >= 0.85)"
            )

            urls = [u for pair in zip(sink.pixels, sink.clicks, strict=False) for u in pair]
            answers: Counter = Counter()
            for rate in args.rate:
                label = f"endpoints at {rate:g} while relaying"
                result, relayed = fetching(
                    urls, args.threads, rate, lambda label=label: run("broadcast", args.messages, label)
                )
                answered = sum(result["statuses"].values())
                answers.update(result["statuses"])
                offered = f"{rate:g} requests/s offered" if rate else "as fast as they answer"
                print(
                    f"tracking endpoints while relaying ({args.threads} keep-alive clients, {offered}, {len(urls)} "
                    f"distinct pixels and links, alternating): {answered / result['seconds']:.0f} requests/s "
                    f"(target >= 500), p50 {percentile(result['latencies'], 50):.1f} ms, p99 "
                    f"{percentile(result['latencies'], 99):.1f} ms, answers "
                    f"{dict(sorted(result['statuses'].items()))}, {result['errors']} errors; "
                    f"the relay meanwhile {relayed:.1f} msg/s"
                )
            time.sleep(1)  # the writer's last commit
            recorded = json.loads(app.cli("stats", "--json"))["analytics"]
            print(
                f"  recorded by the appliance in all: {recorded['opened']} opened, {recorded['clicked']} clicked; "
                f"answered in all: {answers[200]} pixels (200), {answers[302]} links (302)"
            )
    finally:
        controller.stop()
        dns.stop()


if __name__ == "__main__":
    main()
