"""Port ranges: what a process listening on a range of ports costs, against the same process
listening on its two ports only.

Starts the appliance (`python app.py`, bench/_common.Appliance) twice in this process's run: the
reference with its submission and MX ports, then the same with a range of RANGE ports added to
SMTP_LISTEN (default 3976, the size of MailUp's 1025-5000, on free loopback ports). For
each it prints the time to the first 220, RSS and open file descriptors once idle, and the ratios
against the reference. Then the start of a WordPress-like session on the range's first, middle and
last port (connect, STARTTLS verifying the certificate, AUTH, QUIT; no message, as no sending domain
is verified in this run) shows that each port is a full submission port; its time is one handshake,
not a throughput figure (bench/userpath.py measures the user's path with DKIM). Loopback only.

    python bench/port_ranges.py
    python bench/port_ranges.py --ports 1000
"""

from __future__ import annotations

import argparse
import os
import smtplib
import time

from _common import HOSTNAME, Appliance, machine, print_table, wait_banner

from tests.support.ports import free_port_range


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def measure(block: range | None) -> tuple[dict, Appliance]:
    """Start the appliance (with ``block`` as a range in SMTP_LISTEN) and wait until its last port
    greets; its start time, RSS and open fds."""
    appliance = Appliance(extra_listen=f"127.0.0.1:{block[0]}-{block[-1]}/starttls" if block else "")
    started = time.monotonic()
    appliance.start(timeout=120)
    if block:
        wait_banner(block[-1], timeout=120)
    ready = time.monotonic() - started
    time.sleep(2)  # idle: the threads and first writes of the start are done
    return {"start s": round(ready, 2), "RSS MB": round(appliance.rss(), 1), "fds": open_fds(appliance.pid)}, appliance


def handshake(appliance: Appliance, port: int, login: dict) -> float:
    """Connect, STARTTLS (the certificate checked against the appliance's name), AUTH, QUIT; return
    its seconds."""
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, local_hostname="shop.test", timeout=30) as client:
        client._host = HOSTNAME
        client.starttls(context=appliance.client_context())
        client.login(login["username"], login["password"])
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=3976, help="ports in the range (at most 5000)")
    args = parser.parse_args()
    print(machine())
    reference, appliance = measure(None)
    appliance.stop()
    block = free_port_range(args.ports)
    ranged, appliance = measure(block)
    try:
        login = appliance.create_account("Shop")
        seconds = {port: handshake(appliance, port, login) for port in (block[0], block[len(block) // 2], block[-1])}
    finally:
        appliance.stop()
    rows = [
        dict(listening="2 ports (reference)", **reference),
        dict(listening=f"2 ports + {len(block)} ({block[0]}-{block[-1]})", **ranged),
    ]
    for row in rows:
        row["RSS ×"] = round(row["RSS MB"] / reference["RSS MB"], 2)
        row["extra fds"] = row["fds"] - reference["fds"]
    print_table(rows, ["listening", "start s", "RSS MB", "RSS ×", "fds", "extra fds"])
    print(
        "STARTTLS (verified) + AUTH on the range:",
        ", ".join(f"port {port} {s * 1000:.0f} ms" for port, s in seconds.items()),
    )
    kb = (ranged["RSS MB"] - reference["RSS MB"]) * 1024 / len(block)
    print(f"per port of the range: {kb:.1f} KB of RSS, {(ranged['fds'] - reference['fds']) / len(block):.2f} fds")


if __name__ == "__main__":
    main()
