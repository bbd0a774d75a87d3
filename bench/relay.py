"""Relay benchmark: accept → delivered at a loopback remote (a benchmark, not a test).

Starts the appliance as a real process (`python app.py`) whose DNS_SERVERS points at a loopback
DNS server in this process (MX dst.test → 127.0.0.1) and whose DELIVERY_PORT is a loopback sink.

  latency     a fixed offered load (RATE msg/s for DURATION s, one session, an IP-only account) to an
              aiosmtpd sink in this process: accept-to-delivered p50/p99, from the 250 of our
              DATA to the end of the sink's DATA (targets: p50 < 50 ms, p99 < 250 ms at 20 msg/s).
  throughput  Postfix's smtp-source (SESSIONS sessions, SIZE bytes) into the appliance, delivered to
              Postfix's smtp-sink; then the same load into the Postfix reference instance
              (../shared/bench/postfix-reference.sh), which relays to the same smtp-sink.
              Prints messages/s from the first byte sent to the last message counted at the sink,
              and the ratio ours/Postfix (target: ≥ 1).

    python bench/relay.py
    python bench/relay.py --mode latency --rate 20 --duration 30
    python bench/relay.py --mode throughput --sessions 20 --messages 2000 --size 10240
    python bench/relay.py --mode throughput --messages 4000 --repeat 5   # median of alternating pairs
    python bench/relay.py --mode throughput --before /tmp/main-tree      # this tree against another
                                                                         # checkout instead of Postfix
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import REPO, Appliance, free_port, machine, percentile

sys.path.insert(0, str(REPO))
from aiosmtpd.controller import Controller  # noqa: E402

from tests.support.dnsserver import DnsServer  # noqa: E402

# The same variable as bench/intake.py; the default fits a checkout next to shared/ (not a worktree elsewhere).
REFERENCE = Path(os.environ.get("POSTFIX_REFERENCE", REPO.parent / "shared" / "bench" / "postfix-reference.sh"))
PF_RELAY, PF_SINK = 12525, 12526
_QUEUED = re.compile(rb"queued as ([0-9A-Z]{26})")
_ID = re.compile(rb"\tid ([0-9A-Z]{26})")


class TimingSink:
    """aiosmtpd handler that notes when each appliance message id arrived."""

    def __init__(self):
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        now = time.monotonic()
        match = _ID.search(envelope.original_content)
        if match:
            with self.lock:
                self.arrived.setdefault(match.group(1).decode(), now)
        return "250 2.0.0 Ok"

    def latencies(self, accepted: dict[str, float], timeout: float = 30) -> list[float]:
        """Milliseconds from each accepted message's 250 (``accepted``: message id -> monotonic time) to its
        arrival here, waiting up to ``timeout`` seconds for them all; messages that never came are left out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.arrived) < len(accepted):
            time.sleep(0.05)
        with self.lock:
            return [(self.arrived[k] - t) * 1000 for k, t in accepted.items() if k in self.arrived]


def dns_for(sink_ip: str = "127.0.0.1") -> DnsServer:
    dns = DnsServer().start()
    dns.mx("dst.test", (10, "mx.dst.test"))
    dns.a("mx.dst.test", sink_ip)
    return dns


def latency(rate: float, duration: float) -> None:
    dns, port = dns_for(), free_port()
    handler = TimingSink()
    sink = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="mx.dst.test")
    sink.start()
    env = {"APPLIANCE_DNS_SERVERS": dns.spec, "APPLIANCE_DELIVERY_PORT": str(port)}
    body = b"From: a@src.test\r\nTo: b@dst.test\r\nSubject: latency\r\n\r\n" + (b"x" * 76 + b"\r\n") * 26
    accepted: dict[str, float] = {}
    try:
        with Appliance(extra_env=env) as app:
            sending_account(app)
            count = int(rate * duration)
            with smtplib.SMTP("127.0.0.1", app.submission_port, local_hostname="client.test", timeout=30) as client:
                client.ehlo()
                start = time.monotonic()
                for i in range(count):
                    time.sleep(max(0.0, start + i / rate - time.monotonic()))
                    client.mail("a@src.test")
                    client.rcpt("b@dst.test")
                    code, reply = client.data(body)
                    done = time.monotonic()
                    match = _QUEUED.search(reply)
                    if code == 250 and match:
                        accepted[match.group(1).decode()] = done
            lat = handler.latencies(accepted)
    finally:
        sink.stop()
        dns.stop()
    print(f"latency: {len(accepted)} accepted at {rate:g} msg/s, {len(lat)} delivered")
    print(
        f"  accept-to-delivered p50 {percentile(lat, 50):.1f} ms  p99 {percentile(lat, 99):.1f} ms"
        f"  max {max(lat, default=float('nan')):.1f} ms   (targets: p50 < 50, p99 < 250)"
    )


def reference(*args: str) -> str:
    return subprocess.run(["bash", str(REFERENCE), *args], capture_output=True, text=True, check=True).stdout.strip()


SINK_LOG = Path(os.environ.get("PF_BASE", "/tmp/postfix-reference")) / "sink.log"
_MESG = re.compile(rb"mesg=(\d+)")


def sink_count() -> int:
    """How many messages smtp-sink has received: the last `mesg=N` of its count log.

    Read from the log's tail: the reference script's `count` greps the whole log (one line per
    message) in a new bash, which polled every 50 ms cost more CPU the longer the runs went on,
    taken from whichever side was being measured.
    """
    try:
        with SINK_LOG.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 256))
            found = _MESG.findall(log.read())
    except FileNotFoundError:
        found = []
    if found:
        return int(found[-1])
    out = subprocess.run(["bash", str(REFERENCE), "count"], capture_output=True, text=True).stdout.strip()
    return int(out) if out.isdigit() else 0  # `count` exits non-zero until the first message


def settle() -> None:
    """Let the previous run's dirty pages reach the disk first: its writeback would otherwise
    slow down the fsyncs of whichever side runs next."""
    os.sync()
    time.sleep(3)


def smtp_source(port: int, sessions: int, messages: int, size: int) -> float:
    settle()
    before = sink_count()
    start = time.monotonic()
    subprocess.run(
        [
            "smtp-source",
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            str(size),
            "-d",
            "-f",
            "a@src.test",
            "-t",
            "b@dst.test",
            "-M",
            "client.test",
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    deadline = time.monotonic() + 600
    while sink_count() - before < messages and time.monotonic() < deadline:
        time.sleep(0.05)
    delivered = sink_count() - before
    if delivered < messages:
        print(f"  only {delivered}/{messages} reached the sink")
    return delivered / (time.monotonic() - start)


def sending_account(app: Appliance) -> None:
    """An IP-only account for 127.0.0.0/8, sending as the verified address a@src.test."""
    app.create_account("bench-ip", "--ip", "127.0.0.0/8", "--ip-only")
    app.cli("senders", "add", "a@src.test", "--verified")


def throughput(sessions: int, messages: int, size: int, repeat: int = 1, before: Path | None = None) -> None:
    if not shutil.which("smtp-source"):
        sys.exit("smtp-source not found: apt-get install postfix (or run postfix-reference.sh start once)")
    print(reference("start"))
    dns = dns_for()
    env = {"APPLIANCE_DNS_SERVERS": dns.spec, "APPLIANCE_DELIVERY_PORT": str(PF_SINK)}

    def ours(repo: Path = REPO) -> float:
        with Appliance(extra_env=env, repo=repo) as app:
            sending_account(app)
            return smtp_source(app.submission_port, sessions, messages, size)

    def theirs() -> float:
        # A fresh instance each run, as the appliance gets (Postfix slows as its logs and queue grow).
        reference("start")
        return smtp_source(PF_RELAY, sessions, messages, size)

    # With --before, another checkout of the appliance takes Postfix's place (smtp-sink stays the sink).
    other, name = (lambda: ours(before), "before") if before else (theirs, "postfix")
    print(f"throughput ({sessions} sessions, {size} B, {messages} messages, accept → delivered at smtp-sink):")
    ratios = []
    try:
        for run in range(1, repeat + 1):
            # Alternate who goes first, so a drift in the machine's speed does not favour one side.
            if run % 2:
                a = ours()
                p = other()
            else:
                p = other()
                a = ours()
            ratios.append(a / p)
            print(
                f"  run {run}: appliance {a:.0f} msg/s   {name} {p:.0f} msg/s   ratio ours/{name} {a / p:.2f}",
                flush=True,
            )
    finally:
        dns.stop()
        reference("stop")
    if repeat > 1:
        print(
            f"  median ratio ours/{name} over {repeat} runs: {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["all", "latency", "throughput"], default="all")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--repeat", type=int, default=1, help="throughput: pairs of runs, alternating who goes first")
    parser.add_argument(
        "--before", type=Path, help="throughput: another checkout of the appliance runs in Postfix's place"
    )
    args = parser.parse_args()
    print(machine())
    if args.mode in ("all", "latency"):
        latency(args.rate, args.duration)
    if args.mode in ("all", "throughput"):
        throughput(args.sessions, args.messages, args.size, args.repeat, args.before)


if __name__ == "__main__":
    main()
