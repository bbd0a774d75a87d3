"""A list send of many members (docs/campaigns-and-lists.md#list-addresses): the time from the 250 of
the one message to the list address until every member has its delivery (the message leaves the
status `expanding`), and another account's accept latency meanwhile (target: p99 < 100 ms), against
the same latency before the send.

The appliance runs as a real process (`python app.py`, every role); its deliveries go to a closed
loopback port (SMARTHOST), so they are tried and deferred, as a remote that is down would have them:
the workers expand the list while they are also busy with its first delivery attempts. With
``--remote sink`` they go to an aiosmtpd sink in this process that takes them all. Nothing leaves
127.0.0.1.

    python bench/list_send.py --members 100000 --rate 20 [--remote closed|sink] [--batch N]
"""

from __future__ import annotations

import argparse
import json
import smtplib
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller  # noqa: E402

from bench._common import HOSTNAME, Appliance, CountingSink, free_port, machine, percentile, print_table  # noqa: E402

SENDER = "news@shop.test"


def _session(app: Appliance, account: dict) -> smtplib.SMTP:
    """A signed-in STARTTLS session on 127.0.0.1 (the certificate names HOSTNAME)."""
    client = smtplib.SMTP("127.0.0.1", app.submission_port, local_hostname="bench.test", timeout=60)
    client._host = HOSTNAME  # the name STARTTLS checks the certificate against
    client.starttls(context=app.client_context())
    client.login(account["username"], account["password"])
    return client


def _status(app: Appliance, message_id: str) -> str:
    assert app.data_dir is not None
    con = sqlite3.connect(f"file:{app.data_dir / 'appliance.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute('select "status" from "message" where "id" = ?', (message_id,)).fetchone()
        return row[0] if row else ""
    finally:
        con.close()


class Sender(threading.Thread):
    """Another account's mail at a fixed rate over one STARTTLS session: each message's accept latency."""

    def __init__(self, app: Appliance, account: dict, rate: float):
        super().__init__(daemon=True)
        self.app, self.account, self.interval = app, account, 1 / rate
        self.samples: list[tuple[float, float]] = []  # (start time, seconds to the 250)
        self.stopping = threading.Event()

    def run(self) -> None:
        client = _session(self.app, self.account)
        body = ("x" * 70 + "\r\n") * 30  # 2 KB in lines of 72 octets
        data = f"From: {SENDER}\r\nTo: alice@example.test\r\nSubject: order\r\n\r\n{body}".encode()
        next_at = time.monotonic()
        while not self.stopping.is_set():
            started = time.monotonic()
            client.sendmail(SENDER, ["alice@example.test"], data)
            self.samples.append((started, time.monotonic() - started))
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        client.quit()

    def latencies(self, since: float, until: float) -> list[float]:
        return [s for at, s in self.samples if since <= at < until]


def run(args) -> dict:
    sink = None
    if args.remote == "sink":  # a remote that takes every delivery, in this process
        sink = Controller(CountingSink(), hostname="127.0.0.1", port=free_port())
        sink.start()
    try:
        return _run(args, sink.port if sink else free_port())
    finally:
        if sink:
            sink.stop()


def _run(args, remote_port: int) -> dict:
    env = {
        "APPLIANCE_SMARTHOST": f"smtp://127.0.0.1:{remote_port}",
        "APPLIANCE_DNS_SERVERS": f"127.0.0.1:{free_port()}",
        "APPLIANCE_LIST_BATCH": str(args.batch),
    }
    with Appliance(extra_env=env) as app:
        news = app.create_account("news")
        shop = app.create_account("shop")
        app.cli("senders", "add", SENDER, "--verified")
        made = json.loads(app.cli("lists", "create", "Everyone", "--account", news["username"], "--json"))
        assert app.data_dir is not None
        members = app.data_dir.parent / "members.csv"
        members.write_text("email\n" + "".join(f"member{i:06}@example.test\n" for i in range(args.members)))
        t = time.monotonic()
        app.cli("lists", "import", made["id"], str(members))
        import_s = time.monotonic() - t

        other = Sender(app, shop, args.rate)
        other.start()
        time.sleep(args.baseline)
        client = _session(app, news)
        body = f"From: {SENDER}\r\nTo: <{made['id']}@lists.{HOSTNAME}>\r\nSubject: news\r\n\r\nhello\r\n"
        client.mail(SENDER)
        client.rcpt(f"{made['id']}@lists.{HOSTNAME}")
        sent_at = time.monotonic()
        code, reply = client.data(body.encode())
        accepted_s = time.monotonic() - sent_at
        client.quit()
        assert code == 250, reply
        message_id = reply.decode().rsplit(" ", 1)[-1]
        while _status(app, message_id) == "expanding":
            time.sleep(0.2)
        queued_at = time.monotonic()
        other.stopping.set()
        other.join(timeout=30)
        before = other.latencies(0, sent_at)
        during = other.latencies(sent_at, queued_at)
        return {
            "remote": args.remote,
            "members": args.members,
            "import s": round(import_s, 1),
            "250 of the list send ms": round(accepted_s * 1000, 1),
            "fully queued s": round(queued_at - sent_at, 1),
            "members/s": round(args.members / (queued_at - sent_at)),
            "other p50 before ms": round(percentile(before, 50) * 1000, 1),
            "other p99 before ms": round(percentile(before, 99) * 1000, 1),
            "other p50 during ms": round(percentile(during, 50) * 1000, 1),
            "other p99 during ms": round(percentile(during, 99) * 1000, 1),
            "other msgs during": len(during),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=20, help="the other account's messages per second (default 20)")
    p.add_argument(
        "--remote",
        choices=("closed", "sink"),
        default="closed",
        help="closed: the deliveries' remote refuses connections (each tried and deferred); "
        "sink: an aiosmtpd sink takes them all",
    )
    p.add_argument("--batch", type=int, default=200, help="LIST_BATCH (default 200, the setting's)")
    p.add_argument("--baseline", type=float, default=5, help="seconds of the other account's mail before the send")
    args = p.parse_args(argv)
    print(machine())
    row = run(args)
    print_table([row], list(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
