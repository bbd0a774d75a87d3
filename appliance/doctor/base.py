"""What every check returns, and the small helpers several checks share."""

from __future__ import annotations

import smtplib
from dataclasses import asdict, dataclass

OK, WARN, FAIL = "OK", "WARN", "FAIL"
TIMEOUT = 5.0  # seconds per connection, SMTP reply and DNS lookup


@dataclass(frozen=True)
class Result:
    check: str  # ports | certificate | dns | ptr | outbound | blocklists
    target: str  # what was checked: a listener, a file, a name, an address, a zone
    status: str  # OK | WARN | FAIL
    detail: str  # what was found
    hint: str = ""  # what to do about it ("" when there is nothing to do)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def quit_quietly(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()
