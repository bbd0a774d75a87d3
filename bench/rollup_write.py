"""What the analytics' roll-up adds to a write: `events.record` of intake's and delivery's batches
timed with the EventCount upsert (appliance/events.py) and without it, in the same transactions.

A temporary SQLite database (the migrated schema) gets BATCHES batches of SIZE messages, one
recipient each, the way intake stores them (messages, deliveries, then their ACCEPTED events in
one transaction), then one transaction per batch of their DELIVERED events, as the delivery
recorder writes them; every other batch runs with the roll-up switched off. Usage:

    python bench/rollup_write.py [--batches N] [--size N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import print_with_without  # noqa: E402

from appliance import create_app, db, events  # noqa: E402
from appliance.models import QUEUED, Delivery, Message  # noqa: E402

DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "customer1.example", "customer2.example"]


def store(batch: int, size: int, at: dt.datetime) -> list[tuple[str, str]]:
    ids = [(f"{batch:08d}{n:018d}", f"user{n}@{DOMAINS[n % len(DOMAINS)]}") for n in range(size)]
    db.insert_rows(
        Message,
        [
            {
                "id": mid,
                "account": None,
                "direction": "outbound",
                "status": QUEUED,
                "received_at": at,
                "stream": "transactional",
                "rcpt_count": 1,
            }
            for mid, _ in ids
        ],
    )
    db.insert_rows(
        Delivery,
        [
            {"message": mid, "rcpt": rcpt, "domain": rcpt.rpartition("@")[2], "status": QUEUED, "updated_at": at}
            for mid, rcpt in ids
        ],
    )
    return ids


def timed(job) -> float:
    start = time.perf_counter()
    with db.atomic_write():
        job()
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="messages per transaction (intake's group size)")
    args = parser.parse_args()
    roll_up = events._roll_up
    times: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATA_DIR": tmp, "HOSTNAME": "bench.test"})
        start = dt.datetime(2025, 6, 1)
        with app.app_context():
            for b in range(args.batches):
                rolled = b % 2 == 0
                events._roll_up = roll_up if rolled else (lambda found: None)
                at = start + dt.timedelta(minutes=b)
                stored: list = []

                def intake(b=b, at=at, stored=stored) -> None:
                    stored.extend(store(b, args.size, at))
                    events.record([events.occurred(mid, events.ACCEPTED, "", at) for mid, _ in stored])

                def delivered(at=at, stored=stored) -> None:
                    events.record([events.occurred(mid, events.DELIVERED, rcpt, at) for mid, rcpt in stored])

                times.setdefault(("intake", rolled), []).append(timed(intake))
                times.setdefault(("delivery", rolled), []).append(timed(delivered))
        events._roll_up = roll_up
    print_with_without(f"transaction of {args.size}", times, ["intake", "delivery"], args.size, "event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
