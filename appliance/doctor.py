"""`appliance doctor`: checks of the set-up, each saying in plain words what is wrong and what to do.

Every check is a function of the settings that returns Result objects and never raises: a missing
file, a refused connection or a silent DNS server is a result (FAIL or WARN), not a traceback.
The checks only read: they connect to the appliance's own listeners, ask DNS, and open (then QUIT)
one SMTP session to a remote MX or the smarthost.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.client
import ipaddress
import smtplib
import socket
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from . import dns
from .delivery import send
from .delivery import smarthost as smarthost_mod
from .delivery.route import order_mx
from .delivery.route import route as delivery_route
from .listeners import Listener, parse_listeners

OK, WARN, FAIL = "OK", "WARN", "FAIL"

PROBE_DOMAIN = "gmail.com"  # a domain whose MX answers on port 25 from anywhere that is not blocked
TIMEOUT = 5.0  # seconds per connection, SMTP reply and DNS lookup
EXPIRY_WARNING = dt.timedelta(days=30)

# DNSBLs that big receivers consult, free for low-volume queries. Barracuda's answers only
# resolvers it knows (registration is free); others are refused or get no answer (a WARN).
BLOCKLISTS = ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org")
DELIST_PAGES = {
    "zen.spamhaus.org": "https://check.spamhaus.org/",
    "bl.spamcop.net": "https://www.spamcop.net/bl.shtml",
    "b.barracudacentral.org": "https://www.barracudacentral.org/rbl/removal-request",
}
_LISTED = ipaddress.ip_network("127.0.0.0/24")  # RFC 5782 §2.1: 127.0.0.2 and up say "listed"
_REFUSED = ipaddress.ip_network("127.255.255.0/24")  # Spamhaus: error codes, not listings

# Documentation addresses (RFC 5737, RFC 3849): a UDP connect() to them picks the source address
# of the default route without sending a packet, and nothing is there to receive one anyway.
_ROUTE_PROBES = (("192.0.2.1", socket.AF_INET), ("2001:db8::1", socket.AF_INET6))

SMARTHOST_HINT = "ask your provider to open it, or set SMARTHOST to relay through your provider's server"


@dataclass(frozen=True)
class Result:
    check: str  # ports | certificate | dns | ptr | outbound | blocklists
    target: str  # what was checked: a listener, a file, a name, an address, a zone
    status: str  # OK | WARN | FAIL
    detail: str  # what was found
    hint: str = ""  # what to do about it ("" when there is nothing to do)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def run(settings: dict, ip: str | None = None, probe_domain: str = PROBE_DOMAIN,
        timeout: float = TIMEOUT) -> list[Result]:
    """Run every check; ``ip`` is the public outbound address when the admin gives it (--ip)."""
    # A doctor should answer within seconds, whatever DNS_TIMEOUT delivery is allowed.
    settings = {**settings, "DNS_TIMEOUT": min(float(settings["DNS_TIMEOUT"]), timeout)}
    explicit = ip is not None
    if ip is None:
        ip = outbound_ip()
    checks = [
        ("ports", settings["SMTP_LISTEN"], lambda: check_ports(settings, timeout)),
        ("certificate", settings["TLS_CERT"] or "generated", lambda: [check_certificate(settings)]),
        ("dns", settings["HOSTNAME"], lambda: [check_dns(settings)]),
        ("ptr", ip or "?", lambda: [check_ptr(settings, ip, explicit)]),
        ("outbound", probe_domain, lambda: [check_outbound(settings, probe_domain, timeout)]),
        ("blocklists", ip or "?", lambda: check_blocklists(settings, ip, explicit)),
    ]
    results: list[Result] = []
    for name, target, check in checks:
        try:
            results += check()
        except Exception as exc:  # a bug in one check must not hide the others' answers
            results.append(Result(name, target, WARN, f"could not check ({type(exc).__name__}: {exc})",
                                  "this is a bug in the doctor: please report it"))
    return results


# -- ports -------------------------------------------------------------------------------------
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
            return result(WARN, f"nothing listens on {where}",
                          "is the appliance running? (systemctl status appliance)")
        except ssl.SSLError as exc:
            return result(FAIL, f"{where} answers, but the TLS handshake failed: {exc.reason or exc}",
                          "check TLS_CERT/TLS_KEY and the appliance's log")
        except smtplib.SMTPServerDisconnected:
            return result(FAIL, f"{where} closed the connection without a greeting",
                          "another program may listen on this port: find it with `ss -ltnp`")
        except TimeoutError:
            return result(WARN, f"{where} did not greet within {timeout:g} s",
                          "the appliance may be overloaded, or another program listens there")
        except OSError as exc:
            return result(WARN, f"could not connect to {where}: {exc}", "is the appliance running?")
        greeting = " ".join(raw.decode("utf-8", "replace").split())
        name = greeting.split(" ", 1)[0]
        if code != 220:
            return result(WARN, f"{where} answered {code} {greeting}", "see the appliance's log")
        if name.lower().rstrip(".") != hostname.lower().rstrip("."):
            return result(FAIL, f"{where} greets as {name or '(no name)'}, not {hostname}: '220 {greeting}'",
                          "another program listens on this port, or the running appliance has another "
                          "HOSTNAME: restart it after changing HOSTNAME")
        detail = f"{where} greets '220 {greeting}'"
        if implicit:
            return result(OK, f"{detail} over {client.sock.version()}")
        return _check_starttls(client, where, detail, result)
    except (OSError, smtplib.SMTPException) as exc:
        return result(WARN, f"{where}: the session broke off: {exc or type(exc).__name__}", "see the appliance's log")
    finally:
        _quit(client)


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
        return result(FAIL, f"{detail}, but STARTTLS was refused: {exc.smtp_code} {exc.smtp_error!r}",
                      "see the appliance's log")
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
    conn = (http.client.HTTPSConnection(address, int(port), timeout=timeout, context=_unverified_context()) if tls
            else http.client.HTTPConnection(address, int(port), timeout=timeout))
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        body = response.read(4096)
    except ConnectionRefusedError:
        return result(WARN, f"nothing listens on {where}", "is the appliance running? (systemctl status appliance)")
    except TimeoutError:
        return result(WARN, f"{where} did not answer within {timeout:g} s", "the appliance may be overloaded")
    except (OSError, http.client.HTTPException) as exc:
        return result(FAIL, f"{where} does not answer as a web server ({exc or type(exc).__name__})",
                      "another program may listen on this port: find it with `ss -ltnp`")
    finally:
        conn.close()
    if response.status == 200 and b'"ok"' in body:
        return result(OK, f"the dashboard answers on {scheme}://{where}/ (/health: ok)")
    if response.status >= 500:
        return result(FAIL, f"{scheme}://{where}/health answered {response.status}",
                      "the dashboard cannot reach its database: see the appliance's log")
    return result(FAIL, f"{scheme}://{where}/health answered {response.status}: this is not the appliance",
                  f"another program listens on this port: find it with `ss -ltnp`, or change {setting}")


# -- certificate -------------------------------------------------------------------------------
def _certificate_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []  # clients ignore the CN (RFC 6125 §6.4.4): without a SAN no name is valid
    return san.get_values_for_type(x509.DNSName) + [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def name_matches(hostname: str, pattern: str) -> bool:
    """Tell whether a certificate name covers ``hostname`` (a wildcard covers one label, RFC 6125 §6.4.3)."""
    hostname, pattern = hostname.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        first, _, rest = hostname.partition(".")
        return bool(first) and rest == pattern[2:]
    return hostname == pattern


def _issuer(cert: x509.Certificate) -> str:
    names = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.issuer.rfc4514_string()


def _key_matches(cert: x509.Certificate, key_path: Path) -> bool | None:
    """Tell whether the private key belongs to the certificate; None when the key cannot be read."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def check_certificate(settings: dict, now: dt.datetime | None = None) -> Result:
    """Check the SMTP certificate: present, in date, naming HOSTNAME, matching its key."""
    now = now or dt.datetime.now(dt.UTC)
    hostname = settings["HOSTNAME"]
    tls_dir = Path(settings["DATA_DIR"]) / "tls"
    generated = not (settings["TLS_CERT"] or settings["TLS_KEY"])
    if not generated and not (settings["TLS_CERT"] and settings["TLS_KEY"]):
        return Result("certificate", settings["TLS_CERT"] or settings["TLS_KEY"], FAIL,
                      "TLS_CERT and TLS_KEY must be set together", "set both, or neither to use a generated one")
    cert_path = tls_dir / "server.pem" if generated else Path(settings["TLS_CERT"])
    key_path = tls_dir / "server.key" if generated else Path(settings["TLS_KEY"])

    def result(status: str, detail: str, hint: str = "") -> Result:
        return Result("certificate", str(cert_path), status, f"{cert_path}: {detail}", hint)

    if generated and not cert_path.exists():
        return result(FAIL, "not generated yet: start the appliance once",
                      f"`appliance serve` (or the service) makes it in {tls_dir}")
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    except OSError as exc:
        return result(FAIL, f"cannot read it: {exc.strerror or exc}", "check TLS_CERT and the file's permissions")
    except ValueError:
        return result(FAIL, "not a PEM certificate", "TLS_CERT must be a PEM file (-----BEGIN CERTIFICATE-----)")
    renew = ("restart the appliance: it makes a new one at start" if generated
             else "renew it (e.g. `certbot renew`) and restart the appliance")
    until = cert.not_valid_after_utc
    if until <= now:
        return result(FAIL, f"expired on {until:%Y-%m-%d %H:%M} UTC", renew)
    if cert.not_valid_before_utc > now:
        return result(FAIL, f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                      "check this machine's clock (timedatectl)")
    names = _certificate_names(cert)
    if not any(name_matches(hostname, n) for n in names):
        return result(FAIL, f"not valid for {hostname}: it names {', '.join(names) or 'nothing (no subjectAltName)'}",
                      "restart the appliance: it makes one for HOSTNAME" if generated
                      else f"get a certificate for {hostname}, or set HOSTNAME to a name it covers")
    if _key_matches(cert, key_path) is False:
        return result(FAIL, f"the key {key_path} does not belong to this certificate",
                      "set TLS_KEY to the certificate's own key" if not generated
                      else f"delete {cert_path} and restart the appliance")
    if until - now < EXPIRY_WARNING:
        return result(WARN, f"expires in {(until - now).days} days, on {until:%Y-%m-%d}", renew)
    detail = f"valid for {hostname} until {until:%Y-%m-%d} (issued by {_issuer(cert)})"
    if generated:
        detail += (f"; clients must trust {tls_dir / 'ca.pem'} (or set TLS_CERT/TLS_KEY to a certificate"
                   " from a public CA)")
    return result(OK, detail)


# -- DNS of HOSTNAME ---------------------------------------------------------------------------
def check_dns(settings: dict) -> Result:
    """Check that HOSTNAME is a public name with an address (A or AAAA)."""
    hostname = settings["HOSTNAME"]
    if "." not in hostname.strip(".") or hostname.lower().rstrip(".").endswith("localhost"):
        return Result("dns", hostname, FAIL, f"HOSTNAME {hostname!r} is not a public name",
                      "set HOSTNAME to the name the appliance is known by, e.g. mail.example.com")
    try:
        found = dns.addresses(settings, hostname)
    except dns.NoSuchDomain:
        found = []
    except dns.DnsError as exc:
        return Result("dns", hostname, WARN, f"could not check: {exc}", "is DNS working here? (DNS_SERVERS)")
    if not found:
        return Result("dns", hostname, FAIL, f"{hostname} has no A or AAAA record",
                      f"publish an A record for {hostname} with the appliance's public address")
    return Result("dns", hostname, OK, f"{hostname} resolves to {', '.join(found)}")


# -- the outbound address: PTR and blocklists ---------------------------------------------------
def outbound_ip() -> str | None:
    """Return the source address the kernel picks towards the internet; None without a route."""
    for probe, family in _ROUTE_PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 53))  # UDP: sets the route and source address, sends nothing
                return sock.getsockname()[0]
        except OSError:
            continue
    return None


def is_public(ip: str) -> bool:
    """Tell whether an address is routable on the internet (not private, loopback, CGNAT, …)."""
    return ipaddress.ip_address(ip).is_global


def _same_address(a: str, b: str) -> bool:
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)


def _no_public_address(check: str, ip: str | None) -> Result | None:
    if ip is None:
        return Result(check, "?", WARN, "could not find the outbound address (no route to the internet?)",
                      "pass --ip with the public address mail leaves from")
    return None


def check_ptr(settings: dict, ip: str | None, explicit: bool = False) -> Result:
    """Check forward-confirmed reverse DNS: ip → PTR HOSTNAME → ip."""
    if (missing := _no_public_address("ptr", ip)) is not None:
        return missing
    hostname = settings["HOSTNAME"]
    result = functools.partial(Result, "ptr", ip)
    if not explicit and not is_public(ip):
        return result(WARN, f"the outbound address {ip} is not public, so its PTR cannot be checked",
                      "behind NAT? pass --ip with the public address")
    set_ptr = f"ask whoever owns {ip} (your hosting provider) to set its reverse DNS (PTR) to {hostname}"
    try:
        names = dns.reverse_names(settings, ip)
    except dns.NoSuchDomain:
        names = []
    except dns.DnsError as exc:
        return result(WARN, f"could not check: {exc}", "is DNS working here? (DNS_SERVERS)")
    if not names:
        return result(FAIL, f"{ip} has no PTR record; it should be {hostname}", set_ptr)
    if not any(n.lower().rstrip(".") == hostname.lower().rstrip(".") for n in names):
        return result(FAIL, f"{ip} has PTR {', '.join(names)}; it should be {hostname}", set_ptr)
    try:
        forward = dns.addresses(settings, hostname)
    except dns.NoSuchDomain:
        forward = []
    except dns.DnsError as exc:
        return result(WARN, f"{ip} has PTR {hostname}, but could not check that {hostname} resolves back: {exc}",
                      "is DNS working here? (DNS_SERVERS)")
    if not any(_same_address(ip, a) for a in forward):
        return result(FAIL, f"{ip} has PTR {hostname}, but {hostname} resolves to "
                      f"{', '.join(forward) or 'nothing'}, not {ip}",
                      f"publish an {'AAAA' if ':' in ip else 'A'} record {hostname} -> {ip}")
    return result(OK, f"{ip} has PTR {hostname}, which resolves back to {ip}")


def dnsbl_name(ip: str, zone: str) -> str:
    """Return the name to look up for ``ip`` in a DNSBL zone (RFC 5782 §2.1 and §2.4)."""
    reverse = ipaddress.ip_address(ip).reverse_pointer  # 4.3.2.1.in-addr.arpa, or nibbles.ip6.arpa
    return f"{reverse.rsplit('.', 2)[0]}.{zone}"


def check_blocklists(settings: dict, ip: str | None, explicit: bool = False) -> list[Result]:
    """Look the outbound address up in each DNSBL of BLOCKLISTS."""
    if (missing := _no_public_address("blocklists", ip)) is not None:
        return [missing]
    if not explicit and not is_public(ip):
        return [Result("blocklists", ip, OK, "private address, not checked",
                       "pass --ip with the public address to check it")]
    return [_check_blocklist(settings, ip, zone) for zone in BLOCKLISTS]


def _check_blocklist(settings: dict, ip: str, zone: str) -> Result:
    result = functools.partial(Result, "blocklists", zone)
    try:
        answers = dns.ipv4_addresses(settings, dnsbl_name(ip, zone))
    except dns.NoSuchDomain:
        answers = []
    except dns.DnsError as exc:
        return result(WARN, f"could not check {zone}: {exc}", "is DNS working here? (DNS_SERVERS)")
    if not answers:
        return result(OK, f"{ip} is not listed on {zone}")
    found = [ipaddress.ip_address(a) for a in answers]
    shown = ", ".join(answers)
    if any(a in _REFUSED for a in found):
        return result(WARN, f"could not check {zone}: the resolver is refused ({shown})",
                      "the list refuses queries through public resolvers (8.8.8.8, 1.1.1.1, …): "
                      "use a local resolver such as unbound (DNS_SERVERS)")
    if any(a in _LISTED and int(a) & 0xFF not in (0, 1, 255) for a in found):
        return result(FAIL, f"{ip} is listed on {zone} ({shown})",
                      f"see why and ask for removal at {DELIST_PAGES.get(zone, zone)}")
    return result(WARN, f"could not check {zone}: unexpected answer {shown}", "")


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
        return Result("outbound", str(upstream), FAIL, f"{upstream}: {exc.reply}",
                      "check SMARTHOST (host, port, user, password)"
                      + ("" if upstream.implicit_tls else ", that it offers STARTTLS")
                      + ", and SMARTHOST_CA_FILE when it uses a private CA")
    try:
        tls = session.peer.tls or "no TLS"
        login = f"AUTH as {upstream.username} accepted" if upstream.username else "no AUTH (no user in SMARTHOST)"
        return Result("outbound", str(upstream), OK,
                      f"{upstream} ({session.peer.ip}): {tls}, certificate verified, {login}")
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
            return result(FAIL, f"outbound port {port} seems blocked (many clouds block it): "
                          f"no answer from {where} within {timeout:g} s", SMARTHOST_HINT)
        except ConnectionRefusedError:
            return result(FAIL, f"outbound port {port} seems blocked (many clouds block it): "
                          f"{where} refused the connection", SMARTHOST_HINT)
        except OSError as exc:
            return result(FAIL, f"cannot reach {where}: {exc.strerror or exc}",
                          f"check this machine's network; {SMARTHOST_HINT}")
        greeting = f"{code} {' '.join(raw.decode('utf-8', 'replace').split())}"
        if code != 220:
            return _refusal(result, code, f"{where} greets '{greeting}'")
        code, raw = client.ehlo(hostname)
        if code != 250:
            return _refusal(result, code, f"{where} answered EHLO {hostname} with {code} "
                            f"{' '.join(raw.decode('utf-8', 'replace').split())}")
        return result(OK, f"port {port} is open: {where} greets '{greeting}' and accepts EHLO {hostname}")
    except (OSError, smtplib.SMTPException) as exc:
        return result(WARN, f"{where} broke off the session: {exc or type(exc).__name__}", "try again later")
    finally:
        _quit(client)


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


def _refusal(result, code: int, detail: str) -> Result:
    # A 5xx at greeting or EHLO is the MX refusing this machine (often for its address's reputation
    # or a missing PTR); a 4xx asks to come back later.
    if code >= 500:
        return result(FAIL, detail, "the port is open but the MX refuses this machine: its reply says why")
    return result(WARN, detail, "the MX asks to try later: run the doctor again in a while")


def summary(results: list[Result]) -> dict[str, int]:
    """Count the results per status."""
    return {status: sum(r.status == status for r in results) for status in (OK, WARN, FAIL)}
