"""Campaigns that relayed mail is filed under, and the hourly roll-up of their figures
(docs/campaigns-and-lists.md)."""

from __future__ import annotations

from peewee import AutoField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField

from .. import clock
from .base import BaseModel
from .mail import SmtpAccount


class Campaign(BaseModel):
    """A campaign: the mail filed under it by its id (the ``campaign_guid`` header), by its subject, or
    as an account's "Transactional Campaign" (``default_for``)."""

    id = CharField(primary_key=True, max_length=36)  # a UUID, lower case: what apps put in campaign_guid
    name = CharField()
    # Mail with no campaign_guid whose Subject: is exactly this is filed here (None: no subject rule).
    subject = CharField(null=True, index=True)
    # The account whose "Transactional Campaign" this is: its mail that no other rule files (one each).
    default_for = ForeignKeyField(SmtpAccount, null=True, unique=True, on_delete="SET NULL")
    archived = BooleanField(default=False)  # no longer matched by subject; a campaign_guid still names it
    created_at = DateTimeField(default=clock.now)


class GroupedCount(BaseModel):
    """The hourly roll-up of a campaign's (``kind`` "campaign") figures, kept by appliance/events.py in the
    transaction of each Event, as EventCount is for the analytics. No foreign key: the counts outlive the
    messages (retention)."""

    id = AutoField()
    kind = CharField()  # campaign
    group = CharField()  # the campaign's id
    metric = CharField()  # sent | delivered | bounced | complained | opened | clicked | unsubscribed | machine_…
    hour = DateTimeField()  # the hour the events happened in; the hour the messages were received for sent
    count = IntegerField(default=0)
    uniques = IntegerField(default=0)  # opened, clicked: the deliveries' first human open or click

    class Meta:
        indexes = ((("kind", "group", "metric", "hour"), True),)
