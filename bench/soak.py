"""Soak benchmark: mixed traffic for a long time, and whether anything grows without bound.

Starts the appliance as a real process (`python app.py`, bench/_common.Appliance) whose outbound
mail goes to an aiosmtpd sink in this process (a loopback DNS server says MX dst.test → 127.0.0.1),
then runs, until DURATION is over, a few client threads that each repeat one kind of traffic:

  good       STARTTLS + AUTH PLAIN, a 5 KB message to the sink, QUIT
  large      STARTTLS + AUTH, a 2 MB message (and an LF-only one), QUIT
  malformed  a header over MAX_HEADER_SIZE (552), two From: (554), a NUL byte (554), a long line
  bad auth   wrong passwords from 127.0.0.3 (535, then 421 once that username cools down)
  bad client garbage and control bytes, a dropped connection in the middle of DATA, STARTTLS then
             nothing, a second STARTTLS inside TLS
  idle       connections that never send a command (cut after SMTP_FIRST_COMMAND_TIMEOUT)
  slow       a pipelined burst of NOOPs whose replies are read a few bytes at a time

Every INTERVAL seconds it samples the appliance's RSS, open file descriptors, threads and queue
depth (deliveries queued, deferred or being sent) and prints a row. At the end it compares the
last third of the samples with the middle third and says, per figure, whether it kept growing.
Loopback only; every loop is bounded by the deadline and every socket has a timeout.

    nice python bench/soak.py                      # 30 minutes
    python bench/soak.py --duration 120 --interval 10
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import socket
import sqlite3
import ssl
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from _common import REPO, Appliance, CountingSink, free_port, machine, print_table

sys.path.insert(0, str(REPO))
from aiosmtpd.controller import Controller  # noqa: E402

from tests.support.dnsserver import DnsServer  # noqa: E402

SENDER, RECIPIENT = "a@src.test", "b@dst.test"


class Client:
    """A line-oriented SMTP client on one socket (TLS after starttls())."""

    def __init__(self, port: int, context: ssl.SSLContext, source_ip: str = "127.0.0.1", timeout: float = 30):
        self.context = context
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source_ip, 0))
        self.file = self.sock.makefile("rb")
        self.reply()

    def reply(self) -> int:
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return int(line[:3])

    def cmd(self, line: bytes) -> int:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        self.cmd(b"EHLO soak.test")
        if self.cmd(b"STARTTLS") == 220:
            self.sock = self.context.wrap_socket(self.sock, server_hostname="relay.test")
            self.file = self.sock.makefile("rb")
        self.cmd(b"EHLO soak.test")

    def login(self, username: str, password: str) -> int:
        return self.cmd(b"AUTH PLAIN " + base64.b64encode(f"\0{username}\0{password}".encode()))

    def message(self, data: bytes) -> int:
        self.cmd(f"MAIL FROM:<{SENDER}>".encode())
        self.cmd(f"RCPT TO:<{RECIPIENT}>".encode())
        if self.cmd(b"DATA") != 354:
            return 0
        stuffed = data.replace(b"\r\n.", b"\r\n..")
        self.sock.sendall(stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        return self.reply()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def body(size: int, subject: str, eol: bytes = b"\r\n") -> bytes:
    head = f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    return (head + line * (size // len(line))).replace(b"\r\n", eol)


class Traffic:
    """The client threads, their outcome counts, and the deadline they all stop at."""

    def __init__(self, app: Appliance, username: str, password: str, deadline: float):
        self.app, self.username, self.password, self.deadline = app, username, password, deadline
        self.context = app.client_context()
        self.outcomes: Counter = Counter()
        self.lock = threading.Lock()

    def count(self, kind: str, outcome) -> None:
        with self.lock:
            self.outcomes[f"{kind} {outcome}"] += 1

    def client(self, source_ip: str = "127.0.0.1", timeout: float = 30) -> Client:
        return Client(self.app.submission_port, self.context, source_ip, timeout)

    def run(self, kind: str, pause: float) -> None:
        action = getattr(self, kind)
        while time.monotonic() < self.deadline:
            try:
                action()
            except (OSError, ConnectionError, ValueError) as exc:  # a client's fate, counted
                self.count(kind, type(exc).__name__)
            time.sleep(pause)

    def good(self) -> None:
        c = self.client()
        c.starttls()
        c.login(self.username, self.password)
        self.count("good", c.message(body(5 * 1024, "soak good")))
        c.cmd(b"QUIT")
        c.close()

    def large(self) -> None:
        c = self.client()
        c.starttls()
        c.login(self.username, self.password)
        self.count("large", c.message(body(2 * 1024 * 1024, "soak large")))
        self.count("large-lf", c.message(body(20 * 1024, "soak lf", eol=b"\n")))
        c.cmd(b"QUIT")
        c.close()

    def malformed(self) -> None:
        c = self.client()
        c.starttls()
        c.login(self.username, self.password)
        folded = f"From: {SENDER}\r\nSubject: big\r\n".encode() + b"\tfolded line of a huge header\r\n" * 12000
        self.count("malformed-header", c.message(folded + b"\r\nbody"))
        self.count("malformed-two-from", c.message(f"From: {SENDER}\r\nFrom: x@paypal.test\r\n\r\nhi".encode()))
        self.count("malformed-nul", c.message(f"From: {SENDER}\r\n\r\nnul \0 byte".encode()))
        self.count("malformed-long-line", c.message(f"From: {SENDER}\r\n\r\n".encode() + b"y" * 3000))
        c.cmd(b"QUIT")
        c.close()

    def bad_auth(self) -> None:
        c = self.client("127.0.0.3")
        c.starttls()
        self.count("bad-auth", c.login(self.username, "wrong password"))
        c.close()

    def bad_client(self) -> None:
        c = self.client()
        self.count("bad-garbage", c.cmd(b"\x00\xff garbage"))
        self.count("bad-control", c.cmd(b"MAIL FROM:<a\x00b@src.test>"))
        c.close()
        c = self.client()
        c.starttls()
        c.login(self.username, self.password)
        self.count("bad-starttls-twice", c.cmd(b"STARTTLS"))
        c.cmd(f"MAIL FROM:<{SENDER}>".encode())
        c.cmd(f"RCPT TO:<{RECIPIENT}>".encode())
        c.cmd(b"DATA")
        c.sock.sendall(body(50 * 1024, "dropped")[: 30 * 1024])  # and goes away in the middle
        c.close()
        c = self.client()
        c.cmd(b"EHLO soak.test")
        c.sock.sendall(b"STARTTLS\r\n")  # and never starts the handshake
        c.close()
        self.count("bad-client", "done")

    def idle(self) -> None:
        c = self.client(timeout=90)
        try:
            self.count("idle", c.reply())  # the 421 4.4.2 after SMTP_FIRST_COMMAND_TIMEOUT
        finally:
            c.close()

    def slow(self) -> None:
        c = self.client()
        c.sock.sendall(b"EHLO soak.test\r\n" + b"NOOP\r\n" * 2000 + b"QUIT\r\n")
        got = 0
        while chunk := c.sock.recv(16):
            got += len(chunk)
            time.sleep(0.002)
        self.count("slow", "read all" if got > 2000 * 8 else "short")
        c.close()


KINDS = {"good": 0.05, "large": 1.0, "malformed": 1.0, "bad_auth": 0.5, "bad_client": 0.5, "idle": 0.0, "slow": 1.0}


def reply_classes(outcomes: Counter) -> Counter:
    """Fold the outcomes into reply classes (2xx, 4xx, 5xx) and client errors (an exception's name)."""
    classes: Counter = Counter()
    for key, n in outcomes.items():
        outcome = key.split(" ", 1)[1]
        if outcome.isdigit():
            classes[f"{outcome[0]}xx" if outcome != "0" else "no 354"] += n
        elif outcome in ("done", "read all", "short"):
            classes[f"session {outcome}"] += n
        else:
            classes[f"client error {outcome}"] += n
    return classes


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def queue_depth(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'appliance.db'}?mode=ro", uri=True, timeout=30)) as db:
        query = "SELECT count(*) FROM delivery WHERE status IN ('queued', 'deferred', 'sending')"
        return db.execute(query).fetchone()[0]


def stored(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'appliance.db'}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute("SELECT count(*) FROM message").fetchone()[0]


# A figure "grew" when the median of the last third of the samples exceeds the middle third's by more
# than this (absolute, relative): noise and warm-up are not growth, a leak is.
TOLERANCE = {"rss_mb": (8.0, 0.05), "fds": (8, 0.10), "threads": (4, 0.10), "queue": (25, 0.25)}


def verdict(samples: list[dict]) -> list[str]:
    thirds = len(samples) // 3
    if thirds < 2:
        return ["too few samples to judge growth (run longer, or sample more often)"]
    lines = []
    for key, (absolute, relative) in TOLERANCE.items():
        middle = statistics.median(s[key] for s in samples[thirds : 2 * thirds])
        last = statistics.median(s[key] for s in samples[2 * thirds :])
        grew = last - middle > max(absolute, relative * middle)
        lines.append(
            f"{key}: middle third median {middle:g}, last third median {last:g}, "
            f"max {max(s[key] for s in samples):g} → {'GREW' if grew else 'bounded'}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1800, help="seconds of traffic (default 30 minutes)")
    parser.add_argument("--interval", type=float, default=30, help="seconds between samples")
    args = parser.parse_args()

    dns, sink_port, sink = DnsServer().start(), free_port(), CountingSink()
    dns.mx("dst.test", (10, "mx.dst.test"))
    dns.a("mx.dst.test", "127.0.0.1")
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port, server_hostname="mx.dst.test")
    controller.start()
    env = {"APPLIANCE_DNS_SERVERS": dns.spec, "APPLIANCE_DELIVERY_PORT": str(sink_port)}
    print(
        f"soak: {args.duration:.0f} s of mixed traffic, a sample every {args.interval:.0f} s; {machine()}", flush=True
    )
    try:
        with Appliance(extra_env=env) as app:
            account = app.create_account("soak")
            app.cli("senders", "add", SENDER, "--verified")
            start = time.monotonic()
            traffic = Traffic(app, account["username"], account["password"], start + args.duration)
            workers = [
                threading.Thread(target=traffic.run, args=(kind, pause), name=kind, daemon=True)
                for kind, pause in KINDS.items()
            ]
            for worker in workers:
                worker.start()
            samples = []
            while True:
                now = time.monotonic()
                samples.append(
                    {
                        "t_s": round(now - start),
                        "rss_mb": round(app.rss(), 1),
                        "fds": open_fds(app.pid),
                        "threads": threads(app.pid),
                        "queue": queue_depth(app.data_dir),
                        "stored": stored(app.data_dir),
                        "at_sink": sink.count,
                    }
                )
                print("  " + "  ".join(f"{k}={v}" for k, v in samples[-1].items()), flush=True)
                if now >= traffic.deadline:
                    break
                time.sleep(min(args.interval, max(0.0, traffic.deadline - time.monotonic())))
            for worker in workers:
                worker.join(timeout=120)
            print()
            print_table(samples, list(samples[0]))
            print()
            print("outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(traffic.outcomes.items())))
            classes = sorted(reply_classes(traffic.outcomes).items())
            print("replies by class: " + ", ".join(f"{k}: {v}" for k, v in classes))
            first, last = samples[0], samples[-1]
            for key in ("rss_mb", "fds", "threads", "queue"):
                print(f"{key}: start {first[key]:g}, end {last[key]:g}, peak {max(s[key] for s in samples):g}")
            print(f"messages stored {last['stored']}, received by the sink {last['at_sink']}")
            for line in verdict(samples):
                print(line)
            if app.proc.poll() is not None:
                print(f"the appliance exited with {app.proc.returncode}:\n{app.log_tail()}")
            log = app.log_path.read_text(errors="replace")
            print(f"tracebacks in the appliance log: {log.count('Traceback')}")
            if "Traceback" in log:  # the first one, to say what it was
                print(log[log.index("Traceback") - 300 :][:3000])
    finally:
        controller.stop()
        dns.stop()


if __name__ == "__main__":
    main()
