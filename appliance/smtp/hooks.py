"""The aiosmtpd hooks: each parses, asks the services (admission, acceptance, intake), hands off and
replies."""

from __future__ import annotations

import asyncio
import functools
import logging

from aiosmtpd.smtp import TLSSetupException

from .. import (
    accounts,
    admission,
    bounces,
    checker,
    dmarc,
    engagement,
    intake,
    lists,
    message_bytes,
    replies,
    returnpath,
    tracking,
)
from ..policy import acceptance, quotas
from ..policy import sending as sp
from .context import NULL_SENDER, ServerContext
from .protocol import ApplianceSMTP

log = logging.getLogger(__name__)


class Handler:
    """aiosmtpd hooks: each parses, asks policy, and replies."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # The client's fault (it went away or spoke no TLS after STARTTLS): aiosmtpd closes
            # the connection and sends nothing; worth a line, not a traceback.
            log.info("STARTTLS handshake failed: %r", error.__cause__)
            return replies.LOCAL_ERROR
        # Without this aiosmtpd answers "500 Error: (ExceptionName) text": a bare 500 that shows
        # our internals and tells the client to give up. A fault of ours is temporary.
        log.error("SMTP session error", exc_info=error)
        return replies.LOCAL_ERROR

    async def handle_EHLO(self, server: ApplianceSMTP, session, envelope, hostname: str, responses: list[str]):
        # Every reply carries an RFC 3463 enhanced status code, and RFC 2034 has EHLO say so.
        session.host_name = hostname  # aiosmtpd leaves this to a hook that takes the responses
        return [*responses[:-1], "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, server: ApplianceSMTP, session, envelope, address: str, mail_options):
        account = await server.sending_account()
        if account is None and not server.mx:
            return replies.AUTH_REQUIRED
        decision = acceptance.sender("" if address == NULL_SENDER else address)
        if decision:
            return decision.reply
        envelope.policy_hold = None
        envelope.reported = []  # ids of the messages whose return paths are recipients (bounces.py)
        envelope.unsubscribes = []  # the deliveries whose unsubscribe addresses are recipients
        envelope.list_send = None  # the list whose address is the recipient (then the only one)
        envelope.check = None  # the check address that is the recipient (then the only one; appliance/checker/)
        envelope.dmarc_report = False  # the recipient is the DMARC report address (then the only one)
        if account is not None:
            sender = "" if address == NULL_SENDER else address
            known = sender.lower() in server.allowed_senders
            signed_in = server.account is not None
            answered, verdict = quotas.cached_verdict(account.id) if known else (False, None)
            if answered and signed_in:  # the policy is cached; the account's state never is
                expired = await server.run_blocking(accounts.session_refusal, account.id, server.credential_version)
                if expired:
                    return server.sign_out(expired)
            if not answered:  # something to look up: off the loop
                expired, decision, verdict, cacheable = await server.run_blocking(
                    admission.mail_from,
                    self.ctx.settings,
                    account.id,
                    sender,
                    known,
                    server.credential_version if signed_in else None,
                )
                if expired:
                    return server.sign_out(expired)
                if decision:
                    return decision.reply
                if cacheable:
                    server.allowed_senders.add(sender.lower())
            if verdict is not None and verdict.action != sp.HOLD:
                return verdict.reply
            envelope.policy_hold = verdict  # accepted; intake stores its deliveries as held
        envelope.mail_from = address  # NULL_SENDER stays a marker: aiosmtpd treats "" as "no MAIL yet"
        envelope.mail_options.extend(mail_options)
        return replies.MAIL_OK

    async def handle_RCPT(self, server: ApplianceSMTP, session, envelope, address: str, rcpt_options):
        account = await server.sending_account()
        if account is None and not server.mx:
            return replies.AUTH_REQUIRED
        if address == NULL_SENDER:
            return replies.MALFORMED_ADDRESS
        limit = self.ctx.settings["MAX_RECIPIENTS"]
        if server.mx and (envelope.dmarc_report or dmarc.is_address(self.ctx.settings, address)):
            if envelope.rcpt_tos:  # a report is read, and refused or stored, as a whole: it goes alone
                return replies.DMARC_ALONE
            envelope.dmarc_report = True
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            return replies.RCPT_OK
        unsubscribe = tracking.unsubscribe_token(self.ctx.settings, address) if server.mx else None
        if unsubscribe is not None and len(envelope.rcpt_tos) < limit:  # the mailto: of List-Unsubscribe
            found = await server.run_blocking(
                engagement.recipient, self.ctx.settings, tracking.UNSUBSCRIBE, unsubscribe
            )
            if found is None:
                return replies.UNSUBSCRIBE_UNKNOWN
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            envelope.unsubscribes.append(found)
            return replies.RCPT_OK
        check = checker.token_of(self.ctx.settings, address) if server.mx else None
        if check is not None or envelope.check:  # a check address of the deliverability checker
            if envelope.rcpt_tos:
                return replies.CHECK_ALONE
            refused, envelope.check = await server.run_blocking(checker.refusal, self.ctx.settings, check)
            if refused:
                return refused
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            return replies.RCPT_OK
        returned = returnpath.message_for(self.ctx.settings, address) if server.mx else None
        if returned and len(envelope.rcpt_tos) < limit:  # a later bounce or a complaint (bounces.py)
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            envelope.reported.append(returned)
            return replies.RCPT_OK
        if account is not None and acceptance.split_address(address)[1] == self.ctx.settings["LISTS_DOMAIN"]:
            if envelope.rcpt_tos:
                return replies.LIST_ALONE
            refusal, list_id = await server.run_blocking(lists.permission, account.id, address)
            if refusal:
                return refusal
            envelope.list_send = list_id
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            return replies.RCPT_OK
        if envelope.list_send:
            return replies.LIST_ALONE
        decision = acceptance.recipient(
            address,
            authenticated=account is not None,
            local_domains=self.ctx.local_domains,
            count=len(envelope.rcpt_tos),
            limit=limit,
        )
        if decision:
            return decision.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.RCPT_OK

    async def handle_DATA(self, server: ApplianceSMTP, session, envelope):
        account = await server.sending_account()
        settings = self.ctx.settings
        # The header bounds are checked here, on the loop, in a bounded scan: a message over them
        # never reaches the writer thread that every session's mail goes through.
        refusal = acceptance.header_limits_refusal(
            envelope.original_content, max_size=settings["MAX_HEADER_SIZE"], max_lines=settings["MAX_HEADER_LINES"]
        )
        if refusal:
            return refusal
        report = None
        if envelope.dmarc_report:  # read before the 250, off the loop: a bad report leaves nothing behind
            try:
                report = await server.run_blocking(dmarc.read_message, envelope.original_content, envelope.rcpt_tos[0])
            except dmarc.ReportError as exc:
                return exc.reply
        prepare = functools.partial(
            intake.prepare,
            envelope.original_content,
            mail_from="" if envelope.mail_from == NULL_SENDER else envelope.mail_from,
            rcpts=list(envelope.rcpt_tos),
            hostname=settings["HOSTNAME"],
            client_ip=server.peer_ip,
            client_helo=session.host_name or "",
            tls=server.tls_info,
            username=server.username,
            account_id=account.id if account else None,
            account_priority=account.priority if account else 3,
            direction="outbound" if account else "inbound",
            account_stream=account.stream if account else "transactional",
            account_track_opens=account.track_opens if account else None,
            account_track_clicks=account.track_clicks if account else None,
            list_send=envelope.list_send,
        )
        hold = envelope.policy_hold
        if account is not None and quotas.needs_send_check(account.id, bool(envelope.list_send)):
            verdict = await server.run_blocking(
                admission.send_verdict,
                settings,
                account.id,
                account.stream,
                envelope.original_content,
                envelope.list_send,
                hold,
            )
            if verdict is not None and verdict.action != sp.HOLD:
                return verdict.reply
            hold = verdict
        # Mail to a return path of ours (a later bounce, a complaint) is applied as it is stored.
        arrival = bounces.Arrival(settings, envelope.reported) if envelope.reported else None
        admit = functools.partial(
            admission.admit,
            settings,
            prepare,
            account_id=account.id if account else None,
            allowed=frozenset(server.allowed_senders),
            hold=hold,
            arrival=arrival,
        )

        store = arrival.store if arrival else None
        if envelope.unsubscribes:  # the unsubscribes are applied in the transaction that stores the mail
            store = engagement.storing_unsubscribes(envelope.unsubscribes, store or intake.store_many)
        if envelope.check:  # graded before the reply, then stored with its grade (docs/checker.md)
            facts = checker.Facts(
                envelope.original_content,
                mail_from=prepare.keywords["mail_from"],
                client_ip=server.peer_ip,
                helo=session.host_name or "",
                tls=server.tls_info,
            )
            # On the loop's default executor, not the sessions' (AUTH, lookups): grading reads no
            # database and may take seconds (SpamAssassin, DNS) that other sessions must not wait for.
            graded = await asyncio.get_running_loop().run_in_executor(None, checker.graded, settings, facts)
            store = checker.storing(envelope.check, facts, graded, store or intake.store_many)
        if report is not None:  # the report is stored in the transaction that stores its mail
            store = dmarc.storing(report)
        try:
            kind = {"store": store} if store else {}
            message_id = await self.ctx.committer.accept(admit, **kind)
        except message_bytes.MalformedMessage as exc:
            return replies.MALFORMED_MESSAGE.format(reason=exc)
        except (intake.Refused, intake.StorageError) as exc:
            return exc.reply
        return replies.ACCEPTED.format(id=message_id)
