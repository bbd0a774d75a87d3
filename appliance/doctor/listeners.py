"""Checks of the appliance's own listeners: every SMTP port of SMTP_LISTEN and the dashboard."""

from __future__ import annotations

import functools
import http.client
import smtplib
import ssl

from ..listeners import Listener, parse_listeners
from .base import FAIL, OK, TIMEOUT, WARN, Result, quit_quietly


def _dial_address(host: str | None) -> str:
    """Where to connect for a listener bound to ``host``: loopback for a wildcard."""
    if not host or host in ("0.0.0.0", "*"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unverified_context() -> ssl.SSLContext:
    # This check asks whether TLS works at all; whether clients trust the certificate is the
    # certificate check's question.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def check_ports(settings: dict, timeout: float = TIMEOUT) -> list[Result]:
    """Connect to every SMTP listener of SMTP_LISTEN and to the dashboard of WEB_LISTEN (and WEB_TLS_LISTEN)."""
    try:
        listeners = parse_listeners(settings["SMTP_LISTEN"])
    except ValueError as exc:
        results = [Result("ports", "SMTP_LISTEN", FAIL, str(exc), "fix SMTP_LISTEN (e.g. 587/starttls,465/tls)")]
    else:
        results = [check_smtp_listener(listener, settings["HOSTNAME"], timeout) for listener in listeners]
    results.append(check_web(settings["WEB_LISTEN"], timeout))
    if settings.get("WEB_TLS_LISTEN"):
        results.append(check_web(settings["WEB_TLS_LISTEN"], timeout, tls=True))
    return results


def check_smtp_listener(listener: Listener, hostname: str, timeout: float = TIMEOUT) -> Result:
    """Read the listener's greeting (after the TLS handshake on an implicit-TLS port) and try STARTTLS."""
    address = _dial_address(listener.host)
    where = _hostport(address, listener.port)
    target = f"SMTP {listener}"
    implicit = listener.mode == "tls"
    result = functools.partial(Result, "ports", target)
    # local_hostname given: smtplib would otherwise ask DNS for this machine's FQDN (blocking).
    if implicit:
        client = smtplib.SMTP_SSL(local_hostname=hostname, timeout=timeout, context=_unverified_context())
    else:
        client = smtplib.SMTP(local_hostname=hostname, timeout=timeout)
    client._host = hostname  # the TLS server name (SNI); smtplib takes it from a constructor argument
    try:
        try:
            code, raw = client.connect(address, listener.port)
        except ConnectionRefusedError:
            return result(WARN, f"nothing listens on {where}", "is the appliance running? (systemctl status appliance)")
        except ssl.SSLError as exc:
            return result(
                FAIL,
                f"{where} answers, but the TLS handshake failed: {exc.reason or exc}",
                "check TLS_CERT/TLS_KEY and the appliance's log",
            )
        except smtplib.SMTPServerDisconnected:
            return result(
                FAIL,
                f"{where} closed the connection without a greeting",
                "another program may listen on this port: find it with `ss -ltnp`",
            )
        except TimeoutError:
            return result(
                WARN,
                f"{where} did not greet within {timeout:g} s",
                "the appliance may be overloaded, or another program listens there",
            )
        except OSError as exc:
            return result(WARN, f"could not connect to {where}: {exc}", "is the appliance running?")
        greeting = " ".join(raw.decode("utf-8", "replace").split())
        name = greeting.split(" ", 1)[0]
        if code != 220:
            return result(WARN, f"{where} answered {code} {greeting}", "see the appliance's log")
        if name.lower().rstrip(".") != hostname.lower().rstrip("."):
            return result(
                FAIL,
                f"{where} greets as {name or '(no name)'}, not {hostname}: '220 {greeting}'",
                "another program listens on this port, or the running appliance has another "
                "HOSTNAME: restart it after changing HOSTNAME",
            )
        detail = f"{where} greets '220 {greeting}'"
        if implicit:
            return result(OK, f"{detail} over {client.sock.version()}")
        return _check_starttls(client, where, detail, result)
    except (OSError, smtplib.SMTPException) as exc:
        return result(WARN, f"{where}: the session broke off: {exc or type(exc).__name__}", "see the appliance's log")
    finally:
        quit_quietly(client)


def _check_starttls(client: smtplib.SMTP, where: str, detail: str, result) -> Result:
    code, _ = client.ehlo()
    if code != 250:
        return result(FAIL, f"{detail}, but refused EHLO ({code})", "see the appliance's log")
    if not client.has_extn("starttls"):
        return result(FAIL, f"{detail}, but does not offer STARTTLS", "check TLS_CERT/TLS_KEY and the log")
    try:
        client.starttls(context=_unverified_context())
    except ssl.SSLError as exc:
        return result(FAIL, f"{detail}, but STARTTLS failed: {exc.reason or exc}", "check TLS_CERT/TLS_KEY and the log")
    except smtplib.SMTPResponseException as exc:
        return result(
            FAIL, f"{detail}, but STARTTLS was refused: {exc.smtp_code} {exc.smtp_error!r}", "see the appliance's log"
        )
    return result(OK, f"{detail}; STARTTLS gives {client.sock.version()}")


def check_web(spec: str, timeout: float = TIMEOUT, tls: bool = False) -> Result:
    """Ask the dashboard of WEB_LISTEN (or, with ``tls``, WEB_TLS_LISTEN: `HOST:PORT`) for its /health page."""
    setting, scheme = ("WEB_TLS_LISTEN", "https") if tls else ("WEB_LISTEN", "http")
    host, _, port = spec.rpartition(":")
    if not port.isdigit():
        return Result("ports", f"dashboard {spec}", FAIL, f"{setting}: cannot read {spec!r}", "set it as HOST:PORT")
    address = _dial_address(host.strip("[]"))
    where = _hostport(address, int(port))
    result = functools.partial(Result, "ports", f"dashboard {spec}")
    conn = (
        http.client.HTTPSConnection(address, int(port), timeout=timeout, context=_unverified_context())
        if tls
        else http.client.HTTPConnection(address, int(port), timeout=timeout)
    )
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        body = response.read(4096)
    except ConnectionRefusedError:
        return result(WARN, f"nothing listens on {where}", "is the appliance running? (systemctl status appliance)")
    except TimeoutError:
        return result(WARN, f"{where} did not answer within {timeout:g} s", "the appliance may be overloaded")
    except (OSError, http.client.HTTPException) as exc:
        return result(
            FAIL,
            f"{where} does not answer as a web server ({exc or type(exc).__name__})",
            "another program may listen on this port: find it with `ss -ltnp`",
        )
    finally:
        conn.close()
    if response.status == 200 and b'"ok"' in body:
        return result(OK, f"the dashboard answers on {scheme}://{where}/ (/health: ok)")
    if response.status >= 500:
        return result(
            FAIL,
            f"{scheme}://{where}/health answered {response.status}",
            "the dashboard cannot reach its database: see the appliance's log",
        )
    return result(
        FAIL,
        f"{scheme}://{where}/health answered {response.status}: this is not the appliance",
        f"another program listens on this port: find it with `ss -ltnp`, or change {setting}",
    )
