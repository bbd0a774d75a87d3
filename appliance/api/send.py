"""A message handed in over HTTP takes the path of SMTP mail: the checks of MAIL FROM (admission),
of RCPT TO and DATA (policy.acceptance), then admission.admit and intake on the process's writer,
whose commit is durable before the 202. What smtp/hooks.py asks, in the same order, this asks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from .. import admission, api_keys, intake, lists, message_bytes, replies
from ..models import SmtpAccount
from ..policy import acceptance, quotas
from ..policy import sending as sp
from . import problems
from .compose import Composed


@dataclass(frozen=True)
class Idempotency:
    key_id: int
    key: str
    request_hash: str


@dataclass(frozen=True)
class Stored:
    """What the writer gave for a request: its message, and whether an earlier request with the
    same Idempotency-Key had made it (``request_hash``: that request's)."""

    message_id: str
    replayed: bool
    request_hash: str = ""


def local_domains(settings: dict) -> frozenset[str]:
    """The domains the appliance receives mail for (as the SMTP listeners read them)."""
    domains = {settings["HOSTNAME"].lower()}
    domains.update(d.strip().lower() for d in settings["LOCAL_DOMAINS"].split(",") if d.strip())
    return frozenset(domains)


def _store(jobs: list[tuple[intake.Incoming, Idempotency | None]]) -> list[Stored]:
    """The writer's job kind for API mail (inside its transaction): a request whose Idempotency-Key
    was answered already (before, or earlier in this batch) stores nothing; the others are stored
    by intake.store_many, with the answer kept for their key."""
    results: list[Stored | None] = [None] * len(jobs)
    fresh: list[int] = []
    in_batch: dict[tuple[int, str], int] = {}
    for i, (_, idem) in enumerate(jobs):
        if idem is not None:
            found = api_keys.answered(idem.key_id, idem.key)
            if found is not None:
                results[i] = Stored(found.message_id, True, found.request_hash)
                continue
            if (idem.key_id, idem.key) in in_batch:
                continue  # answered below with the first one's message
            in_batch[(idem.key_id, idem.key)] = i
        fresh.append(i)
    ids = intake.store_many([jobs[i][0] for i in fresh])
    for i, message_id in zip(fresh, ids, strict=True):
        results[i] = Stored(message_id, False)
        idem = jobs[i][1]
        if idem is not None:
            api_keys.keep_answer(idem.key_id, idem.key, idem.request_hash, message_id)
    for i, (_, idem) in enumerate(jobs):
        if results[i] is None:
            first = jobs[in_batch[(idem.key_id, idem.key)]][1]
            results[i] = Stored(results[in_batch[(idem.key_id, idem.key)]].message_id, True, first.request_hash)
    return results


def submit(
    settings: dict,
    account: SmtpAccount,
    message: Composed,
    *,
    client_ip: str,
    secure: bool,
    idempotency: Idempotency | None,
    after: Callable[[list[Stored]], None] | None,
) -> Stored:
    """Check and store ``message`` as ``account``'s; return what was stored once it is durable.
    Raise problems.Problem with the refusal SMTP would give."""
    decision = acceptance.sender(message.mail_from)
    if decision:
        raise problems.from_reply(decision.reply, decision.reason, field="from")
    _, decision, verdict, cacheable = admission.mail_from(settings, account.id, message.mail_from, False, None)
    if decision:
        raise problems.from_reply(decision.reply, decision.reason, field="from")
    if verdict is not None and verdict.action != sp.HOLD:
        raise problems.from_reply(verdict.reply, verdict.reason)
    domains = local_domains(settings)
    list_send = None  # a list's id: the message goes to its address, <list-id>@LISTS_DOMAIN, as over SMTP
    for count, (rcpt, where) in enumerate(zip(message.rcpts, message.fields, strict=True)):
        if acceptance.split_address(rcpt)[1] == settings["LISTS_DOMAIN"]:
            if len(message.rcpts) > 1:
                raise problems.from_reply(replies.LIST_ALONE, field=where)
            refusal, list_send = lists.permission(account.id, rcpt)
            if refusal:
                raise problems.from_reply(refusal, field=where)
            continue
        decision = acceptance.recipient(
            rcpt, authenticated=True, local_domains=domains, count=count, limit=settings["MAX_RECIPIENTS"]
        )
        if decision:
            raise problems.from_reply(decision.reply, decision.reason, field=where)
    data = message_bytes.normalise_line_endings(message.data)
    refusal = None
    if len(data) > settings["MAX_MESSAGE_SIZE"]:
        refusal = replies.MESSAGE_TOO_BIG
    elif message_bytes.has_long_line(data):
        refusal = replies.LINE_TOO_LONG
    elif b"\x00" in data:
        refusal = replies.NUL_IN_MESSAGE
    else:
        refusal = acceptance.header_limits_refusal(
            data, max_size=settings["MAX_HEADER_SIZE"], max_lines=settings["MAX_HEADER_LINES"]
        )
    if refusal:
        raise problems.from_reply(refusal)
    if quotas.needs_send_check(account.id, bool(list_send)):
        verdict = admission.send_verdict(settings, account.id, account.stream, data, list_send, verdict)
        if verdict is not None and verdict.action != sp.HOLD:
            raise problems.from_reply(verdict.reply, verdict.reason)

    def prepare() -> intake.Incoming:
        item = intake.prepare(
            data,
            mail_from=message.mail_from,
            rcpts=list(message.rcpts),
            hostname=settings["HOSTNAME"],
            client_ip=client_ip,
            client_helo="",
            tls="",
            username=account.username,
            account_id=account.id,
            account_priority=account.priority,
            account_stream=account.stream,
            account_track_opens=account.track_opens,
            account_track_clicks=account.track_clicks,
            protocol="HTTPS" if secure else "HTTP",
            list_send=list_send,
        )
        item.via, item.tags = "api", list(message.tags)
        return item

    admit = functools.partial(
        admission.admit,
        settings,
        prepare,
        account_id=account.id,
        allowed=frozenset({message.mail_from.lower()} if cacheable else ()),
        hold=verdict,
        arrival=None,
    )
    try:
        return intake.accept_blocking(lambda: (admit(), idempotency), store=_store, after=after)
    except message_bytes.MalformedMessage as exc:
        raise problems.from_reply(replies.MALFORMED_MESSAGE.format(reason=exc)) from None
    except intake.Refused as exc:
        raise problems.from_reply(exc.reply, exc.reason) from None
    except intake.StorageError as exc:
        # Two requests with one Idempotency-Key at the same moment (PostgreSQL: two transactions;
        # SQLite writes one at a time): the second's answer row breaks the unique index, and the
        # first one's answer is the one to give.
        found = api_keys.answered(idempotency.key_id, idempotency.key) if idempotency else None
        if found is not None:
            return Stored(found.message_id, True, found.request_hash)
        raise problems.from_reply(exc.reply, headers={"Retry-After": "60"}) from None
