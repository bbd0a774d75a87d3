"""What a new appliance still needs before its mail can flow, in the order an owner does it: a public
host name, a public address for its links, an SMTP account, a verified sender or domain, a first
message delivered (any: a test, a verification link, an application's). The start-up banner lists
the steps not yet done, each with the command that does it; once all are done it says so."""

from __future__ import annotations

from dataclasses import dataclass

from . import domains, senders
from .models import DELIVERED, Delivery, Domain, Sender, SmtpAccount


@dataclass(frozen=True)
class Step:
    name: str  # hostname | public-url | account | sender | first-message
    done: bool
    todo: str  # what to do, with the command, while it is not done


def steps(settings: dict) -> list[Step]:
    """Every step, done or not (reads the database: call it inside an app context)."""
    hostname = settings["HOSTNAME"]
    pending = Domain.select().where(~Domain.verified).order_by(Domain.name).first()
    sending = (
        Domain.select().where(Domain.verified).exists()
        or Sender.select().where(Sender.verified_at.is_null(False)).exists()
    )
    if pending is not None:
        sender_todo = (
            f"publish the DNS records of {pending.name} (appliance domains show {pending.name}), "
            f"then: appliance domains check {pending.name}"
        )
    else:
        sender_todo = "verify who may send: appliance domains add DOMAIN, or appliance senders add ADDRESS"
    delivered = Delivery.select().where(Delivery.status == DELIVERED).exists()
    return [
        Step(
            "hostname",
            domains.hostname_problem(hostname) is None,
            f"set APPLIANCE_HOSTNAME to this machine's public name (now {hostname}): its certificate, "
            "DNS records and bounces name it",
        ),
        Step(
            "public-url",
            senders.link_problem(settings) is None,
            "set APPLIANCE_PUBLIC_URL to the dashboard's public address: verification, tracking and "
            "unsubscribe links point there",
        ),
        Step("account", SmtpAccount.select().exists(), 'create an SMTP account: appliance accounts create "My shop"'),
        Step("sender", sending, sender_todo),
        Step("first-message", delivered, "send a test through the relay: appliance send-test you@example.com"),
    ]
