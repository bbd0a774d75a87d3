"""SMTP intake benchmark: how fast the appliance accepts mail durably (a benchmark, not a test).

Starts the appliance as a real process (`python app.py`) in a temporary DATA_DIR on free
127.0.0.1 ports and measures three things (their targets are in docs/benchmarks.md):

  starttls  N persistent sessions over STARTTLS + AUTH PLAIN (our own asyncio client) sending
            SIZE-byte messages as fast as the appliance answers: messages/s, p50/p99 of the
            DATA-to-250 time, appliance CPU ms per message, RSS idle and after.
  plain     Postfix's smtp-source (no TLS, no AUTH: an IP-only account) against the appliance, and
            the same load against the Postfix reference instance's HOLD port
            (../shared/bench/postfix-reference.sh); both fsync before 250. Prints ours/Postfix.
  rate      a fixed offered load (RATE messages/s for DURATION s) over STARTTLS + AUTH; p50/p99
            DATA-to-250 (target: p99 < 50 ms).
  webhooks  the starttls load twice, on an appliance without any webhook and on one with an endpoint
            that wants every event (intake then writes a pending webhook delivery per event, one
            insert per commit): ours-with/ours-without (the endpoint is never called: `--role smtp`
            runs no workers, and its URL is a closed loopback port).

DATA-to-250 is measured from writing the DATA command to reading the final reply (it includes the
354 round trip and sending the body). The load generator runs on the same machine and its own CPU
is shown too, because on two cores it competes with the appliance.

    python bench/intake.py                      # all three modes, once
    python bench/intake.py --mode plain --repeat 2
    python bench/intake.py --mode starttls --sessions 20 --messages 6000 --size 10240
    python bench/intake.py --mode webhooks --repeat 3   # alternating who goes first
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import os
import resource
import shutil
import sqlite3
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 — bench/ is not a package; scripts import their sibling
    HOSTNAME,
    REPO,
    Appliance,
    free_port,
    machine,
    own_cpu_seconds,
    percentile,
    print_table,
    wait_banner,
)

POSTFIX_SCRIPT = Path(os.environ.get("POSTFIX_REFERENCE", "/work/shared/bench/postfix-reference.sh"))
# A private instance (own directory, own free ports): the script's defaults (/tmp/postfix-reference,
# 12525-12527) may be in use by another benchmark, and its `start` wipes that directory first.
POSTFIX_BASE = Path(f"/tmp/postfix-reference-intake-{os.getpid()}")
SENDER, RECIPIENT = "a@src.test", "b@dst.test"

COLUMNS = [
    "run",
    "mode",
    "server",
    "sessions",
    "sent",
    "ok",
    "errors",
    "msg/s",
    "p50 ms",
    "p99 ms",
    "server CPU ms/msg",
    "client CPU ms/msg",
    "RSS idle MB",
    "RSS after MB",
    "load before",
]


@dataclass
class Result:
    mode: str
    server: str
    sessions: int
    sent: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # DATA-to-250, seconds
    late: list[float] = field(default_factory=list)  # fixed rate: start minus schedule, seconds
    server_cpu: float | None = None
    client_cpu: float | None = None
    rss_idle: float | None = None
    rss_after: float | None = None
    load: float = 0.0
    first_error: str = ""

    def row(self, run: int) -> dict:
        def ms(v: float | None, digits: int = 1) -> str:
            return "–" if v is None or v != v else f"{v * 1000:.{digits}f}"

        def per_msg(cpu: float | None) -> float | None:
            return None if cpu is None or not self.ok else cpu / self.ok

        return {
            "run": run,
            "mode": self.mode,
            "server": self.server,
            "sessions": self.sessions,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "msg/s": f"{self.ok / self.seconds:.0f}" if self.seconds else "–",
            "p50 ms": ms(percentile(self.latencies, 50) if self.latencies else None),
            "p99 ms": ms(percentile(self.latencies, 99) if self.latencies else None),
            "server CPU ms/msg": ms(per_msg(self.server_cpu), 2),
            "client CPU ms/msg": ms(per_msg(self.client_cpu), 2),
            "RSS idle MB": "–" if self.rss_idle is None else f"{self.rss_idle:.0f}",
            "RSS after MB": "–" if self.rss_after is None else f"{self.rss_after:.0f}",
            "load before": f"{self.load:.2f}",
        }

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


# -- the message ---------------------------------------------------------------------------------


def message_bytes(size: int, n: int) -> bytes:
    """Return a plausible message of ``size`` bytes (headers included), dot-stuffed, ending CRLF.CRLF."""
    head = (
        f"From: Shop <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: Order {n} confirmed\r\n"
        f"Message-ID: <bench-{n}-{time.monotonic_ns()}@src.test>\r\n"
        f"Date: {datetime.datetime.now(datetime.UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = b"Thank you for your order. This line is filler text of a transactional mail body.\r\n"
    body = (line * (max(0, size - len(head)) // len(line) + 1))[: max(0, size - len(head) - 2)] + b"\r\n"
    return head + body + b".\r\n"  # no body line starts with '.', so no dot-stuffing is needed


# -- our asyncio SMTP client ---------------------------------------------------------------------


class SmtpError(Exception):
    pass


class Session:
    """One persistent client session: STARTTLS, AUTH PLAIN, then transactions."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise SmtpError("connection closed")
            lines.append(line.decode("utf-8", "replace").rstrip())
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    async def command(self, line: str, expect: int) -> str:
        self.writer.write(line.encode() + b"\r\n")
        code, text = await self.reply()
        if code != expect:
            raise SmtpError(f"{line.split()[0]}: {text}")
        return text

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext, username: str, password: str) -> Session:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        s = cls(reader, writer)
        code, text = await s.reply()
        if code != 220:
            raise SmtpError(f"banner: {text}")
        await s.command("EHLO client.test", 250)
        await s.command("STARTTLS", 220)
        await writer.start_tls(context, server_hostname=HOSTNAME)
        await s.command("EHLO client.test", 250)
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
        await s.command(f"AUTH PLAIN {token}", 235)
        return s

    async def send(self, data: bytes) -> float:
        """Send one message; return the DATA-to-250 time in seconds (raise SmtpError if refused)."""
        await self.command(f"MAIL FROM:<{SENDER}> SIZE={len(data)}", 250)
        await self.command(f"RCPT TO:<{RECIPIENT}>", 250)
        start = time.perf_counter()
        await self.command("DATA", 354)
        self.writer.write(data)
        code, text = await self.reply()
        elapsed = time.perf_counter() - start
        if code != 250:
            raise SmtpError(f"end of DATA: {text}")
        return elapsed

    async def close(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.reply(), 5)
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (TimeoutError, OSError, SmtpError, ssl.SSLError):
            pass


async def _open_all(app: Appliance, account: dict, sessions: int) -> list[Session]:
    context = app.client_context()
    return await asyncio.gather(
        *(Session.open(app.submission_port, context, account["username"], account["password"]) for _ in range(sessions))
    )


async def _closed_loop(app: Appliance, account: dict, res: Result, messages: int, size: int) -> None:
    """Each session sends its next message as soon as the previous one got its 250."""
    sessions = await _open_all(app, account, res.sessions)
    bodies = [message_bytes(size, i) for i in range(64)]
    counter = iter(range(messages))

    async def worker(s: Session) -> None:
        for n in counter:
            if not await _send_counted(res, s, bodies[n % len(bodies)]):
                return

    cpu0, own0, t0 = app.cpu(), own_cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker(s) for s in sessions))
    res.seconds = time.perf_counter() - t0
    res.server_cpu, res.client_cpu = app.cpu() - cpu0, own_cpu_seconds() - own0
    await asyncio.gather(*(s.close() for s in sessions))


async def _send_counted(res: Result, s: Session, body: bytes) -> bool:
    """Send one message on ``s``, counting it in ``res``; False when the session failed."""
    res.sent += 1
    try:
        res.latencies.append(await s.send(body))
    except (SmtpError, OSError) as exc:
        res.errors += 1
        res.first_error = res.first_error or str(exc)
        return False
    res.ok += 1
    return True


async def _fixed_rate(app: Appliance, account: dict, res: Result, rate: float, duration: float, size: int) -> None:
    """Offer ``rate`` messages/s on a schedule; any idle session takes the next due message."""
    sessions = await _open_all(app, account, res.sessions)
    bodies = [message_bytes(size, i) for i in range(64)]
    total = int(rate * duration)
    due: asyncio.Queue = asyncio.Queue()

    async def worker(s: Session) -> None:
        while True:
            item = await due.get()
            if item is None:
                return
            n, scheduled = item
            res.late.append(time.perf_counter() - scheduled)
            if not await _send_counted(res, s, bodies[n % len(bodies)]):
                return

    cpu0, own0, t0 = app.cpu(), own_cpu_seconds(), time.perf_counter()
    tasks = [asyncio.create_task(worker(s)) for s in sessions]
    for n in range(total):
        scheduled = t0 + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((n, scheduled))
    for _ in tasks:
        due.put_nowait(None)
    await asyncio.gather(*tasks)
    res.seconds = time.perf_counter() - t0
    res.server_cpu, res.client_cpu = app.cpu() - cpu0, own_cpu_seconds() - own0
    await asyncio.gather(*(s.close() for s in sessions))


# -- runs ----------------------------------------------------------------------------------------


def _settle(app: Appliance, seconds: float = 3.0) -> float:
    """Let start-up work finish, then return the idle RSS."""
    time.sleep(seconds)
    return app.rss()


def _stored(app: Appliance) -> int:
    """Count messages in the appliance's database (read-only), to check every 250 was stored."""
    return _count(app, "message")


def _count(app: Appliance, table: str) -> int:
    assert app.data_dir is not None
    con = sqlite3.connect(f"file:{app.data_dir / 'appliance.db'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(f'select count(*) from "{table}"').fetchone()[0]
    finally:
        con.close()


def _appliance(args, **env: str) -> Appliance:
    """The appliance under test, as ``--role`` (default ``smtp``: the SMTP front end alone, which
    accepts and queues like Postfix's HOLD port; ``all`` adds the delivery workers). Delivery goes
    to a closed loopback port (SMARTHOST) and DNS to a dead loopback resolver: nothing leaves
    127.0.0.1 (bench/relay.py measures delivery)."""
    role_args = ("--role", args.role) if args.role != "all" else ()
    return Appliance(
        repo=args.repo,
        args=role_args,
        extra_env={
            "APPLIANCE_SMARTHOST": f"smtp://127.0.0.1:{free_port()}",
            "APPLIANCE_DNS_SERVERS": f"127.0.0.1:{free_port()}",
            **env,
        },
    )


def _prepare(app: Appliance, *account_args: str) -> dict:
    """Create the sending account and make the benchmark's sender a verified sender."""
    account = app.create_account("bench", *account_args)
    try:
        app.cli("senders", "add", SENDER, "--verified")
    except RuntimeError as exc:  # a tree from before sender authorization (no `senders`)
        if "No such command" not in str(exc):
            raise
    return account


def run_starttls(args) -> list[Result]:
    res = Result("starttls+auth", "appliance", args.sessions, load=os.getloadavg()[0])
    with _appliance(args) as app:
        account = _prepare(app)
        res.rss_idle = _settle(app)
        asyncio.run(_closed_loop(app, account, res, args.messages or 6000, args.size))
        res.rss_after = app.rss()
        _check_stored(app, res)
    return [res]


WEBHOOK_CACHE_SECONDS = 5  # appliance/webhooks/endpoints.py: how soon another process sees a new endpoint


def _starttls_with_webhook(args, webhook: bool) -> Result:
    res = Result("starttls+auth", "with webhook" if webhook else "no webhook", args.sessions, load=os.getloadavg()[0])
    with _appliance(args, APPLIANCE_WEBHOOK_ALLOW_PRIVATE="true") as app:
        account = _prepare(app)
        if webhook:
            app.cli("webhooks", "create", f"http://127.0.0.1:{free_port()}/hook")
        res.rss_idle = _settle(app, WEBHOOK_CACHE_SECONDS + 1)
        asyncio.run(_closed_loop(app, account, res, args.messages or 6000, args.size))
        res.rss_after = app.rss()
        _check_stored(app, res)
        if webhook:  # every accepted message made its pending webhook delivery (the last ones in ≤ 50 ms)
            deadline = time.monotonic() + 5
            while (rows := _count(app, "webhook_delivery")) < res.ok and time.monotonic() < deadline:
                time.sleep(0.1)
            if rows != res.ok:
                raise RuntimeError(f"{rows} webhook deliveries written for {res.ok} accepted messages")
    return res


def run_webhooks(args) -> list[Result]:
    order = (False, True) if args.run % 2 else (True, False)  # alternate who goes first
    results = {webhook: _starttls_with_webhook(args, webhook) for webhook in order}
    return [results[False], results[True]]


def run_rate(args) -> list[Result]:
    res = Result(f"rate {args.rate:g}/s", "appliance", args.sessions, load=os.getloadavg()[0])
    with _appliance(args) as app:
        account = _prepare(app)
        res.rss_idle = _settle(app)
        asyncio.run(_fixed_rate(app, account, res, args.rate, args.duration, args.size))
        res.rss_after = app.rss()
        _check_stored(app, res)
    if res.late:
        print(
            f"  rate: schedule lag p99 {percentile(res.late, 99) * 1000:.1f} ms "
            f"(>0 means every session was busy when a message fell due)"
        )
    return [res]


def _check_stored(app: Appliance, res: Result) -> None:
    stored = _stored(app)
    if stored != res.ok:
        print(f"  WARNING: {res.ok} messages got 250 but {stored} are in the database")
    if res.first_error:
        print(f"  first error: {res.first_error}")


def _smtp_source(port: int, sessions: int, messages: int, size: int) -> tuple[float, float, str]:
    """Run smtp-source; return (seconds, its CPU seconds, stderr)."""
    cmd = [
        "smtp-source",
        "-s",
        str(sessions),
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
    ]
    print("  $ " + " ".join(cmd), flush=True)
    # The previous run's dirty pages first reach the disk: their writeback would otherwise slow
    # down the fsyncs of whichever side runs next.
    os.sync()
    time.sleep(2)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    said = (proc.stderr + proc.stdout).strip()
    if proc.returncode != 0:
        said += f" (exit {proc.returncode}: this run is INVALID"
        said += ", smtp-source was killed by a signal)" if proc.returncode < 0 else ")"
    return seconds, cpu, said


def _proc_tree_cpu(root: int) -> float:
    """CPU of ``root`` plus its reaped children (cutime/cstime) plus its live children, in seconds."""
    total = 0
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(stat_path.parent.name), int(f[1])
        if pid == root:
            total += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        elif ppid == root:
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / os.sysconf("SC_CLK_TCK")


def _postfix_held() -> int:
    hold = POSTFIX_BASE / "spool" / "hold"
    return sum(1 for p in hold.rglob("*") if p.is_file()) if hold.exists() else 0


def run_plain(args) -> list[Result]:
    """smtp-source against the appliance and against Postfix's HOLD port; from the second run on
    they take turns going first, so a drift in the machine's speed favours neither."""
    if not shutil.which("smtp-source"):
        sys.exit("smtp-source not found: apt-get install postfix (or run postfix-reference.sh start once)")
    if args.no_postfix:
        return [_plain_ours(args)]
    if args.run % 2:
        ours = _plain_ours(args)
        ref = _plain_postfix(args)
    else:
        ref = _plain_postfix(args)
        ours = _plain_ours(args)
    if ref.rate:
        print(f"  ratio ours/Postfix: {ours.rate / ref.rate:.2f} ({ours.rate:.0f} / {ref.rate:.0f} msg/s)")
    return [ours, ref]


def _plain_ours(args) -> Result:
    size, messages, sessions = args.size, args.messages or 20000, args.sessions
    ours = Result("plain smtp-source", "appliance", sessions, load=os.getloadavg()[0])
    with _appliance(args) as app:
        _prepare(app, "--ip", "127.0.0.0/8", "--ip-only")
        ours.rss_idle = _settle(app)
        cpu0 = app.cpu()
        ours.seconds, ours.client_cpu, out = _smtp_source(app.submission_port, sessions, messages, size)
        ours.server_cpu = app.cpu() - cpu0
        ours.rss_after = app.rss()
        ours.sent, ours.ok = messages, _stored(app)
        ours.errors = messages - ours.ok
        if out:
            print(f"  smtp-source said: {out[:300]}")
    return ours


def _plain_postfix(args) -> Result:
    size, messages, sessions = args.size, args.messages or 20000, args.sessions
    ref = Result("plain smtp-source", "postfix", sessions)
    hold_port = free_port()
    pf_env = {
        **os.environ,
        "PF_BASE": str(POSTFIX_BASE),
        "PF_HOLD_PORT": str(hold_port),
        "PF_RELAY_PORT": str(free_port()),
        "PF_SINK_PORT": str(free_port()),
    }
    try:
        subprocess.run(
            [str(POSTFIX_SCRIPT), "start"], check=True, capture_output=True, text=True, timeout=600, env=pf_env
        )
        wait_banner(hold_port)
        time.sleep(2)
        ref.load = os.getloadavg()[0]
        master = int((POSTFIX_BASE / "spool" / "pid" / "master.pid").read_text().split()[0])
        cpu0 = _proc_tree_cpu(master)
        ref.seconds, ref.client_cpu, out = _smtp_source(hold_port, sessions, messages, size)
        ref.server_cpu = _proc_tree_cpu(master) - cpu0
        time.sleep(1)
        ref.sent, ref.ok = messages, _postfix_held()
        ref.errors = messages - ref.ok
        if out:
            print(f"  smtp-source said: {out[:300]}")
    finally:
        subprocess.run([str(POSTFIX_SCRIPT), "stop"], capture_output=True, timeout=120, env=pf_env)
        shutil.rmtree(POSTFIX_BASE, ignore_errors=True)
    return ref


MODES = {"starttls": run_starttls, "plain": run_plain, "rate": run_rate, "webhooks": run_webhooks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--mode", choices=[*MODES, "all"], default="all")
    p.add_argument("--sessions", type=int, default=20, help="concurrent persistent sessions (default 20)")
    p.add_argument("--messages", type=int, default=0, help="messages per run (default: starttls 6000, plain 20000)")
    p.add_argument("--size", type=int, default=10240, help="message size in bytes (default 10240)")
    p.add_argument("--rate", type=float, default=100, help="fixed-rate mode: messages/s (default 100)")
    p.add_argument("--duration", type=float, default=20, help="fixed-rate mode: seconds (default 20)")
    p.add_argument("--repeat", type=int, default=1, help="run each mode this many times (default 1)")
    p.add_argument("--no-postfix", action="store_true", help="plain mode: skip the Postfix reference")
    p.add_argument("--repo", type=Path, default=REPO, help="tree whose app.py is run (default: this one)")
    p.add_argument(
        "--role",
        choices=["smtp", "all"],
        default="smtp",
        help="appliance role: smtp (accept and queue, like Postfix's HOLD port; default) or all",
    )
    args = p.parse_args(argv)

    modes = [m for m in MODES if m != "webhooks"] if args.mode == "all" else [args.mode]
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M} · {machine()} · repo {args.repo}")
    print(f"sessions {args.sessions}, size {args.size} B" + (f", messages {args.messages}" if args.messages else ""))
    rows = []
    for run in range(1, args.repeat + 1):
        args.run = run
        for mode in modes:
            print(f"run {run}: {mode} …", flush=True)
            for res in MODES[mode](args):
                rows.append(res.row(run))
                print("  " + ", ".join(f"{k} {v}" for k, v in rows[-1].items() if k not in ("run", "mode")), flush=True)
    print()
    print_table(rows, COLUMNS)
    ratios = []
    for run in range(1, args.repeat + 1):
        plain = {r["server"]: r for r in rows if r["run"] == run and r["mode"] == "plain smtp-source"}
        if {"appliance", "postfix"} <= plain.keys() and plain["postfix"]["msg/s"] not in ("–", "0"):
            ours, ref = float(plain["appliance"]["msg/s"]), float(plain["postfix"]["msg/s"])
            print(f"run {run}: plain, ours/Postfix = {ours:.0f}/{ref:.0f} msg/s = {ours / ref:.2f}")
            ratios.append(ours / ref)
    hooked = []
    for run in range(1, args.repeat + 1):
        pair = {r["server"]: r for r in rows if r["run"] == run and r["mode"] == "starttls+auth"}
        if {"no webhook", "with webhook"} <= pair.keys():
            with_, without = float(pair["with webhook"]["msg/s"]), float(pair["no webhook"]["msg/s"])
            print(f"run {run}: webhooks, with/without = {with_:.0f}/{without:.0f} msg/s = {with_ / without:.2f}")
            hooked.append(with_ / without)
    if len(hooked) > 1:
        print(f"webhooks: median ratio with/without over {len(hooked)} runs {statistics.median(hooked):.2f}")
    if len(ratios) > 1:
        print(
            f"plain: median ratio ours/Postfix over {len(ratios)} runs {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
