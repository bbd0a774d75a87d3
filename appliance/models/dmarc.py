"""DMARC aggregate reports (RFC 7489 §7.2, Appendix C) that mailbox providers mail to the appliance's
report address, and their records: who sent as a domain, how often, and how it authenticated."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from .. import clock
from .base import BaseModel


class DmarcReport(BaseModel):
    """One report: a reporter's (``org_name``) figures for ``domain`` over ``begin``..``end`` (UTC),
    and the policy it found published. ``report_id`` is unique per reporter: a report mailed twice
    is stored once."""

    id = AutoField()
    org_name = CharField(max_length=255)
    email = CharField(max_length=255, default="")
    report_id = CharField(max_length=255)
    domain = CharField(max_length=255, index=True)
    begin = DateTimeField(index=True)
    end = DateTimeField()
    adkim = CharField(max_length=1, default="r")  # r | s: DKIM alignment, relaxed or strict
    aspf = CharField(max_length=1, default="r")
    policy = CharField(max_length=16, default="")  # p=: none | quarantine | reject
    subdomain_policy = CharField(max_length=16, default="")  # sp=
    pct = IntegerField(null=True)
    message_id = CharField(max_length=26, default="")  # the stored mail it came in ("": dmarc import)
    received_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("org_name", "report_id"), True),)


class DmarcRecord(BaseModel):
    """A row of a report: ``count`` messages from ``source_ip`` with the same results. ``dkim`` and
    ``spf`` are the reporter's DMARC evaluation (pass only when the result is aligned with the From:
    domain); ``dkim_results`` and ``spf_results`` the raw results (JSON lists of ``{domain, result,
    selector|scope}``), aligned or not."""

    id = AutoField()
    report = ForeignKeyField(DmarcReport, backref="records", on_delete="CASCADE")
    source_ip = CharField(max_length=45)
    count = IntegerField()
    disposition = CharField(max_length=16, default="none")  # none | quarantine | reject
    dkim = CharField(max_length=16, default="")  # pass | fail
    spf = CharField(max_length=16, default="")
    header_from = CharField(max_length=255, default="")
    envelope_from = CharField(max_length=255, default="")
    dkim_results = TextField(default="[]")
    spf_results = TextField(default="[]")
