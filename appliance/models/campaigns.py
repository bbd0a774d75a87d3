"""Campaigns and lists that relayed mail is filed under, the lists' members, and the hourly roll-up of
their figures (docs/campaigns-and-lists.md)."""

from __future__ import annotations

from peewee import AutoField, BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField

from .. import clock
from .addresses import Suppression
from .base import BOUNCED, BaseModel
from .mail import SmtpAccount

# A list member's statuses (bounced: the delivery status's word); all but subscribed keep list mail away.
SUBSCRIBED, UNSUBSCRIBED, COMPLAINED = "subscribed", "unsubscribed", "complained"
MEMBER_STATUSES = (SUBSCRIBED, UNSUBSCRIBED, BOUNCED, COMPLAINED)
# The status a suppression gives the members of its address, the first source found winning.
_BY_SOURCE = (("complaint", COMPLAINED), ("bounce", BOUNCED), ("manual", UNSUBSCRIBED), ("unsubscribe", UNSUBSCRIBED))


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
    # The connected list (a MailingList id; None: none): the recipients of its mail join it, unless the
    # message's mailing_list_id names a list. A plain column: lists are not deleted while mail names them.
    mailing_list = CharField(null=True)


class MailingList(BaseModel):
    """A list of members: the recipients an account's mail names join it (the ``mailing_list_id``
    header, else the account's "Transactional Campaign Recipients", ``default_for``)."""

    id = CharField(primary_key=True, max_length=36)  # a UUID, lower case: what apps put in mailing_list_id
    name = CharField()
    default_for = ForeignKeyField(SmtpAccount, null=True, unique=True, on_delete="SET NULL")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        table_name = "mailing_list"


class ListAccount(BaseModel):
    """An account tied to a list (MailUp's SMTP+ users of a list): its mail's figures show under the list
    (the oldest tie's, when there are several)."""

    id = AutoField()
    list = ForeignKeyField(MailingList, backref="ties", on_delete="CASCADE")
    account = ForeignKeyField(SmtpAccount, backref="list_ties", on_delete="CASCADE")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("list", "account"), True), (("account", "created_at"), False))


class ListMember(BaseModel):
    """An address on a list, with its status (``MEMBER_STATUSES``), which follows the address's
    suppressions (``follow_suppressions``)."""

    id = AutoField()
    list = ForeignKeyField(MailingList, backref="members", on_delete="CASCADE")
    email = CharField(index=True)  # lower-cased
    status = CharField(default=SUBSCRIBED)
    source = CharField(default="mail")  # mail (a recipient of an account's message) | import | admin
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("list", "email"), True), (("list", "status", "email"), False))

    @staticmethod
    def statuses_for(addresses: list[str]) -> dict[str, str]:
        """The status each of these (lower-cased) addresses' suppressions give it; absent: subscribed."""
        sources: dict[str, set[str]] = {}
        if addresses:
            for address, source in (
                Suppression.select(Suppression.address, Suppression.source)
                .where(Suppression.address.in_(addresses))
                .tuples()
            ):
                sources.setdefault(address, set()).add(source)
        found = {}
        for address, seen in sources.items():
            found[address] = next((status for source, status in _BY_SOURCE if source in seen), UNSUBSCRIBED)
        return found

    @classmethod
    def join(cls, pairs: list[tuple[str, str]], source: str, now) -> int:
        """Add (list id, lower-cased address) members that are not there yet, each with the status its
        suppressions give it (inside the caller's transaction); return how many rows were added."""
        if not pairs:
            return 0
        statuses = cls.statuses_for(sorted({address for _, address in pairs}))
        rows = [
            {
                "list": list_id,
                "email": address,
                "status": statuses.get(address, SUBSCRIBED),
                "source": source,
                "created_at": now,
                "updated_at": now,
            }
            for list_id, address in sorted(set(pairs))
        ]
        added = 0
        for start in range(0, len(rows), 500):
            added += cls.insert_many(rows[start : start + 500]).on_conflict_ignore().as_rowcount().execute()
        return added

    @classmethod
    def follow_suppressions(cls, addresses: list[str], now) -> None:
        """Give every member of these addresses the status their suppressions give them now (inside the
        transaction that changed the suppressions)."""
        wanted = sorted({a.lower() for a in addresses})
        statuses = cls.statuses_for(wanted)
        for status in MEMBER_STATUSES:
            chosen = [a for a in wanted if statuses.get(a, SUBSCRIBED) == status]
            if chosen:
                cls.update(status=status, updated_at=now).where(cls.email.in_(chosen), cls.status != status).execute()


class GroupedCount(BaseModel):
    """The hourly roll-up of a campaign's (``kind`` "campaign") and a list's (``kind`` "list") figures, kept
    by appliance/events.py in the transaction of each Event, as EventCount is for the analytics. No foreign
    key: the counts outlive the messages (retention)."""

    id = AutoField()
    kind = CharField()  # campaign | list
    group = CharField()  # the campaign's or the list's id
    metric = CharField()  # sent | delivered | bounced | complained | opened | clicked | unsubscribed | machine_…
    hour = DateTimeField()  # the hour the events happened in; the hour the messages were received for sent
    count = IntegerField(default=0)
    uniques = IntegerField(default=0)  # opened, clicked: the deliveries' first human open or click

    class Meta:
        indexes = ((("kind", "group", "metric", "hour"), True),)
