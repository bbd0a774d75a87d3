"""A campaign's connected list (Moosend): the recipients of mail filed under the campaign join it, unless
the message names a list of its own in mailing_list_id. A plain column, as Message.mailing_list is."""

from peewee import CharField
from playhouse.migrate import migrate


def up(migrator, db):
    migrate(migrator.add_column("campaign", "mailing_list", CharField(null=True)))
