"""Shared helpers for the benchmarks: a real appliance process, free ports, /proc figures, tables.

Benchmarks print figures; they are not tests. Everything here stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Run as `python bench/NAME.py`, the tree's root is not on sys.path yet: tests.support lives there.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import ROOT  # noqa: E402
from tests.support.ports import free_port  # noqa: E402 — the same port picker as the tests (re-exported)

REPO = ROOT  # the tree whose app.py the benchmarks run (their --repo default)

HOSTNAME = "relay.test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Runs the `appliance` console script of the checked-out tree (not whichever one is installed).
_CLI = "import sys; from appliance.cli import main; sys.exit(main(sys.argv[1:]))"


def cpu_seconds(pid: int) -> float:
    """Return utime + stime of ``pid`` (all its threads) in seconds, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def rss_mb(pid: int) -> float:
    """Return the resident set size of ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def own_cpu_seconds() -> float:
    """Return this process's user + system CPU time (the load generator's cost)."""
    t = os.times()
    return t.user + t.system


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def banner(port: int) -> bool:
    """Whether an SMTP server on 127.0.0.1:port greets with 220 (the session is QUIT at once)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            ok = s.recv(512).startswith(b"220")
            s.sendall(b"QUIT\r\n")
            return ok
    except OSError:
        return False


def wait_banner(port: int, timeout: float = 30) -> None:
    """Wait until an SMTP server greets on 127.0.0.1:port; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if banner(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


def machine() -> str:
    """Describe the machine and its current load, for the record."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPU {model or platform.machine()}, Python {platform.python_version()}, load {load}"


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Print ``rows`` as a compact Markdown table (paste-able into docs/benchmarks.md)."""
    shown = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in shown)) for i, c in enumerate(columns)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in shown:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")


def print_with_without(
    title: str, times: dict[tuple[str, bool], list[float]], kinds: list[str], size: int, per: str
) -> None:
    """Print the median ms of each kind of transaction without and with the thing measured (``times``
    keyed by (kind, with it)), the difference, and the difference per ``per`` (``size`` of them)."""
    print(f"{title:<26}{'without ms':>12}{'with ms':>10}{'extra ms':>10}{'extra per ' + per + ' ms':>22}")
    for kind in kinds:
        without, with_ = (statistics.median(times[kind, w]) for w in (False, True))
        print(f"{kind:<26}{without:>12.2f}{with_:>10.2f}{with_ - without:>10.2f}{(with_ - without) / size:>22.3f}")


class CountingSink:
    """aiosmtpd handler of a remote MX that accepts everything and counts the recipients it is given."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += len(envelope.rcpt_tos)
        return "250 2.0.0 Ok"


@dataclass
class Appliance:
    """`python app.py` as a separate process in a throwaway DATA_DIR, on free loopback ports.

    Listeners: ``submission_port`` (STARTTLS) and ``mx_port`` (STARTTLS, MX). Use as a context
    manager; on exit the process is stopped (SIGTERM, then SIGKILL) and the directory removed.
    """

    repo: Path = ROOT
    extra_env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()  # extra command-line arguments, e.g. ("--role", "smtp")
    extra_listen: str = ""  # more SMTP_LISTEN entries, e.g. "127.0.0.1:41025-45000/starttls"
    keep: bool = False
    submission_port: int = 0
    mx_port: int = 0
    web_port: int = 0
    data_dir: Path | None = None
    proc: subprocess.Popen | None = None
    _tmp: str | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def ca(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "tls" / "ca.pem"

    @property
    def log_path(self) -> Path:
        assert self._tmp is not None
        return Path(self._tmp) / "appliance.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "APPLIANCE_DATA_DIR": str(self.data_dir),
                "APPLIANCE_HOSTNAME": HOSTNAME,
                "APPLIANCE_SMTP_LISTEN": (
                    f"127.0.0.1:{self.submission_port}/starttls,127.0.0.1:{self.mx_port}/starttls/mx"
                    + (f",{self.extra_listen}" if self.extra_listen else "")
                ),
                "APPLIANCE_WEB_LISTEN": f"127.0.0.1:{self.web_port}",
                "PYTHONPATH": str(self.repo) + os.pathsep + env.get("PYTHONPATH", ""),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60) -> Appliance:
        """Start the process and wait for both SMTP banners; on any failure, clean up and raise."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> Appliance:
        self._tmp = tempfile.mkdtemp(prefix="bench-appliance-")
        self.data_dir = Path(self._tmp) / "data"
        self.submission_port, self.mx_port, self.web_port = free_port(), free_port(), free_port()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(self.repo / "app.py"), *self.args],
                cwd=self.repo,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"appliance exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ca.exists() and banner(self.submission_port) and banner(self.mx_port):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"appliance did not listen within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cli(self, *args: str) -> str:
        """Run `appliance ARGS` against this DATA_DIR; return stdout (raise on a non-zero exit)."""
        result = subprocess.run(
            [sys.executable, "-c", _CLI, *args],
            cwd=self.repo,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"appliance {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
        return result.stdout

    def create_account(self, name: str, *extra: str) -> dict:
        """Create an SMTP account with the CLI; return its JSON (id, username, password)."""
        return json.loads(self.cli("accounts", "create", name, "--json", *extra))

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts only the appliance's CA (hostname relay.test checked)."""
        return ssl.create_default_context(cafile=str(self.ca))

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mb(self.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self._tmp and not self.keep:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Appliance:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
