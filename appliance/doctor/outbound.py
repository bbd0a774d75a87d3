"""Checks of the way out: port 25 to a remote MX, or the smarthost that relays instead."""

from __future__ import annotations

import functools
import smtplib

from .. import dns
from ..delivery import send
from ..delivery import smarthost as smarthost_mod
from ..delivery.route import order_mx
from ..delivery.route import route as delivery_route
from .base import FAIL, OK, TIMEOUT, WARN, Result, quit_quietly

PROBE_DOMAIN = "gmail.com"  # a domain whose MX answers on port 25 from anywhere that is not blocked
SMARTHOST_HINT = "ask your provider to open it, or set SMARTHOST to relay through your provider's server"


# -- outbound SMTP -----------------------------------------------------------------------------
def check_outbound(settings: dict, probe_domain: str = PROBE_DOMAIN, timeout: float = TIMEOUT) -> Result:
    """Open an SMTP session to the first MX of ``probe_domain``, or to the smarthost when one is set."""
    try:
        upstream = smarthost_mod.parse(settings["SMARTHOST"])
    except ValueError as exc:
        return Result("outbound", "SMARTHOST", FAIL, str(exc), "fix SMARTHOST")
    if upstream is not None:
        return check_smarthost(settings, upstream, timeout)
    return check_port25(settings, probe_domain, timeout)


def check_smarthost(settings: dict, upstream: smarthost_mod.Smarthost, timeout: float = TIMEOUT) -> Result:
    """Connect to the smarthost as delivery does (TLS verified, AUTH), then QUIT."""
    quick = {**settings, "CONNECT_TIMEOUT": timeout, "COMMAND_TIMEOUT": timeout}
    # The same session code as delivery: what passes here is what mail gets.
    session = send.Session(delivery_route(quick, "smarthost.invalid"), quick)
    try:
        session.open()
    except send.SessionError as exc:
        return Result(
            "outbound",
            str(upstream),
            FAIL,
            f"{upstream}: {exc.reply}",
            "check SMARTHOST (host, port, user, password)"
            + ("" if upstream.implicit_tls else ", that it offers STARTTLS")
            + ", and SMARTHOST_CA_FILE when it uses a private CA",
        )
    try:
        tls = session.peer.tls or "no TLS"
        login = f"AUTH as {upstream.username} accepted" if upstream.username else "no AUTH (no user in SMARTHOST)"
        return Result(
            "outbound", str(upstream), OK, f"{upstream} ({session.peer.ip}): {tls}, certificate verified, {login}"
        )
    finally:
        session.close()  # QUIT


def check_port25(settings: dict, probe_domain: str = PROBE_DOMAIN, timeout: float = TIMEOUT) -> Result:
    """Say whether this machine can reach remote MX hosts on DELIVERY_PORT (often blocked in clouds)."""
    port = int(settings["DELIVERY_PORT"])
    hostname = settings["HOSTNAME"]
    result = functools.partial(Result, "outbound", f"port {port} to {probe_domain}")
    dns_hint = "DNS does not answer: check DNS_SERVERS or this machine's resolver, or try another --probe-domain"
    try:
        records = dns.mx_records(settings, probe_domain, cached=False)
    except dns.NoSuchDomain:
        return result(WARN, f"could not check: {probe_domain} does not exist", "pick another --probe-domain")
    except dns.DnsError as exc:
        return result(WARN, f"could not check: the MX lookup of {probe_domain} failed: {exc}", dns_hint)
    hosts = order_mx(records) if records else [probe_domain]  # RFC 5321 §5.1
    host = hosts[0]
    if host in ("", "."):
        return result(WARN, f"could not check: {probe_domain} accepts no mail (null MX)", "pick another --probe-domain")
    try:
        addresses = dns.addresses(settings, host)
    except dns.DnsError as exc:
        return result(WARN, f"could not check: no address for {host}: {exc}", dns_hint)
    if not addresses:
        return result(WARN, f"could not check: {host} has no address", "pick another --probe-domain")
    address = addresses[0]
    where = f"{host} [{address}]:{port}"
    client = smtplib.SMTP(local_hostname=hostname, timeout=timeout)
    try:
        try:
            code, raw = client.connect(address, port)
        except TimeoutError:
            return result(
                FAIL,
                f"outbound port {port} seems blocked (many clouds block it): "
                f"no answer from {where} within {timeout:g} s",
                SMARTHOST_HINT,
            )
        except ConnectionRefusedError:
            return result(
                FAIL,
                f"outbound port {port} seems blocked (many clouds block it): {where} refused the connection",
                SMARTHOST_HINT,
            )
        except OSError as exc:
            return result(
                FAIL, f"cannot reach {where}: {exc.strerror or exc}", f"check this machine's network; {SMARTHOST_HINT}"
            )
        greeting = f"{code} {' '.join(raw.decode('utf-8', 'replace').split())}"
        if code != 220:
            return _refusal(result, code, f"{where} greets '{greeting}'")
        code, raw = client.ehlo(hostname)
        if code != 250:
            return _refusal(
                result,
                code,
                f"{where} answered EHLO {hostname} with {code} {' '.join(raw.decode('utf-8', 'replace').split())}",
            )
        return result(OK, f"port {port} is open: {where} greets '{greeting}' and accepts EHLO {hostname}")
    except (OSError, smtplib.SMTPException) as exc:
        return result(WARN, f"{where} broke off the session: {exc or type(exc).__name__}", "try again later")
    finally:
        quit_quietly(client)


def _refusal(result, code: int, detail: str) -> Result:
    # A 5xx at greeting or EHLO is the MX refusing this machine (often for its address's reputation
    # or a missing PTR); a 4xx asks to come back later.
    if code >= 500:
        return result(FAIL, detail, "the port is open but the MX refuses this machine: its reply says why")
    return result(WARN, detail, "the MX asks to try later: run the doctor again in a while")
