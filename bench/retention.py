"""Retention benchmark: does a purge hold up intake? (a benchmark, not a test)

Starts the appliance as a real process (`python app.py`, SQLite in a temporary DATA_DIR), fills
its database with N messages received 100 days ago (each with its body, one delivered delivery,
one attempt and two events: what RETENTION_DAYS purges), then sends mail over real SMTP at a fixed
rate and measures each message's intake time (MAIL FROM to the 250 after DATA, one persistent
session per sending thread) twice:

  without   RATE messages/s for DURATION seconds, nothing else running;
  during    the same load while the purge runs: the hourly Huey task, enqueued from here into the
            appliance's own queue, runs it on a worker thread of the appliance (batches of 500 on the
            process's writer), then gives the space back (PRAGMA incremental_vacuum in steps).
            With ``--via cli`` the purge is `appliance retention run` in a second process instead.

The client takes the user's path by default (``--path user``): like a WordPress site, a new
connection per message, STARTTLS verifying the appliance's certificate, AUTH with an SMTP account,
From: a DKIM-verified domain (its records in a loopback DNS server); the time is connect to the
250 after DATA. ``--path ip-only`` is the cheapest path into intake instead (an IP-only account,
plain SMTP without TLS or AUTH, one persistent session per thread, MAIL FROM to 250), which shows
the database rather than the handshakes: it measures something else. Deliveries go to a closed
loopback port (SMARTHOST) and are deferred; that load is the same in both phases.

    python bench/retention.py                  # 200000 old messages, the user's path
    python bench/retention.py 50000 --rate 50 --via cli --path ip-only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, Appliance, free_port, machine, percentile  # noqa: E402 — bench/ is not a package
from userpath import dns_server, sign_as_src_test  # noqa: E402

sys.path.insert(0, str(REPO))
from appliance import config, queue  # noqa: E402

SENDER, RECIPIENT = "bench@src.test", "someone@dst.test"
BATCH_ROWS = 20_000


def fill(db_path: Path, count: int, body_size: int) -> None:
    """Insert ``count`` messages received 100 days ago, each delivered, with body, attempt and events."""
    con = sqlite3.connect(db_path, timeout=60)
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=100)
    body = (b"From: " + SENDER.encode() + b"\r\nSubject: old\r\n\r\n" + b"x" * 98 + b"\r\n") * max(1, body_size // 140)
    first_id = con.execute('SELECT coalesce(max("id"), 0) + 1 FROM "delivery"').fetchone()[0]
    for start in range(0, count, BATCH_ROWS):
        rows = range(start, min(count, start + BATCH_ROWS))
        at = [(old + dt.timedelta(seconds=n)).isoformat(" ") for n in rows]
        ids = [f"00OLD{n:021d}" for n in rows]
        con.executemany(
            'INSERT INTO "message" ("id", "direction", "status", "mail_from", "rcpt_count", "from_header", "subject", '
            '"message_id_header", "size", "priority", "client_ip", "client_helo", "tls", "received_at", "stream", '
            "\"track_opens\", \"track_clicks\") VALUES (?, 'outbound', 'delivered', ?, 1, ?, 'old', '', ?, 3, "
            "'127.0.0.1', 'bench', '', ?, 'transactional', 0, 0)",
            [(i, SENDER, SENDER, len(body), a) for i, a in zip(ids, at, strict=True)],
        )
        con.executemany('INSERT INTO "message_body" ("message_id", "data") VALUES (?, ?)', [(i, body) for i in ids])
        con.executemany(
            'INSERT INTO "delivery" ("id", "message_id", "rcpt", "domain", "status", "priority", "attempts", '
            '"next_attempt_at", "last_code", "last_reply", "updated_at", "delivered_at") '
            "VALUES (?, ?, ?, 'dst.test', 'delivered', 3, 1, ?, 250, '250 ok', ?, ?)",
            [(first_id + n, i, RECIPIENT, a, a, a) for n, i, a in zip(rows, ids, at, strict=True)],
        )
        con.executemany(
            'INSERT INTO "attempt" ("delivery_id", "started_at", "duration_ms", "mx_host", "mx_ip", "tls", "code", '
            "\"enhanced_code\", \"text\", \"outcome\") VALUES (?, ?, 40, 'mx.dst.test', '192.0.2.1', '', 250, "
            "'2.0.0', 'ok', 'delivered')",
            [(first_id + n, a) for n, a in zip(rows, at, strict=True)],
        )
        con.executemany(
            'INSERT INTO "event" ("message_id", "recipient", "type", "at", "details") VALUES (?, ?, ?, ?, \'{}\')',
            [
                (i, rcpt, kind, a)
                for i, a in zip(ids, at, strict=True)
                for rcpt, kind in (("", "accepted"), (RECIPIENT, "delivered"))
            ],
        )
        con.commit()
    con.close()


class Load:
    """RATE messages/s spread over SESSIONS threads: with ``login`` (the user's path) each message on
    a new connection with STARTTLS and AUTH; without, each thread on one persistent plain session."""

    def __init__(self, port: int, rate: float, sessions: int, context=None, login: tuple[str, str] | None = None):
        self.port, self.rate, self.sessions = port, rate, sessions
        self.context, self.login = context, login
        self.samples: list[tuple[float, float]] = []  # (start on the monotonic clock, seconds to 250)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.sessions):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, index: int) -> None:
        interval = self.sessions / self.rate
        message = f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: fresh\r\n\r\nHello.\r\n".encode()
        client = None
        if self.login is None:
            client = smtplib.SMTP("127.0.0.1", self.port, local_hostname="bench.test", timeout=60)
            client.ehlo()
        due = time.monotonic() + index * interval / self.sessions
        while not self._stop.is_set():
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            started = time.monotonic()
            try:
                if client is None:  # the user's path: connect, STARTTLS, AUTH, one message, QUIT
                    with smtplib.SMTP("127.0.0.1", self.port, local_hostname="bench.test", timeout=60) as one:
                        one.starttls(context=self.context)
                        one.login(*self.login)
                        one.sendmail(SENDER, [RECIPIENT], message)
                else:
                    client.sendmail(SENDER, [RECIPIENT], message)
            except (OSError, smtplib.SMTPException) as exc:
                with self._lock:
                    self.errors.append(str(exc))
            else:
                with self._lock:
                    self.samples.append((started, time.monotonic() - started))
            due += interval
        if client is not None:
            client.quit()

    def between(self, start: float, end: float) -> list[float]:
        with self._lock:
            return [seconds for at, seconds in self.samples if start <= at < end]


def figures(name: str, latencies: list[float]) -> dict:
    ms = [s * 1000 for s in latencies]
    row = {
        "phase": name,
        "messages": len(ms),
        "p50 ms": f"{percentile(ms, 50):.1f}",
        "p99 ms": f"{percentile(ms, 99):.1f}",
        "max ms": f"{max(ms, default=float('nan')):.1f}",
    }
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=200_000, help="old messages to fill in")
    parser.add_argument("--body-size", type=int, default=4096, help="bytes per old message's body")
    parser.add_argument("--rate", type=float, default=40, help="messages per second during both phases")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30, help="seconds of the phase without a purge")
    parser.add_argument("--via", choices=("task", "cli"), default="task")
    parser.add_argument("--path", choices=("user", "ip-only"), default="user", help="how the clients send")
    args = parser.parse_args()
    print(machine())
    dns = dns_server()
    app = Appliance(
        extra_env={"APPLIANCE_SMARTHOST": f"smtp://127.0.0.1:{free_port()}", "APPLIANCE_DNS_SERVERS": dns.spec}
    )
    with app:
        login = None
        if args.path == "user":
            created = app.create_account("bench")
            login = (created["username"], created["password"])
            sign_as_src_test(app, dns)  # From: src.test is DKIM-signed
        else:
            app.create_account("bench", "--ip", "127.0.0.0/8", "--ip-only")
            app.cli("senders", "add", SENDER, "--verified")
        db_path = app.data_dir / "appliance.db"
        started = time.monotonic()
        fill(db_path, args.count, args.body_size)
        size_full = db_path.stat().st_size
        print(
            f"filled {args.count:,} old messages ({args.body_size} B bodies) in {time.monotonic() - started:.0f} s; "
            f"database {size_full / 1e6:.0f} MB"
        )

        load = Load(app.submission_port, args.rate, args.sessions, app.client_context(), login)
        print(
            f"path: {args.path}" + (" (STARTTLS, AUTH, DKIM-verified From:, a connection per message)" if login else "")
        )
        load.start()
        time.sleep(2)  # sessions open, the writer warm
        quiet_start = time.monotonic()
        time.sleep(args.duration)
        purge_start = time.monotonic()
        if args.via == "task":
            settings = config.load({"DATA_DIR": str(app.data_dir)}, environ={})
            queue.init(settings).retention_task()  # enqueued into the appliance's Huey; a worker runs it
            report = _wait_for_log(app, "messages purged in")
        else:
            report = json.loads(
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        "import sys; from appliance.cli import main; sys.exit(main(sys.argv[1:]))",
                        "retention",
                        "run",
                        "--json",
                    ],
                    cwd=REPO,
                    env=app.env(),
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        purge_end = time.monotonic()
        load.stop()

        rows = [
            figures("without a purge", load.between(quiet_start, purge_start)),
            figures(f"during the purge ({args.via})", load.between(purge_start, purge_end)),
        ]
        time.sleep(3)  # the checkpointer's next rounds copy the WAL back: the file shrinks then
        size_after = db_path.stat().st_size
        print(f"purge: {purge_end - purge_start:.1f} s; {report}")
        print(f"database file {size_full / 1e6:.0f} MB before, {size_after / 1e6:.0f} MB after")
        print("| phase | messages | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['phase']} | {row['messages']} | {row['p50 ms']} | {row['p99 ms']} | {row['max ms']} |")
        quiet, busy = float(rows[0]["p99 ms"]), float(rows[1]["p99 ms"])
        print(f"p99 ratio during/without: {busy / quiet:.2f}")
        if load.errors:
            print(f"{len(load.errors)} errors, first: {load.errors[0]}")
        left = sqlite3.connect(db_path).execute("SELECT count(*) FROM message WHERE id LIKE '00OLD%'").fetchone()[0]
        print(f"old messages left: {left}")
    dns.stop()
    return 0


def _wait_for_log(app: Appliance, marker: str, timeout: float = 3600) -> str:
    """Wait for the appliance's log line that holds ``marker`` (the purge's summary); return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in app.log_path.read_text(errors="replace").splitlines():
            if marker in line:
                return line
        time.sleep(0.2)
    raise RuntimeError(f"no {marker!r} in the log within {timeout} s:\n{app.log_tail()}")


if __name__ == "__main__":
    sys.exit(main())
