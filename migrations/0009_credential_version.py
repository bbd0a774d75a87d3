"""SmtpAccount.credential_version: raised on a password reset or a disable, so that sessions
authenticated before it are refused at their next MAIL FROM."""

from peewee import IntegerField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(migrator.add_column("smtp_account", "credential_version", IntegerField(default=0)))
