"""The guard: the policy's verdicts turned into alerts.

The quota alerts of MAIL FROM and the reputation guard's periodic verdicts come from the policy
package as alarms (it sends nothing); this module raises them in the alert center, which mails them.
"""

from __future__ import annotations

import datetime as dt

from . import alerts
from .policy import quotas, reputation
from .policy import sending as sp


def raise_alarms(settings: dict, alarms: list[sp.Alarm]) -> None:
    for alarm in alarms:
        alerts.raise_alert(settings, alarm.kind, alarm.subject, alarm.text, alarm.severity)


def check_mail(settings: dict, account_id: int) -> sp.QuotaDecision | None:
    """MAIL FROM of an account (on an executor thread): the quota and reputation verdict, with
    its quota alerts raised."""
    decision, alarms = quotas.check_mail(account_id)
    raise_alarms(settings, alarms)
    return decision


def check_reputation(settings: dict, now: dt.datetime | None = None) -> dict[int, sp.Reputation]:
    """Judge every account now and alert on each step up; return the verdicts."""
    verdicts, alarms = reputation.check(settings, now)
    raise_alarms(settings, alarms)
    return verdicts


def check_reputation_if_due(settings: dict, now: dt.datetime) -> None:
    """The sweep's call: judge when REPUTATION_CHECK_INTERVAL has passed, and alert."""
    raise_alarms(settings, reputation.check_if_due(settings, now))
