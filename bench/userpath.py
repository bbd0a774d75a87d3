"""The user's path (a benchmark, not a test): a connection per message, STARTTLS, AUTH, DKIM.

WordPress (PHPMailer), Laravel, Django and printers open one connection per message, do STARTTLS
and AUTH, send one message and quit; mail from a verified domain is DKIM-signed. Every mode runs
the whole appliance (`python app.py`: SMTP and delivery in one process) in a fresh DATA_DIR; its
DNS is a loopback server here (MX dst.test → 127.0.0.1, the DKIM records of src.test), and it
delivers to a loopback sink. Postfix is a private instance of ../shared/bench/postfix-reference.sh
on free ports. Clients verify the server certificate: the appliance's against its local CA (name
relay.test checked); Postfix's self-signed one against itself (its certificate has no
subjectAltName, so only the chain is checked, not the name). Each comparison runs both sides in
the same run, alternating who goes first from one pair to the next.

  sessions   CLIENTS parallel clients, each session: connect, EHLO, STARTTLS, EHLO, AUTH PLAIN,
             one DKIM-signed SIZE-byte order mail, QUIT; into the appliance and into Postfix's
             submission port (Cyrus SASL, OpenDKIM), both relaying to Postfix's smtp-sink.
             Sessions/s at accept and end to end (until the sink has counted them all); then the
             same sessions into the same appliance in plain text from an IP-only account (no TLS,
             no AUTH: measures something else, the cost of TLS + AUTH).
  dkim       20 persistent STARTTLS + AUTH sessions × SIZE bytes into the appliance relaying to
             smtp-sink: From: a DKIM-verified domain (RSA-2048 + Ed25519 signatures) against the
             same From: as a verified sender address only (unsigned). End-to-end msg/s.
  appliance  Postfix's smtp-source (20 sessions × 10 KB, IP-only account, unsigned: measures
             relaying, not the user's path) into the appliance and into Postfix's relay port:
             accept while relaying (smtp-source's own time) and end to end.
  latency    RATE msg/s of signed mail, each message on its own STARTTLS + AUTH connection, into
             the appliance delivering to an aiosmtpd sink here: accept-to-delivered p50/p99 (from
             the 250 to the end of the sink's DATA; target p99 ≤ 100 ms).
  signing    in this process: appliance.dkim.sign (RSA-2048 + Ed25519, OpenSSL) against dkimpy's
             sign for the same two signatures, per message of SIZE bytes, alternating.
Every mode but signing prints the appliance's peak RSS during the run (target < 250 MB).

    python bench/userpath.py --mode sessions --sessions 400 --repeat 2
    python bench/userpath.py --mode dkim --messages 3000 --repeat 2
    python bench/userpath.py --mode appliance --messages 5000 --repeat 2
    python bench/userpath.py --mode latency --rate 20 --duration 30
    python bench/userpath.py --mode signing --messages 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Appliance, free_port, machine, percentile, wait_banner  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from intake import POSTFIX_SCRIPT, RECIPIENT, SENDER, Session, SmtpError, message_bytes  # noqa: E402
from relay import TimingSink  # noqa: E402

from tests.support.dnsserver import DnsServer  # noqa: E402

PF_BASE = Path(f"/tmp/postfix-reference-userpath-{os.getpid()}")
PF_USER, PF_PASSWORD = "bench@bench.test", "benchpass"
_MESG = re.compile(rb"mesg=(\d+)")
_QUEUED = re.compile(r"queued as ([0-9A-Z]{26})")


# -- Postfix ---------------------------------------------------------------------------------------


class Postfix:
    """A private reference instance: its own directory and free ports (other benchmarks may run)."""

    def __init__(self):
        self.ports = {name: free_port() for name in ("relay", "hold", "sink", "submit", "dkim")}
        self.env = {
            **os.environ,
            "PF_BASE": str(PF_BASE),
            "PF_RELAY_PORT": str(self.ports["relay"]),
            "PF_HOLD_PORT": str(self.ports["hold"]),
            "PF_SINK_PORT": str(self.ports["sink"]),
            "PF_SUBMIT_PORT": str(self.ports["submit"]),
            "PF_DKIM_PORT": str(self.ports["dkim"]),
        }

    def start(self) -> None:
        """A fresh instance (and a fresh smtp-sink) every run: Postfix slows as its queue and logs grow.
        The previous one is stopped first and waited for: `postfix start` while its master still runs
        keeps the old instance, whose certificate the script's reconfiguring has deleted (454 at STARTTLS)."""
        self.stop()
        for port in self.ports.values():
            wait_closed(port)
        subprocess.run(
            ["bash", str(POSTFIX_SCRIPT), "start"], check=True, capture_output=True, timeout=600, env=self.env
        )
        wait_banner(self.ports["submit"])
        wait_banner(self.ports["relay"])

    def stop(self) -> None:
        subprocess.run(["bash", str(POSTFIX_SCRIPT), "stop"], capture_output=True, timeout=120, env=self.env)

    def sink_count(self) -> int:
        """The last `mesg=N` of smtp-sink's count log (read from its tail, cheap to poll)."""
        try:
            with (PF_BASE / "sink.log").open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 256))
                found = _MESG.findall(log.read())
        except FileNotFoundError:
            return 0
        return int(found[-1]) if found else 0

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(PF_BASE / "tls" / "cert.pem"))
        context.check_hostname = False  # the reference certificate has no subjectAltName
        return context


def wait_closed(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.2)
    raise RuntimeError(f"127.0.0.1:{port} still answers after the reference instance was stopped")


def settle() -> None:
    """Let the previous run's dirty pages reach the disk before the next run's fsyncs."""
    os.sync()
    time.sleep(3)


# -- the appliance -----------------------------------------------------------------------------------


class PeakRss:
    """Samples a process's RSS every 0.2 s in a thread; ``peak`` in MB."""

    def __init__(self, app: Appliance):
        self.app, self.peak, self._stop = app, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.app.rss())
            except OSError:
                return

    def __enter__(self) -> PeakRss:
        self.peak = self.app.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Profile:
    """``py-spy record`` of the appliance while a run lasts, as collapsed stacks in PROFILE_DIR
    (--profile DIR; needs py-spy, `pip install py-spy`); nothing without --profile."""

    directory: Path | None = None

    def __init__(self, app: Appliance, label: str):
        self.app, self.label, self.proc = app, label, None

    def __enter__(self) -> Profile:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            out = self.directory / (re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-") + ".txt")
            self.proc = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(self.app.pid),
                    "--threads",
                    "--idle",
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            self.proc.wait(timeout=60)


def appliance(dns: DnsServer, delivery_port: int) -> Appliance:
    return Appliance(extra_env={"APPLIANCE_DNS_SERVERS": dns.spec, "APPLIANCE_DELIVERY_PORT": str(delivery_port)})


def dns_server() -> DnsServer:
    dns = DnsServer().start()
    dns.mx("dst.test", (10, "mx.dst.test"))
    dns.a("mx.dst.test", "127.0.0.1")
    return dns


def sign_as_src_test(app: Appliance, dns: DnsServer) -> None:
    """Add src.test, publish its DKIM records (RSA and Ed25519) in the loopback DNS, check it:
    from then on the appliance signs mail From: src.test with both keys."""
    import json

    added = json.loads(app.cli("domains", "add", "src.test", "--json"))
    for record in added["records"]:
        if record["type"] == "TXT" and record["key"].startswith("dkim"):
            dns.add(record["name"], "TXT", " ".join(f'"{s}"' for s in record["strings"]))
    checked = json.loads(app.cli("domains", "check", "src.test", "--json"))
    statuses = {r["key"]: r["status"] for r in checked[0]["records"]}
    if not checked[0]["verified"] or statuses.get("dkim-ed25519") != "pass":
        raise RuntimeError(f"src.test did not verify: {statuses}")


# -- clients -----------------------------------------------------------------------------------------


async def _plain_session(port: int) -> Session:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    s = Session(reader, writer)
    code, text = await s.reply()
    if code != 220:
        raise SmtpError(f"banner: {text}")
    await s.command("EHLO client.test", 250)
    return s


async def one_per_connection(
    port: int, context: ssl.SSLContext | None, login: tuple[str, str] | None, sessions: int, clients: int, size: int
) -> tuple[float, list[str], int]:
    """``sessions`` sessions over ``clients`` parallel clients, each session one message; return
    (seconds, queue ids read from the 250s, errors)."""
    bodies = [message_bytes(size, i) for i in range(64)]
    counter = iter(range(sessions))
    ids: list[str] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        for n in counter:
            try:
                s = await (Session.open(port, context, *login) if login else _plain_session(port))
                await s.command(f"MAIL FROM:<{SENDER}>", 250)
                await s.command(f"RCPT TO:<{RECIPIENT}>", 250)
                await s.command("DATA", 354)
                s.writer.write(bodies[n % len(bodies)])
                code, text = await s.reply()
                if code != 250:
                    raise SmtpError(text)
                found = _QUEUED.search(text)
                ids.append(found.group(1) if found else "")
                await s.close()
            except (SmtpError, OSError, ssl.SSLError) as exc:
                errors += 1
                if errors == 1:
                    print(f"    first error: {exc}", flush=True)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, ids, errors


def wait_sink(count, target: int, timeout: float = 600) -> float:
    """Poll ``count()`` until it reaches ``target``; return when it did (perf_counter)."""
    deadline = time.monotonic() + timeout
    while count() < target and time.monotonic() < deadline:
        time.sleep(0.02)
    return time.perf_counter()


def report(label: str, n: int, seconds: float, e2e: float, errors: int, rss: float | None) -> dict:
    row = {"label": label, "accept": n / seconds, "e2e": n / e2e if e2e else float("nan"), "errors": errors, "rss": rss}
    print(
        f"    {label}: {n} in {seconds:.1f} s = {row['accept']:.1f}/s accepted, {row['e2e']:.1f}/s end to end"
        f"{'' if errors == 0 else f', {errors} errors'}" + ("" if rss is None else f", peak RSS {rss:.0f} MB"),
        flush=True,
    )
    return row


# -- modes -------------------------------------------------------------------------------------------


def pair(run: int, ours, theirs) -> tuple:
    """Run one pair of the comparison, the appliance first in odd runs and Postfix first in even ones, so that
    neither side always meets the warmer caches; returns (ours(), theirs())."""
    print(f"  pair {run} ({'appliance' if run % 2 else 'postfix'} first):", flush=True)
    if run % 2:
        mine = ours()
        return mine, theirs()
    reference = theirs()
    return ours(), reference


def mode_sessions(args, postfix: Postfix) -> list[tuple[float, float]]:
    dns = dns_server()
    ratios = []

    def ours() -> tuple[dict, dict]:
        with appliance(dns, postfix.ports["sink"]) as app:
            sign_as_src_test(app, dns)
            account = app.create_account("bench")
            app.create_account("bench-ip", "--ip", "127.0.0.0/8", "--ip-only")
            settle()
            with PeakRss(app) as rss, Profile(app, "sessions starttls auth dkim"):
                before, t0 = postfix.sink_count(), time.perf_counter()
                seconds, ids, errors = asyncio.run(
                    one_per_connection(
                        app.submission_port,
                        app.client_context(),
                        (account["username"], account["password"]),
                        args.sessions,
                        args.clients,
                        args.size,
                    )
                )
                done = wait_sink(postfix.sink_count, before + len(ids))
            tls = report("appliance, STARTTLS + AUTH + DKIM", len(ids), seconds, done - t0, errors, rss.peak)
            settle()
            with PeakRss(app) as rss:  # the same appliance: plain text, IP-only account (something else)
                before, t0 = postfix.sink_count(), time.perf_counter()
                seconds, ids, errors = asyncio.run(
                    one_per_connection(app.submission_port, None, None, args.sessions, args.clients, args.size)
                )
                done = wait_sink(postfix.sink_count, before + len(ids))
            plain = report(
                "appliance, plain text, IP-only (no TLS, no AUTH), DKIM", len(ids), seconds, done - t0, errors, rss.peak
            )
        return tls, plain

    def theirs() -> dict:
        settle()
        before, t0 = postfix.sink_count(), time.perf_counter()
        seconds, ids, errors = asyncio.run(
            one_per_connection(
                postfix.ports["submit"],
                postfix.client_context(),
                (PF_USER, PF_PASSWORD),
                args.sessions,
                args.clients,
                args.size,
            )
        )
        done = wait_sink(postfix.sink_count, before + len(ids))
        return report("postfix submission, STARTTLS + SASL + OpenDKIM", len(ids), seconds, done - t0, errors, None)

    try:
        for run in range(1, args.repeat + 1):
            postfix.start()
            (tls, plain), pf = pair(run, ours, theirs)
            ratios.append((tls["accept"] / pf["accept"], tls["e2e"] / pf["e2e"]))
            print(
                f"    ratio appliance/postfix: accept {ratios[-1][0]:.2f}, end to end {ratios[-1][1]:.2f}; "
                f"TLS+AUTH / plain on the appliance: {tls['accept'] / plain['accept']:.2f}",
                flush=True,
            )
    finally:
        dns.stop()
    return ratios


async def persistent(
    port: int, context: ssl.SSLContext, login: tuple[str, str], sessions: int, messages: int, size: int
) -> tuple[float, int, int]:
    """``sessions`` persistent STARTTLS + AUTH sessions sending ``messages`` in all."""
    bodies = [message_bytes(size, i) for i in range(64)]
    opened = await asyncio.gather(*(Session.open(port, context, *login) for _ in range(sessions)))
    counter = iter(range(messages))
    ok = errors = 0

    async def worker(s: Session) -> None:
        nonlocal ok, errors
        for n in counter:
            try:
                await s.send(bodies[n % len(bodies)])
                ok += 1
            except (SmtpError, OSError) as exc:
                errors += 1
                print(f"    error: {exc}", flush=True)
                return

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in opened))
    seconds = time.perf_counter() - t0
    await asyncio.gather(*(s.close() for s in opened))
    return seconds, ok, errors


def mode_dkim(args, postfix: Postfix) -> list[tuple[float, float]]:
    dns = dns_server()
    ratios = []

    def run(signed: bool) -> dict:
        with appliance(dns, postfix.ports["sink"]) as app:
            if signed:
                sign_as_src_test(app, dns)
            else:
                app.cli("senders", "add", SENDER, "--verified")
            account = app.create_account("bench")
            settle()
            with PeakRss(app) as rss, Profile(app, f"dkim {'signed' if signed else 'unsigned'}"):
                before, t0 = postfix.sink_count(), time.perf_counter()
                seconds, ok, errors = asyncio.run(
                    persistent(
                        app.submission_port,
                        app.client_context(),
                        (account["username"], account["password"]),
                        20,
                        args.messages,
                        args.size,
                    )
                )
                done = wait_sink(postfix.sink_count, before + ok)
            return report(
                f"appliance, {'DKIM-signed (RSA + Ed25519)' if signed else 'unsigned'}",
                ok,
                seconds,
                done - t0,
                errors,
                rss.peak,
            )

    try:
        postfix.start()  # only its smtp-sink is used here
        for n in range(1, args.repeat + 1):
            print(f"  pair {n} ({'signed' if n % 2 else 'unsigned'} first):", flush=True)
            if n % 2:
                signed = run(True)
                unsigned = run(False)
            else:
                unsigned = run(False)
                signed = run(True)
            ratios.append((signed["accept"] / unsigned["accept"], signed["e2e"] / unsigned["e2e"]))
            print(f"    ratio signed/unsigned: accept {ratios[-1][0]:.2f}, end to end {ratios[-1][1]:.2f}", flush=True)
    finally:
        dns.stop()
    return ratios


def smtp_source(port: int, messages: int, size: int, count) -> tuple[float, float, int]:
    """smtp-source, 20 sessions; return (accept seconds, end-to-end seconds, delivered)."""
    settle()
    before, t0 = count(), time.perf_counter()
    subprocess.run(
        [
            "smtp-source",
            "-s",
            "20",
            "-m",
            str(messages),
            "-l",
            str(size),
            "-d",
            "-f",
            SENDER,
            "-t",
            RECIPIENT,
            "-M",
            "client.test",
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    accepted = time.perf_counter() - t0
    done = wait_sink(count, before + messages)
    return accepted, done - t0, count() - before


def mode_appliance(args, postfix: Postfix) -> list[tuple[float, float]]:
    if not shutil.which("smtp-source"):
        sys.exit("smtp-source not found: run ../shared/bench/postfix-reference.sh start once")
    dns = dns_server()
    ratios = []

    def ours() -> dict:
        with appliance(dns, postfix.ports["sink"]) as app:
            app.create_account("bench-ip", "--ip", "127.0.0.0/8", "--ip-only")
            app.cli("senders", "add", SENDER, "--verified")
            with PeakRss(app) as rss, Profile(app, "appliance relay"):
                accepted, e2e, n = smtp_source(app.submission_port, args.messages, 10240, postfix.sink_count)
            return report("appliance (python app.py), IP-only, unsigned", n, accepted, e2e, args.messages - n, rss.peak)

    def theirs() -> dict:
        postfix.start()
        accepted, e2e, n = smtp_source(postfix.ports["relay"], args.messages, 10240, postfix.sink_count)
        return report("postfix relay port", n, accepted, e2e, args.messages - n, None)

    try:
        postfix.start()
        for n in range(1, args.repeat + 1):
            a, p = pair(n, ours, theirs)
            ratios.append((a["accept"] / p["accept"], a["e2e"] / p["e2e"]))
            print(
                f"    ratio appliance/postfix: accept while relaying {ratios[-1][0]:.2f}, "
                f"end to end {ratios[-1][1]:.2f}",
                flush=True,
            )
    finally:
        dns.stop()
    return ratios


def mode_latency(args) -> None:
    dns, port = dns_server(), free_port()
    handler = TimingSink()
    sink = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="mx.dst.test")
    sink.start()
    accepted: dict[str, float] = {}
    errors = 0
    try:
        with appliance(dns, port) as app:
            sign_as_src_test(app, dns)
            account = app.create_account("bench")
            login = (account["username"], account["password"])
            context = app.client_context()
            body = message_bytes(args.size, 0)

            async def one() -> None:
                nonlocal errors
                try:
                    s = await Session.open(app.submission_port, context, *login)
                    await s.command(f"MAIL FROM:<{SENDER}>", 250)
                    await s.command(f"RCPT TO:<{RECIPIENT}>", 250)
                    await s.command("DATA", 354)
                    s.writer.write(body)
                    code, text = await s.reply()
                    done = time.monotonic()
                    found = _QUEUED.search(text)
                    if code == 250 and found:
                        accepted[found.group(1)] = done
                    await s.close()
                except (SmtpError, OSError, ssl.SSLError):
                    errors += 1

            async def offer() -> None:
                tasks, start = [], time.monotonic()
                for i in range(int(args.rate * args.duration)):
                    await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                    tasks.append(asyncio.create_task(one()))
                await asyncio.gather(*tasks)

            settle()
            with PeakRss(app) as rss:
                asyncio.run(offer())
                lat = handler.latencies(accepted)
    finally:
        sink.stop()
        dns.stop()
    print(
        f"  {len(accepted)} accepted at {args.rate:g} msg/s (a STARTTLS + AUTH connection each, DKIM-signed), "
        f"{len(lat)} delivered, {errors} errors"
    )
    print(
        f"  accept-to-delivered p50 {percentile(lat, 50):.1f} ms  p99 {percentile(lat, 99):.1f} ms  "
        f"max {max(lat, default=float('nan')):.1f} ms  (target p99 ≤ 100 ms); peak RSS {rss.peak:.0f} MB"
    )


def mode_signing(args) -> None:
    import dkim as dkimpy

    from appliance import dkim

    keys = dkim.generate("apbench")
    data = message_bytes(args.size, 0)[:-3]  # without the DATA terminator

    def ours() -> None:
        dkim.sign(data, "src.test", keys.selector, keys.rsa_pem, keys.ed25519_seed)

    def theirs() -> None:
        for algorithm, name, key in (
            (b"rsa-sha256", dkim.rsa_selector(keys.selector), keys.rsa_pem),
            (b"ed25519-sha256", dkim.ed25519_selector(keys.selector), keys.ed25519_seed),
        ):
            dkimpy.sign(
                data,
                name.encode(),
                b"src.test",
                key.encode(),
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=algorithm,
                include_headers=list(dkim.SIGNED_HEADERS),
            )

    timings: dict[str, list[float]] = {"ours": [], "dkimpy": []}
    for run in range(4):
        for label, fn in (("ours", ours), ("dkimpy", theirs)) if run % 2 == 0 else (("dkimpy", theirs), ("ours", ours)):
            t0 = time.process_time()
            for _ in range(args.messages // 4):
                fn()
            timings[label].append((time.process_time() - t0) / (args.messages // 4) * 1000)
    a, b = statistics.median(timings["ours"]), statistics.median(timings["dkimpy"])
    print(
        f"  CPU per message, RSA-2048 + Ed25519 signatures, {args.size} B: appliance.dkim {a:.2f} ms, "
        f"dkimpy {b:.2f} ms (medians of 4 alternating runs): {b / a:.1f}x less"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["sessions", "dkim", "appliance", "latency", "signing"], required=True)
    parser.add_argument("--sessions", type=int, default=400, help="sessions: sessions per side and run")
    parser.add_argument("--clients", type=int, default=8, help="sessions: parallel clients")
    parser.add_argument("--messages", type=int, default=3000, help="dkim, appliance: messages per run")
    parser.add_argument("--size", type=int, default=4096, help="message size in bytes (appliance mode: 10240)")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs, alternating who goes first")
    parser.add_argument("--profile", type=Path, help="write py-spy collapsed stacks of the appliance's runs here")
    args = parser.parse_args()
    Profile.directory = args.profile
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} · {machine()}")
    if args.mode in ("latency", "signing"):
        {"latency": mode_latency, "signing": mode_signing}[args.mode](args)
        return
    postfix = Postfix()
    try:
        ratios = {"sessions": mode_sessions, "dkim": mode_dkim, "appliance": mode_appliance}[args.mode](args, postfix)
    finally:
        postfix.stop()
        shutil.rmtree(PF_BASE, ignore_errors=True)
    if len(ratios) > 1:
        print(
            f"  median ratios: accept {statistics.median(r[0] for r in ratios):.2f}, "
            f"end to end {statistics.median(r[1] for r in ratios):.2f} over {len(ratios)} pairs"
        )


if __name__ == "__main__":
    main()
