"""DMARC aggregate reports and their records (docs/dmarc.md)."""

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, Model, TextField


class _DmarcReport(Model):
    """The tables as this migration creates them (later models may differ)."""

    id = AutoField()
    org_name = CharField(max_length=255)
    email = CharField(max_length=255, default="")
    report_id = CharField(max_length=255)
    domain = CharField(max_length=255, index=True)
    begin = DateTimeField(index=True)
    end = DateTimeField()
    adkim = CharField(max_length=1, default="r")
    aspf = CharField(max_length=1, default="r")
    policy = CharField(max_length=16, default="")
    subdomain_policy = CharField(max_length=16, default="")
    pct = IntegerField(null=True)
    message_id = CharField(max_length=26, default="")
    received_at = DateTimeField()

    class Meta:
        table_name = "dmarc_report"
        indexes = ((("org_name", "report_id"), True),)


class _DmarcRecord(Model):
    id = AutoField()
    report = ForeignKeyField(_DmarcReport, on_delete="CASCADE", column_name="report_id")
    source_ip = CharField(max_length=45)
    count = IntegerField()
    disposition = CharField(max_length=16, default="none")
    dkim = CharField(max_length=16, default="")
    spf = CharField(max_length=16, default="")
    header_from = CharField(max_length=255, default="")
    envelope_from = CharField(max_length=255, default="")
    dkim_results = TextField(default="[]")
    spf_results = TextField(default="[]")

    class Meta:
        table_name = "dmarc_record"


def up(migrator, db):
    with db.bind_ctx([_DmarcReport, _DmarcRecord]):
        db.create_tables([_DmarcReport, _DmarcRecord])
