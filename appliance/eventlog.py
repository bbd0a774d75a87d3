"""The process's log lines: logfmt (``key=value``), and one line per message event.

Every line is ``at=LEVEL logger=NAME`` and then either ``msg="…"`` or, for a message event (logger
``appliance.mail``), the event's own keys:

    event=delivered message_id=01J… account=1.shop.smtp stream=transactional domain=example.test
    code=250 status=2.0.0 mx=mx.example.test

Under systemd (``JOURNAL_STREAM`` names our stderr) a line starts with its syslog priority
(``<6>``, which journald takes as the entry's priority) and has no time of its own: the journal
stamps every entry. Elsewhere it starts with ``time=`` (UTC, ISO 8601).

An event line never holds a password, a body, a subject, a reply's text or a recipient's full
address (the remote's reply text quotes it): only the recipient's domain. The message id leads an
admin to the rest in the dashboard or with ``appliance messages show``.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from logfmter import Logfmter

from . import events
from .models import sent_facts

log = logging.getLogger("appliance.mail")

# syslog priorities (sd-daemon(3)) of the logging levels
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def connect() -> None:
    """Log every committed event (create_app calls it)."""
    events.subscribe(events.TYPES, log_events)


def log_events(occurred: list[events.Occurred]) -> None:
    """One INFO line per event of a committed transaction."""
    if not log.isEnabledFor(logging.INFO):
        return
    facts = sent_facts({e.message_id for e in occurred})
    for e in occurred:
        sent = facts.get(e.message_id)
        line = {
            "event": e.type,
            "message_id": e.message_id,
            "account": sent.account if sent else "",
            "stream": sent.stream if sent else "",
            "domain": e.recipient.rpartition("@")[2].lower(),
        }
        reply = e.details.get("reply")
        if reply:  # "550 5.1.1 <bob@…>: User unknown": the codes, never the text
            code, _, rest = str(reply).partition(" ")
            line["code"] = code
            status = rest.split(" ", 1)[0]
            if status[:1].isdigit() and status.count(".") == 2:
                line["status"] = status
        for key in ("mx", "via", "by"):  # where it went, who handed it in, who acted
            if e.details.get(key):
                line[key] = e.details[key]
        if e.details.get("later"):
            line["later"] = True
        if e.type in (events.OPENED, events.CLICKED):
            line["machine"] = bool(e.details.get("machine"))
        log.info(line)


def under_journald(stream=None) -> bool:
    """Whether ``stream`` (stderr) is connected to the systemd journal (``JOURNAL_STREAM``, systemd.exec(5))."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class LineFormatter(Logfmter):
    """logfmt lines: ``time=`` first, or under journald the ``<N>`` priority prefix and no time."""

    def __init__(self, journald: bool):
        keys = ["at", "logger"] if journald else ["time", "at", "logger"]
        super().__init__(keys=keys, mapping={"time": "asctime", "at": "levelname", "logger": "name"})
        self.journald = journald

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 — logging's name
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if self.journald:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line
