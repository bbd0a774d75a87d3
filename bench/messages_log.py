"""Message log page time at 1,000,000 messages: p95 per search, target under 100 ms.

Builds a temporary SQLite database with the real (migrated) schema, bulk-inserts synthetic
messages and deliveries, then times what the message log view runs for one page: the keyset
search with the recipients of the page (appliance/message_log.py).
Usage: python bench/messages_log.py [--rows N] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance import create_app, message_log  # noqa: E402
from appliance.web.messages import PAGE_SIZE  # noqa: E402

TARGET_MS = 100
ACCOUNTS = 20
STATUSES = ["delivered"] * 90 + ["deferred"] * 4 + ["bounced"] * 3 + ["queued"] * 2 + ["failed"]
DOMAINS = [f"customer{i}.example" for i in range(2000)] + ["gmail.com"] * 500 + ["outlook.com"] * 300
WORDS = ["order", "invoice", "receipt", "shipped", "welcome", "password", "reset", "newsletter", "weekly", "offer"]


def stream(account: int) -> str:
    """Every fourth account sends broadcast mail."""
    return "broadcast" if account % 4 == 0 else "transactional"


def fill(path: Path, rows: int, seed: int = 7, days: int = 90) -> None:
    """Insert ``rows`` messages (one delivery each) spread over the ``days`` before 2025-06-01."""
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    now = dt.datetime(2025, 6, 1)
    con.executemany(
        "INSERT INTO smtp_account (id, name, username, password_hash, active, priority, note, "
        "ip_rules, ip_only, authorized_domains, authorized_senders, sender_mode, created_at, "
        "credential_version, stream) VALUES (?, ?, ?, '', 1, 3, '', '', 0, '', '', 'block', ?, 1, ?)",
        [(i, f"Shop {i}", f"{i}.shop-{i}.smtp", now, stream(i)) for i in range(1, ACCOUNTS + 1)],
    )
    step = dt.timedelta(days=days) / rows
    batch_m, batch_d = [], []
    for n in range(rows):
        received = now - step * (rows - n)
        message_id = f"01J{n:023d}"
        status = rng.choice(STATUSES)
        rcpt = f"user{rng.randrange(200_000)}@{rng.choice(DOMAINS)}"
        sender = f"noreply@shop{rng.randrange(1, ACCOUNTS + 1)}.test"
        subject = f"Your {rng.choice(WORDS)} #{n}"
        account = rng.randrange(1, ACCOUNTS + 1)
        batch_m.append(
            (
                message_id,
                account,
                "outbound",
                status,
                sender,
                1,
                sender,
                subject,
                f"<{message_id}@shop.test>",
                2048,
                3,
                "192.0.2.1",
                "web",
                "TLSv1.3",
                received.isoformat(" "),
                stream(account),
            )
        )
        batch_d.append(
            (message_id, rcpt, rcpt.split("@")[1], status, 3, 1, received.isoformat(" "), "", received.isoformat(" "))
        )
        if len(batch_m) == 50_000 or n == rows - 1:
            con.executemany(
                "INSERT INTO message (id, account_id, direction, status, mail_from, rcpt_count, "
                "from_header, subject, message_id_header, size, priority, client_ip, client_helo, "
                "tls, received_at, stream, track_opens, track_clicks) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)",
                batch_m,
            )
            con.executemany(
                "INSERT INTO delivery (message_id, rcpt, domain, status, priority, attempts, "
                "next_attempt_at, last_reply, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch_d,
            )
            con.commit()
            batch_m, batch_d = [], []
    con.execute("ANALYZE")
    con.commit()
    con.close()


def page_ms(filters: dict, cursor: str | None = None) -> tuple[float, str | None]:
    start = time.perf_counter()
    page = message_log.search(filters, cursor, PAGE_SIZE)
    return (time.perf_counter() - start) * 1000, page.next_cursor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="timed pages per search")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATA_DIR": tmp, "HOSTNAME": "bench.test"})
        started = time.perf_counter()
        fill(Path(tmp) / "appliance.db", args.rows)
        print(f"inserted {args.rows:,} messages and deliveries in {time.perf_counter() - started:.0f} s")
        with app.app_context():
            _, middle = page_ms({})
            deep = f"{dt.datetime(2025, 4, 16).isoformat()}~01J{0:023d}"
            searches = {
                "newest page": ({}, None),
                "page 2 (keyset)": ({}, middle),
                "deep page (45 days back)": ({}, deep),
                "status bounced": ({"status": "bounced"}, None),
                "status failed, deep": ({"status": "failed"}, deep),
                "account 7": ({"account": "7"}, None),
                "recipient address": ({"rcpt": "user4242@gmail.com"}, None),
                "recipient domain (rare)": ({"rcpt": "customer1234.example"}, None),
                "sender address": ({"sender": "noreply@shop3.test"}, None),
                "subject contains": ({"subject": "invoice"}, None),
                "message id header": ({"msgid": f"01J{args.rows // 2:023d}@shop.test"}, None),
                "date range (one day)": ({"since": "2025-04-01", "until": "2025-04-01"}, None),
                "account + status + range": ({"account": "3", "status": "deferred", "since": "2025-05-01"}, None),
            }
            every = []
            print(f"{'search':<28}{'p50 ms':>9}{'p95 ms':>9}")
            for name, (filters, cursor) in searches.items():
                times = sorted(page_ms(filters, cursor)[0] for _ in range(args.runs))
                every += times
                p95 = times[max(0, int(len(times) * 0.95) - 1)]
                print(f"{name:<28}{statistics.median(times):>9.1f}{p95:>9.1f}")
        every.sort()
        p95 = every[int(len(every) * 0.95) - 1]
        verdict = "OK" if p95 < TARGET_MS else "OVER TARGET"
        print(f"p95 page time over all searches: {p95:.1f} ms (target < {TARGET_MS} ms): {verdict}")
        return 0 if p95 < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
