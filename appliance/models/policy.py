"""Sending policy's tables: the rules themselves are in appliance/policy/sending.py."""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from .. import clock
from .base import BaseModel
from .mail import SmtpAccount


class AccountQuota(BaseModel):
    """One quota of an SMTP account: recipients per minute, hour, day or month (of all its mail or of one
    stream), and what happens over it."""

    id = AutoField()
    account = ForeignKeyField(SmtpAccount, backref="quotas", on_delete="CASCADE")
    period = CharField()  # minute | hour | day | month
    limit = IntegerField()
    action = CharField(default="defer")  # defer | hold | reject
    stream = CharField(default="")  # the stream whose mail it counts (transactional | broadcast); "": all

    class Meta:
        indexes = ((("account", "stream", "period"), True),)


class ProviderGroup(BaseModel):
    """Destinations of one provider (by recipient domain or MX host name), their caps and throttle state."""

    id = AutoField()
    name = CharField(unique=True)
    position = IntegerField(default=0)  # matching order
    domain_patterns = TextField(default="")  # one fnmatch pattern per line
    mx_patterns = TextField(default="")
    hourly_new = IntegerField(null=True, column_name="hourly_cap")  # per hour from a new IP; None: no cap
    hourly_warm = IntegerField(null=True)  # per hour once warmed up
    daily_cap = IntegerField(null=True)  # per UTC day
    session_cap = IntegerField(null=True)
    stage = CharField(default="auto")  # auto (follows the warm-up plan) | new | warm
    throttled_until = DateTimeField(null=True)  # slowed down after a remote rate-limit reply
    throttle_strikes = IntegerField(default=0)
    throttle_reply = TextField(default="")
    throttled_at = DateTimeField(null=True)


class SendCount(BaseModel):
    """Deliveries let through per provider group and clock hour: what pacing and warm-up count."""

    id = AutoField()
    provider = CharField()
    hour = DateTimeField(index=True)
    count = IntegerField(default=0)

    class Meta:
        indexes = ((("provider", "hour"), True),)


class WarmupPlan(BaseModel):
    """The IP warm-up (one row): daily caps by day of the plan, counted from its start date."""

    id = AutoField()
    enabled = BooleanField(default=False)
    start_date = DateField(null=True)
    steps = TextField(default="")  # "1:1000,4:5000,…,21:" (policy/sending.py, parse_plan)


class AccountReputation(BaseModel):
    """The reputation guard's last verdict on an account's bounce and complaint rates."""

    account = ForeignKeyField(SmtpAccount, primary_key=True, backref="reputation_rows", on_delete="CASCADE")
    state = CharField(default="ok")  # ok | warn | hold
    reason = CharField(default="")
    sent = IntegerField(default=0)
    bounced = IntegerField(default=0)
    complaints = IntegerField(default=0)
    checked_at = DateTimeField(default=clock.now)
