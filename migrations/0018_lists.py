"""Lists (docs/campaigns-and-lists.md): the lists, the accounts tied to them, their members, and the list
each message's figures show under. Mail stored before has no list: nothing to count anew."""

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, Model
from playhouse.migrate import migrate


class _SmtpAccount(Model):
    id = AutoField()

    class Meta:
        table_name = "smtp_account"


class _MailingList(Model):
    """The tables as this migration creates them (later models may differ)."""

    id = CharField(primary_key=True, max_length=36)
    name = CharField()
    default_for = ForeignKeyField(
        _SmtpAccount, null=True, unique=True, on_delete="SET NULL", column_name="default_for_id"
    )
    created_at = DateTimeField()

    class Meta:
        table_name = "mailing_list"


class _ListAccount(Model):
    id = AutoField()
    list = ForeignKeyField(_MailingList, on_delete="CASCADE", column_name="list_id")
    account = ForeignKeyField(_SmtpAccount, on_delete="CASCADE", column_name="account_id")
    created_at = DateTimeField()

    class Meta:
        table_name = "list_account"
        indexes = ((("list", "account"), True), (("account", "created_at"), False))


class _ListMember(Model):
    id = AutoField()
    list = ForeignKeyField(_MailingList, on_delete="CASCADE", column_name="list_id")
    email = CharField(index=True)
    status = CharField(default="subscribed")
    source = CharField(default="mail")
    created_at = DateTimeField()
    updated_at = DateTimeField()

    class Meta:
        table_name = "list_member"
        indexes = ((("list", "email"), True), (("list", "status", "email"), False))


def up(migrator, db):
    with db.bind_ctx([_SmtpAccount, _MailingList, _ListAccount, _ListMember]):
        db.create_tables([_MailingList, _ListAccount, _ListMember])
    migrate(migrator.add_column("message", "mailing_list", CharField(null=True)))
