"""What follows an outcome once it is committed: the subscribers of the events layer.

- `accepted` mail the appliance wrote itself (notices, DSNs) goes to the queue at once, so it
  never waits for a sweep. Mail accepted over SMTP is enqueued by the SMTP front end's commit
  hook instead (serve.QueueService.on_committed), off the writer thread.
- `bounced` and `failed` deliveries of an account's mail raise the delivery-failing alert (repeats
  fold into one), which mails ALERT_EMAILS.
"""

from __future__ import annotations

from collections import defaultdict

from . import alerts, events, queue
from .models import Message, SmtpAccount

OWN_MAIL = ("notice", "dsn")  # `via` of the mail the appliance writes itself


def connect(settings: dict) -> None:
    """Subscribe this module's reactions for ``settings`` (create_app calls it)."""
    events.unsubscribe_all()

    def enqueue_own_mail(accepted: list[events.Occurred]) -> None:
        ids = [e.message_id for e in accepted if e.details.get("via") in OWN_MAIL]
        if ids:
            queue.enqueue_messages(queue.runtime(settings), ids)

    def alert_failures(failures: list[events.Occurred]) -> None:
        alert_failing(settings, failures)

    events.subscribe([events.ACCEPTED], enqueue_own_mail)
    events.subscribe([events.BOUNCED, events.FAILED], alert_failures)


def alert_failing(settings: dict, failures: list[events.Occurred]) -> None:
    """Tell the admin that an account's mail is not getting through (one alert per message)."""
    by_message: dict[str, list[events.Occurred]] = defaultdict(list)
    for e in failures:
        by_message[e.message_id].append(e)
    owners = dict(
        Message.select(Message.id, SmtpAccount.username)
        .join(SmtpAccount)
        .where(Message.id.in_(list(by_message)))
        .tuples()
    )
    for message_id, failed in by_message.items():
        username = owners.get(message_id)
        if username is None:  # the appliance's own mail, or its account is gone
            continue
        shown = ", ".join(f"{e.recipient} ({e.details.get('reply', '')})" for e in failed[:3])
        shown += " …" if len(failed) > 3 else ""
        alerts.raise_alert(
            settings,
            alerts.DELIVERY_FAILING,
            f"account {username}",
            f"message {message_id} could not be delivered to {shown}",
        )
