"""The deliverability checker's check addresses (appliance/checker/, docs/checker.md)."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, TextField

from .. import clock
from .base import BaseModel


class CheckAddress(BaseModel):
    """A check address ``check-<token>@HOSTNAME``: ``tracking_id`` is the random half of its token
    (appliance/tracking.py signs it), so neither the address nor the result link names this row.
    The first message to arrive is graded and linked (``message_id``); ``findings`` is the JSON list
    of the grade's findings, kept on the row so that the result outlives the message's retention."""

    id = AutoField()
    tracking_id = CharField(unique=True, max_length=16)
    created_at = DateTimeField(default=clock.now)
    expires_at = DateTimeField()  # unused until then; a graded check stays readable
    message_id = CharField(null=True, max_length=26)  # the graded message (inbound, in the message log)
    received_at = DateTimeField(null=True)
    mail_from = CharField(default="")
    client_ip = CharField(default="", max_length=45)
    grade = CharField(default="", max_length=1)  # A-F once graded
    findings = TextField(default="")
