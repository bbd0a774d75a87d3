"""What adding recipients to a list costs intake (docs/campaigns-and-lists.md): the transaction that
stores a group of accepted messages (`intake.store_many`, as the SMTP writer runs it) with the
recipients joining the account's "Transactional Campaign Recipients" and without, in turn.

In one process on a temporary SQLite database (the migrated schema): BATCHES transactions of SIZE
messages of one recipient each, made by `intake.prepare` as SMTP's are; every other transaction stores
them without a list to join. Two kinds of recipient: new addresses every time (each one a new member:
the worst case), and addresses mailed before (already members: a shop's returning customers).

    python bench/member_adds.py [--batches N] [--size N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import print_with_without  # noqa: E402

from appliance import accounts, create_app, db, intake, lists  # noqa: E402

ORDER = b"From: orders@shop.test\r\nTo: {rcpt}\r\nSubject: Your order\r\n\r\n" + b"Thank you for your order.\r\n" * 40


def items(account_id: int, members: str | None, rcpts: list[str]) -> list[intake.Incoming]:
    made = []
    for rcpt in rcpts:
        item = intake.prepare(
            ORDER.replace(b"{rcpt}", rcpt.encode()),
            mail_from="orders@shop.test",
            rcpts=[rcpt],
            hostname="bench.test",
            client_ip="127.0.0.1",
            client_helo="bench.test",
            tls="TLSv1.3",
            username="1.shop.smtp",
            account_id=account_id,
            account_priority=3,
        )
        item.members_list = members
        made.append(item)
    return made


def timed(batch: list[intake.Incoming]) -> float:
    start = time.perf_counter()
    with db.atomic_write():
        intake.store_many(batch)
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="messages per transaction (intake's group size)")
    args = parser.parse_args()
    times: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATA_DIR": tmp, "HOSTNAME": "bench.test"})
        with app.app_context():
            account, _ = accounts.create("Shop")
            members = lists.default_for(account.id)
            returning = [f"customer{n}@example.test" for n in range(args.size)]
            with db.atomic_write():
                intake.store_many(items(account.id, members, returning))  # they are members from now on
            for b in range(args.batches):
                joining = b % 2 == 0
                fresh = [f"new{b}-{n}@example.test" for n in range(args.size)]
                for kind, rcpts in (("new recipients", fresh), ("returning recipients", returning)):
                    batch = items(account.id, members if joining else None, rcpts)
                    times.setdefault((kind, joining), []).append(timed(batch))
    kinds = ["new recipients", "returning recipients"]
    print_with_without(f"transaction of {args.size}", times, kinds, args.size, "message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
