"""HTTP API sends per second against SMTP sends per second, on the same appliance in one run (a
benchmark, not a test).

One `python app.py` (SMTP, the dashboard with its HTTPS listener, delivery) in a fresh DATA_DIR;
src.test is a verified domain whose DKIM records are in a loopback DNS server, so every message
is signed (RSA-2048 + Ed25519); dst.test's MX is an aiosmtpd sink here that counts what arrives.
Each message is about SIZE bytes of text from Shop <a@src.test> to b@dst.test.

  smtp         CLIENTS parallel clients, a connection per message as WordPress (PHPMailer) makes:
               connect, EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT
  api          CLIENTS parallel clients, a connection per request: HTTPS (the certificate checked
               against the appliance's CA), POST /api/v1/messages with a JSON body, Bearer key
  api-session  the same over one kept-alive HTTPS connection per client (requests.Session)

Each round runs the three in turn (the order turns from one round to the next), MESSAGES messages
each, and prints sends per second at accept (all answers in) and end to end (the sink has them all),
and the ratios API/SMTP.

    python bench/api.py --messages 400 --clients 8 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests  # noqa: E402
from _common import Appliance, CountingSink, free_port, machine, print_table  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from intake import RECIPIENT, SENDER  # noqa: E402
from userpath import dns_server, one_per_connection, sign_as_src_test, wait_sink  # noqa: E402

LINE = "Thank you for your order. This line is filler text of a transactional mail body.\n"


def payload(size: int, n: int) -> dict:
    return {
        "from": f"Shop <{SENDER}>",
        "to": [RECIPIENT],
        "subject": f"Order {n} confirmed",
        "text": LINE * max(1, size // len(LINE)),
    }


def api_sends(base: str, ca: str, key: str, messages: int, clients: int, size: int, keep_alive: bool):
    """``messages`` POSTs over ``clients`` threads; return (seconds, accepted, errors)."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for n in range(messages):
        todo.put(n)
    bodies = [json.dumps(payload(size, n)).encode() for n in range(64)]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    accepted, errors = [0] * clients, [0] * clients

    def client(i: int) -> None:
        http = requests.Session() if keep_alive else None
        while True:
            try:
                n = todo.get_nowait()
            except queue.Empty:
                break
            try:
                post = (http or requests).post
                answer = post(f"{base}/api/v1/messages", data=bodies[n % 64], headers=headers, verify=ca, timeout=60)
                if answer.status_code == 202:
                    accepted[i] += 1
                else:
                    errors[i] += 1
                    if errors[i] == 1:
                        print(f"    first refusal: {answer.status_code} {answer.text[:200]}", flush=True)
            except requests.RequestException as exc:
                errors[i] += 1
                if errors[i] == 1:
                    print(f"    first error: {exc}", flush=True)
        if http is not None:
            http.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, sum(accepted), sum(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=400, help="messages per side and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", type=int, default=4000, help="bytes of body text per message")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)

    sink = CountingSink()
    delivery_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=delivery_port)
    controller.start()
    dns = dns_server()
    https_port = free_port()
    app = Appliance(
        extra_env={
            "APPLIANCE_DNS_SERVERS": dns.spec,
            "APPLIANCE_DELIVERY_PORT": str(delivery_port),
            "APPLIANCE_WEB_TLS_LISTEN": f"127.0.0.1:{https_port}",
            "APPLIANCE_API_RATE_LIMIT": "0",
        }
    )
    rows = []
    try:
        app.start()
        sign_as_src_test(app, dns)
        account = app.create_account("bench")
        key = json.loads(app.cli("api-keys", "create", account["username"], "--json"))["key"]
        base, ca = f"https://relay.test:{https_port}", str(app.ca)
        # relay.test is the certificate's name: requests resolves it through this process's resolver.
        import socket

        real = socket.getaddrinfo
        socket.getaddrinfo = lambda host, *a, **k: real("127.0.0.1" if host == "relay.test" else host, *a, **k)

        def smtp() -> tuple[float, int, int]:
            seconds, ids, errors = asyncio.run(
                one_per_connection(
                    app.submission_port,
                    app.client_context(),
                    (account["username"], account["password"]),
                    args.messages,
                    args.clients,
                    args.size,
                )
            )
            return seconds, len(ids), errors

        sides = {
            "smtp": smtp,
            "api": lambda: api_sends(base, ca, key, args.messages, args.clients, args.size, keep_alive=False),
            "api-session": lambda: api_sends(base, ca, key, args.messages, args.clients, args.size, keep_alive=True),
        }
        names = list(sides)
        for round_ in range(1, args.rounds + 1):
            order = names[round_ - 1 :] + names[: round_ - 1]
            print(f"round {round_}: {', '.join(order)}", flush=True)
            figures = {}
            for name in order:
                before, t0 = sink.count, time.perf_counter()
                seconds, ok, errors = sides[name]()
                done = wait_sink(lambda: sink.count, before + ok)
                figures[name] = (ok / seconds, ok / (done - t0))
                rows.append(
                    {
                        "round": round_,
                        "side": name,
                        "sent": ok,
                        "errors": errors,
                        "accept/s": f"{ok / seconds:.1f}",
                        "end to end/s": f"{ok / (done - t0):.1f}",
                    }
                )
                print(f"  {name}: {ok} in {seconds:.1f} s, {ok / seconds:.1f}/s accepted, "
                      f"{ok / (done - t0):.1f}/s end to end, {errors} errors", flush=True)  # fmt: skip
            for name in ("api", "api-session"):
                accept = figures[name][0] / figures["smtp"][0]
                e2e = figures[name][1] / figures["smtp"][1]
                print(f"  ratio {name}/smtp: accept {accept:.2f}, end to end {e2e:.2f}", flush=True)
        print_table(rows, ["round", "side", "sent", "errors", "accept/s", "end to end/s"])
    finally:
        app.stop()
        dns.stop()
        controller.stop()


if __name__ == "__main__":
    main()
