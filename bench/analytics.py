"""Analytics at 1,000,000 messages: how long `analytics.report` takes (what the Analytics page, its CSV
export and `appliance stats --json` run), p50 and p95 per scope.

Builds a temporary SQLite database with the real (migrated) schema: ROWS messages with one delivery
each, all within the 30 days of the page's default range (bench/messages_log.fill), and their events:
delivered or bounced as the delivery's status says, an open for a quarter of the delivered (one in
ten of those a machine's), a click for one in twenty-five (one of 20 links). Then times the report
for the default range, one day, one account and one stream. The fill counts the hourly roll-up the
way migration 0014 backfills it (events.rebuild_rollups); with --before the former scan of the
events (tests/support/analytics_reference.py) is timed on the same data too. Usage:

    python bench/analytics.py [--rows N] [--runs N] [--before]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import percentile  # noqa: E402
from messages_log import fill  # noqa: E402

from appliance import analytics, create_app, db, events  # noqa: E402
from tests.support import analytics_reference  # noqa: E402

TARGET_MS = 100  # the message log page's target (bench/messages_log.py); the issue names none
END = dt.datetime(2025, 6, 1)  # messages_log.fill's "now"
LINKS = [f"https://shop.test/item/{i}" for i in range(20)]


def add_events(path: Path, seed: int = 11) -> int:
    """Insert the events of every delivery; return how many."""
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    rows = con.execute(
        "SELECT d.message_id, d.rcpt, d.status, m.received_at FROM delivery d JOIN message m ON m.id = d.message_id"
    ).fetchall()
    batch, count = [], 0
    for n, (message_id, rcpt, status, received) in enumerate(rows):
        at = dt.datetime.fromisoformat(received) + dt.timedelta(seconds=2)
        if status in ("delivered", "bounced"):
            batch.append((message_id, rcpt, status, at, "{}"))
        if status == "delivered" and rng.random() < 0.25:
            machine = rng.random() < 0.1
            batch.append(
                (
                    message_id,
                    rcpt,
                    "opened",
                    at + dt.timedelta(minutes=rng.randrange(600)),
                    json.dumps({"ip": "192.0.2.0/24", "agent": "Mozilla/5.0", "machine": machine}),
                )
            )
            if rng.random() < 0.16:
                batch.append(
                    (
                        message_id,
                        rcpt,
                        "clicked",
                        at + dt.timedelta(minutes=rng.randrange(600, 900)),
                        json.dumps(
                            {"url": rng.choice(LINKS), "ip": "192.0.2.0/24", "agent": "Mozilla/5.0", "machine": False}
                        ),
                    )
                )
        if len(batch) >= 50_000 or n == len(rows) - 1:
            con.executemany(
                "INSERT INTO event (message_id, recipient, type, at, details) VALUES (?, ?, ?, ?, ?)",
                [(m, r, t, a.isoformat(" "), d) for m, r, t, a, d in batch],
            )
            count += len(batch)
            batch = []
    con.execute("ANALYZE")
    con.commit()
    con.close()
    return count


def report_ms(report, since: dt.datetime, **scope) -> float:
    start = time.perf_counter()
    report(since, END, **scope)
    return (time.perf_counter() - start) * 1000


def top_links_ms(since: dt.datetime) -> float:
    """The part of the report that still reads events: the range's clicks, for the top links."""
    start = time.perf_counter()
    analytics._top_links(since, END, {"account_id": None, "stream": None})
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="timed reports per scope")
    parser.add_argument("--before", action="store_true", help="also time the former scan (slow: once per scope)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATA_DIR": tmp, "HOSTNAME": "bench.test"})
        started = time.perf_counter()
        fill(Path(tmp) / "appliance.db", args.rows, days=30)
        added = add_events(Path(tmp) / "appliance.db")
        print(
            f"inserted {args.rows:,} messages and deliveries, {added:,} events, in "
            f"{time.perf_counter() - started:.0f} s"
        )
        started = time.perf_counter()
        with app.app_context(), db.atomic_write():
            rows = events.rebuild_rollups(analytics.provider_names())
        print(
            f"counted {rows:,} roll-up rows (events.rebuild_rollups, migration 0014's backfill) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        scopes = {
            "the default range (30 days)": (END - dt.timedelta(days=30), {}),
            "one day": (END - dt.timedelta(days=1), {}),
            "one account, 30 days": (END - dt.timedelta(days=30), {"account_id": 7}),
            "broadcast stream, 30 days": (END - dt.timedelta(days=30), {"stream": "broadcast"}),
        }
        every = []
        with app.app_context():
            head = f"{'scope':<30}{'p50 ms':>10}{'p95 ms':>10}"
            print(head + (f"{'scan ms':>10}{'scan/rollup':>12}" if args.before else ""))
            for name, (since, scope) in scopes.items():
                times = [report_ms(analytics.report, since, **scope) for _ in range(args.runs)]
                every += times
                line = f"{name:<30}{statistics.median(times):>10.1f}{percentile(times, 95):>10.1f}"
                if args.before:
                    scan = report_ms(analytics_reference.report, since, **scope)
                    line += f"{scan:>10.0f}{scan / statistics.median(times):>12.0f}"
                print(line)
            links = [top_links_ms(END - dt.timedelta(days=30)) for _ in range(args.runs)]
            print(f"of which the top links (30 days' clicks): p50 {statistics.median(links):.1f} ms")
        p95 = percentile(every, 95)
        verdict = "OK" if p95 < TARGET_MS else "OVER TARGET"
        print(f"p95 over all scopes: {p95:.1f} ms (target < {TARGET_MS} ms): {verdict}")
        return 0 if p95 < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
