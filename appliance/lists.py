"""Lists: create, tie accounts, import and export members, show with their figures
(docs/campaigns-and-lists.md).

The recipients of an account's message join the list its ``mailing_list_id`` header names, else the
account's "Transactional Campaign Recipients" (made on first use); its figures show under the named list,
else the list the account is tied to, else that one. A member's status follows the suppressions of its
address (``ListMember.follow_suppressions``, called by appliance/suppressions.py).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from peewee import fn

from . import audit, clock, db, replies
from .models import MEMBER_STATUSES, SUBSCRIBED, ListAccount, ListMember, MailingList, SmtpAccount
from .policy import acceptance

TRANSACTIONAL_RECIPIENTS = "Transactional Campaign Recipients"  # an account's default list (Moosend's name)
LIST = "list"  # GroupedCount.kind of a list's figures
MAX_NAME = 255
IMPORT_BATCH = 500  # members written per transaction of an import
MAX_BAD_ROWS = 1000  # bad rows an import report lists one by one (the rest are counted)


class ListError(ValueError):
    """A request about lists that cannot be done, saying why in a sentence."""


def _name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ListError("the name may not be empty")
    if len(value) > MAX_NAME or any(c in value for c in "\r\n"):
        raise ListError(f"the name must be one line of at most {MAX_NAME} characters")
    return value


def create(name: str, accounts: Iterable[SmtpAccount] = ()) -> MailingList:
    """Make a list, tied to ``accounts`` (their mail's figures show under it)."""
    name = _name(name)
    now = clock.now()
    with db.atomic_write():
        row = MailingList.create(id=str(uuid.uuid4()), name=name, created_at=now)
        for account in accounts:
            ListAccount.create(list=row.id, account=account.id, created_at=now)
    audit.record("list.create", f"list {row.id}", f"name {name!r}")
    return row


def find(list_id: str) -> MailingList:
    """The list of this id (any case, spaces around ignored); raise ListError when there is none."""
    row = MailingList.get_or_none(MailingList.id == list_id.strip().lower())
    if row is None:
        raise ListError(f"there is no list {list_id.strip()!r} (`appliance lists list` shows them)")
    return row


def rename(list_id: str, name: str) -> MailingList:
    row = find(list_id)
    row.name = _name(name)
    row.save()
    audit.record("list.rename", f"list {row.id}", f"name {row.name!r}")
    return row


def tie(list_id: str, account: SmtpAccount) -> MailingList:
    """Tie an account to a list (nothing changes when it is tied already)."""
    row = find(list_id)
    ListAccount.insert(list=row.id, account=account.id, created_at=clock.now()).on_conflict_ignore().execute()
    audit.record("list.tie", f"list {row.id}", f"account {account.username}")
    return row


def untie(list_id: str, account: SmtpAccount) -> MailingList:
    row = find(list_id)
    gone = ListAccount.delete().where(ListAccount.list == row.id, ListAccount.account == account.id).execute()
    if not gone:
        raise ListError(f"account {account.username} is not tied to list {row.id}")
    audit.record("list.untie", f"list {row.id}", f"account {account.username}")
    return row


def listed() -> list[MailingList]:
    """Lists, newest first."""
    return list(MailingList.select().order_by(MailingList.created_at.desc(), MailingList.id))


def member_counts(ids: list[str]) -> dict[str, dict[str, int]]:
    """Each list's members per status (``MEMBER_STATUSES``)."""
    found = {i: dict.fromkeys(MEMBER_STATUSES, 0) for i in ids}
    if ids:
        rows = (
            ListMember.select(ListMember.list, ListMember.status, fn.COUNT(ListMember.id))
            .where(ListMember.list.in_(ids))
            .group_by(ListMember.list, ListMember.status)
            .tuples()
        )
        for list_id, status, n in rows:
            found[list_id][status] = n
    return found


def tied_accounts(ids: list[str]) -> dict[str, list[str]]:
    """The usernames of the accounts tied to each list, oldest tie first."""
    found: dict[str, list[str]] = {i: [] for i in ids}
    if ids:
        rows = (
            ListAccount.select(ListAccount.list, SmtpAccount.username)
            .join(SmtpAccount)
            .where(ListAccount.list.in_(ids))
            .order_by(ListAccount.created_at, ListAccount.id)
            .tuples()
        )
        for list_id, username in rows:
            found[list_id].append(username)
    return found


def describe(rows: list[MailingList], figures: Callable[[str, list[str]], dict[str, dict[str, int]]]) -> list[dict]:
    """Lists as the CLI's JSON and the dashboard show them: members per status, tied accounts, figures
    (``figures``: campaigns.figures, a layer above)."""
    ids = [r.id for r in rows]
    counts, ties, counted = member_counts(ids), tied_accounts(ids), figures(LIST, ids)
    return [
        {
            "id": r.id,
            "name": r.name,
            "account": r.default_for_id,
            "accounts": ties[r.id],
            "created_at": r.created_at.isoformat(sep=" ", timespec="seconds"),
            "members": sum(counts[r.id].values()),
            "statuses": counts[r.id],
            **counted[r.id],
        }
        for r in rows
    ]


def members(
    list_id: str, *, status: str = "", search: str = "", limit: int | None = None, offset: int = 0
) -> list[ListMember]:
    """A list's members in address order: those of ``status`` and whose address contains ``search``
    (``limit`` of them after the first ``offset``)."""
    row = find(list_id)
    if status and status not in MEMBER_STATUSES:
        raise ListError(f"a member's status is one of {', '.join(MEMBER_STATUSES)}, not {status!r}")
    query = ListMember.select().where(ListMember.list == row.id).order_by(ListMember.email)
    if status:
        query = query.where(ListMember.status == status)
    if search.strip():
        query = query.where(ListMember.email.contains(search.strip().lower()))
    return list(query.limit(limit).offset(offset or None) if limit else query)


def member_dict(m: ListMember) -> dict[str, Any]:
    return {
        "email": m.email,
        "status": m.status,
        "source": m.source,
        "created_at": m.created_at.isoformat(sep=" ", timespec="seconds"),
        "updated_at": m.updated_at.isoformat(sep=" ", timespec="seconds"),
    }


def default_for(account_id: int) -> str:
    """The id of the account's "Transactional Campaign Recipients", made on first use (in a transaction of
    its own: two front ends making it at once end with one)."""
    found = MailingList.select(MailingList.id).where(MailingList.default_for == account_id).scalar()
    if found is None:
        with db.atomic_write():
            MailingList.insert(
                id=str(uuid.uuid4()), name=TRANSACTIONAL_RECIPIENTS, default_for=account_id, created_at=clock.now()
            ).on_conflict_ignore().execute()
        found = MailingList.select(MailingList.id).where(MailingList.default_for == account_id).scalar()
    return found


def tied_list(account_id: int) -> str | None:
    """The list the account's mail shows under: its oldest tie's (None: not tied)."""
    return (
        ListAccount.select(ListAccount.list)
        .where(ListAccount.account == account_id)
        .order_by(ListAccount.created_at, ListAccount.id)
        .scalar()
    )


def permission(account_id: int, address: str) -> tuple[str | None, str | None]:
    """Whether an account may send to a list address, ``<list-id>@LISTS_DOMAIN``: (None, the list's id),
    or (the refusal, None) when there is no such list or the account is not tied to it."""
    list_id = acceptance.split_address(address)[0].strip().lower()
    if not exists(list_id):
        return replies.LIST_UNKNOWN.format(address=address), None
    if not ListAccount.select().where(ListAccount.list == list_id, ListAccount.account == account_id).exists():
        return replies.LIST_NOT_ALLOWED.format(list=list_id), None
    return None, list_id


def subscribed_count(list_id: str) -> int:
    """How many members of a list are subscribed: what a send to its address counts against quotas
    (those suppressed since are skipped when it expands, and counted then as they are sent: not at all)."""
    return ListMember.select().where(ListMember.list == list_id, ListMember.status == SUBSCRIBED).count()


def exists(list_id: str) -> bool:
    return MailingList.select().where(MailingList.id == list_id).exists()


# -- import and export --------------------------------------------------------------------------
@dataclass
class ImportReport:
    """What an import did: members added, addresses already on the list (kept as they were), and the
    bad rows by line number (``bad``: (line, reason), at most MAX_BAD_ROWS of ``bad_count``)."""

    rows: int = 0
    added: int = 0
    existing: int = 0
    bad_count: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "added": self.added,
            "existing": self.existing,
            "bad_count": self.bad_count,
            "bad": [{"line": line, "reason": reason} for line, reason in self.bad],
        }


def read_csv(data: bytes) -> tuple[list[str], Iterator[tuple[int, list[str], str]]]:
    """The header and the rows of a CSV file (UTF-8, with or without a BOM): each row with the line it
    starts on and what is wrong with it as CSV ("": nothing); raise ListError when the file cannot be read."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ListError(f"the file is not UTF-8 text (line {line}, byte {exc.start + 1}): save it as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ListError(f"line 1: {exc}") from None
    if header is None:
        raise ListError("the file is empty: it needs a header line with an `email` column")

    def rows() -> Iterator[tuple[int, list[str], str]]:
        line = reader.line_num + 1
        while True:
            try:
                row, problem = next(reader), ""
            except StopIteration:
                return
            except csv.Error as exc:
                row, problem = [], str(exc)
            yield line, row, problem
            line = reader.line_num + 1

    return header, rows()


def import_csv(list_id: str, data: bytes, progress: Callable[[int], None] | None = None) -> ImportReport:
    """Add the addresses of a CSV file's ``email`` column to a list (``source`` import), in batches of
    IMPORT_BATCH, each in its own transaction; ``progress`` is told the rows read after each batch.
    A bad row is reported by its line number and skipped; the good ones are kept. An address already on
    the list keeps its status (an import never subscribes again someone who left)."""
    row = find(list_id)
    header, rows = read_csv(data)
    columns = [name.strip().lower() for name in header]
    if "email" not in columns:
        raise ListError("line 1 must name the columns, one of them `email` (found: " + ", ".join(header)[:200] + ")")
    column = columns.index("email")
    report = ImportReport()
    seen: set[str] = set()
    batch: list[str] = []

    def bad(line: int, reason: str) -> None:
        report.bad_count += 1
        if len(report.bad) < MAX_BAD_ROWS:
            report.bad.append((line, reason))

    def flush() -> None:
        if batch:
            with db.atomic_write():
                added = ListMember.join([(row.id, a) for a in batch], "import", clock.now())
            report.added += added
            report.existing += len(batch) - added
            batch.clear()
        if progress is not None:
            progress(report.rows)

    for line, cells, problem in rows:
        if problem:
            report.rows += 1
            bad(line, problem)
            continue
        if not any(c.strip() for c in cells):
            continue  # an empty line
        report.rows += 1
        if column >= len(cells) or not cells[column].strip():
            bad(line, "no address in the email column")
            continue
        try:
            address = acceptance.suppression_address(cells[column])
        except ValueError as exc:
            bad(line, str(exc))
            continue
        if address in seen:
            bad(line, f"{address} is on an earlier line too")
            continue
        seen.add(address)
        batch.append(address)
        if len(batch) >= IMPORT_BATCH:
            flush()
    flush()
    counted = f"{report.added} added, {report.existing} already there, {report.bad_count} bad"
    audit.record("list.import", f"list {row.id}", counted)
    return report


EXPORT_COLUMNS = ("email", "status", "source", "created_at", "updated_at")


def export_csv(list_id: str) -> Iterator[str]:
    """A list's members as CSV text, the header line first (the columns of EXPORT_COLUMNS), in address
    order; an export can be imported again."""
    row = find(list_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield out.getvalue()
    query = (
        ListMember.select(*(getattr(ListMember, c) for c in EXPORT_COLUMNS))
        .where(ListMember.list == row.id)
        .order_by(ListMember.email)
        .tuples()
        .iterator()
    )
    for values in query:
        out.seek(0)
        out.truncate()
        writer.writerow([v.isoformat(sep=" ", timespec="seconds") if hasattr(v, "isoformat") else v for v in values])
        yield out.getvalue()
