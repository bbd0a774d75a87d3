"""ACME (RFC 8555): a certificate for HOSTNAME from ACME_DIRECTORY, proved by HTTP-01, renewed at
two thirds of its lifetime, with the `acme` library (certbot's).

Everything lives in DATA_DIR/acme:
- ``account.key``: the account's private key (0600), made at the first order;
- ``account.json``: the account's URL at the CA, for `appliance tls status`;
- ``certificate.pem``: the chain, then its private key (0600), replaced in one rename; the listeners'
  tls.LiveContext serves it from then on, without a restart (until the first issuance it holds the
  generated local-CA pair);
- ``state.json``: the last attempt, the last error, the failures in a row and when to try again;
- ``challenges/TOKEN``: the answers the CA fetches over plain HTTP while an order is open, written by
  whichever process orders (the appliance or `appliance tls renew`) and served by ACME_HTTP_LISTEN;
- ``lock``: held while an order runs, so that two processes never order at once.

A failed order leaves the certificate served as it was, raises the ``certificate-renewal-failing``
alert, and is tried again after a delay that doubles from BACKOFF_FIRST up to BACKOFF_MAX, or later
when the CA answered with a rate limit (its Retry-After, else RATE_LIMIT_WAIT).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import re
import threading
import wsgiref.util
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from . import alerts, clock, db, tls
from .models import CRITICAL, WARNING

log = logging.getLogger(__name__)

RENEW_AT = 2 / 3  # share of a certificate's lifetime after which it is renewed
CHECK_INTERVAL = 60.0  # seconds between two looks at the certificate (a few small files read)
BACKOFF_FIRST = 300  # seconds before the first retry of a failed order; doubles with each failure
BACKOFF_MAX = 24 * 3600
RATE_LIMIT_WAIT = 3600  # seconds to wait after a rate-limit answer that gave no Retry-After
ORDER_SECONDS = 90  # how long an order may take, challenges and issuance included
URGENT = dt.timedelta(days=14)  # a failure this close to the expiry (or with no ACME certificate) is critical
ALERT = "certificate-renewal-failing"
CHALLENGE_PATH = "/.well-known/acme-challenge/"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


class AcmeError(Exception):
    """An order that did not give a certificate, with a sentence that says why and what to do."""

    def __init__(self, sentence: str, retry_after: dt.datetime | None = None):
        super().__init__(sentence)
        self.retry_after = retry_after  # the CA's rate limit: not before this (naive UTC)


@dataclass
class State:
    last_attempt: str | None = None  # ISO times, naive UTC, exactly as clock.now() gave them
    last_success: str | None = None
    last_error: str = ""
    failures: int = 0  # failed orders in a row
    retry_at: str | None = None  # no automatic order before this


def _at(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="seconds")


def _shown(text: str | None) -> str | None:
    """A time of state.json (kept to the microsecond) as status shows it, to the second."""
    return _iso(_at(text)) if text else None


def _path(settings: dict, name: str) -> Path:
    return tls.acme_dir(settings) / name


def load_state(settings: dict) -> State:
    try:
        return State(**json.loads(_path(settings, "state.json").read_text()))
    except (OSError, ValueError, TypeError):  # none yet, or unreadable: start afresh
        return State()


def _save_state(settings: dict, state: State) -> None:
    tls.write_atomically(_path(settings, "state.json"), json.dumps(asdict(state), indent=2).encode(), 0o644)


# -- the certificate served ----------------------------------------------------------------------
def _naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def served(settings: dict) -> x509.Certificate | None:
    """The leaf certificate in DATA_DIR/acme/certificate.pem (None: missing or unreadable)."""
    try:
        return x509.load_pem_x509_certificate(tls.acme_pair(settings).read_bytes())
    except (OSError, ValueError):
        return None


def names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName) + [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def issuer(cert: x509.Certificate) -> str:
    common = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else cert.issuer.rfc4514_string()


def renewal_time(cert: x509.Certificate) -> dt.datetime:
    """When ``cert`` is due: two thirds into its lifetime (naive UTC)."""
    start, end = _naive(cert.not_valid_before_utc), _naive(cert.not_valid_after_utc)
    return start + (end - start) * RENEW_AT


def due(settings: dict, now: dt.datetime) -> str | None:
    """Why a new certificate is needed now (None: it is not)."""
    cert = served(settings)
    if cert is None:
        return "no certificate yet"
    if tls.issued_by_local_ca(settings, cert):
        return "no ACME certificate yet"
    if settings["HOSTNAME"].lower() not in (n.lower() for n in names(cert)):
        return f"the certificate does not name HOSTNAME {settings['HOSTNAME']}"
    if now >= renewal_time(cert):
        return "two thirds of its lifetime have passed"
    return None


# -- ordering --------------------------------------------------------------------------------------
def _account_key(settings: dict) -> jose.JWKRSA:
    """The account's key, made (0600) the first time."""
    path = _path(settings, "account.key")
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tls.write_atomically(path, tls.pem_key(key))
    return jose.JWKRSA(key=serialization.load_pem_private_key(path.read_bytes(), password=None))


class Busy(AcmeError):
    """Another process (or thread) is ordering right now: nothing was tried, nothing is recorded."""


@contextmanager
def _order_lock(settings: dict):
    """Hold DATA_DIR/acme/lock for one order; Busy when another one holds it."""
    (tls.acme_dir(settings) / "challenges").mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(_path(settings, "lock"), "a") as fh:  # each open is its own lock, between threads too
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy("another process is ordering a certificate right now: try again in a minute") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _retry_after(response: requests.Response | None) -> dt.datetime | None:
    """The time a Retry-After header names (seconds, or an HTTP date), as naive UTC."""
    value = response.headers.get("Retry-After", "") if response is not None else ""
    if value.strip().isdigit():
        return clock.now() + dt.timedelta(seconds=int(value))
    try:
        return _naive(parsedate_to_datetime(value))
    except (TypeError, ValueError):
        return None


def _network(settings: dict, key: jose.JWKRSA) -> tuple[client.ClientNetwork, list]:
    """The CA's HTTP client, verifying its certificate (ACME_CA_FILE, or certifi's CAs), and a list
    that keeps the last error response (for its Retry-After)."""
    net = client.ClientNetwork(
        key,
        user_agent=f"appliance-smtp-relay ({settings['HOSTNAME']})",
        verify_ssl=settings["ACME_CA_FILE"] or True,
        timeout=30,
    )
    failed: list[requests.Response] = []

    def keep_failures(response: requests.Response, *args, **kwargs) -> None:
        if response.status_code >= 400:
            failed[:] = [response]

    net.session.hooks["response"].append(keep_failures)
    return net, failed


def _register(acme: client.ClientV2, settings: dict) -> str:
    """Create the account (or find the one of this key); return its URL."""
    registration = messages.NewRegistration.from_data(email=settings["ACME_EMAIL"], terms_of_service_agreed=True)
    try:
        return acme.new_account(registration).uri
    except errors.ConflictError as exc:  # this key has an account already: use it
        acme.net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        return exc.location


def _answer(acme: client.ClientV2, key: jose.JWKRSA, order, tokens: Path) -> list[Path]:
    """Put the HTTP-01 answer of every pending authorization where ACME_HTTP_LISTEN serves it and
    tell the CA to fetch it; return the files written."""
    written = []
    for authz in order.authorizations:
        if authz.body.status == messages.STATUS_VALID:  # the CA still holds an earlier proof
            continue
        offered = [c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)]
        if not offered:
            raise AcmeError(
                f"the CA offers no HTTP-01 challenge for {authz.body.identifier.value} "
                "(the appliance answers HTTP-01 only)"
            )
        response, validation = offered[0].response_and_validation(key)
        path = tokens / offered[0].chall.encode("token")
        tls.write_atomically(path, validation.encode(), 0o644)
        written.append(path)
        acme.answer_challenge(offered[0], response)
    return written


def obtain(settings: dict) -> x509.Certificate:
    """Order a certificate for HOSTNAME now and put it (chain and a new key) in DATA_DIR/acme;
    return it. Raises AcmeError (the certificate served stays as it was). The caller holds the lock."""
    acme_dir = tls.acme_dir(settings)
    tokens = acme_dir / "challenges"
    key = _account_key(settings)
    net, failed = _network(settings, key)
    written: list[Path] = []
    try:
        acme = client.ClientV2(client.ClientV2.get_directory(settings["ACME_DIRECTORY"], net), net)
        account = _register(acme, settings)
        tls.write_atomically(
            acme_dir / "account.json",
            json.dumps({"directory": settings["ACME_DIRECTORY"], "account": account}, indent=2).encode(),
            0o644,
        )
        cert_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # RSA as tls._key: old clients
        key_pem = tls.pem_key(cert_key)
        order = acme.new_order(crypto_util.make_csr(key_pem, [settings["HOSTNAME"]]))
        written = _answer(acme, key, order, tokens)
        deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_SECONDS)  # the library's own clock
        order = acme.poll_and_finalize(order, deadline)
    except AcmeError:
        raise
    except Exception as exc:
        raise _explain(settings, exc, failed[-1] if failed else None) from exc
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    chain = x509.load_pem_x509_certificates(order.fullchain_pem.encode())
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    tls.write_atomically(tls.acme_pair(settings), pem + key_pem)
    return chain[0]


def _explain(settings: dict, exc: Exception, response: requests.Response | None) -> AcmeError:
    """Say what went wrong in an order, and what to change."""
    directory, hostname = settings["ACME_DIRECTORY"], settings["HOSTNAME"]
    if isinstance(exc, errors.ValidationError):
        details = "; ".join(
            str(c.error.detail or c.error)
            for authz in exc.failed_authzrs
            for c in authz.body.challenges
            if c.error is not None
        )
        return AcmeError(
            f"the CA could not fetch http://{hostname}{CHALLENGE_PATH}…: {details}. HOSTNAME must resolve to this "
            f"machine and port 80 there must reach ACME_HTTP_LISTEN ({settings['ACME_HTTP_LISTEN']})"
        )
    if isinstance(exc, messages.Error | errors.ClientError):
        status = response.status_code if response is not None else None
        retry = _retry_after(response)
        if isinstance(exc, messages.Error):
            said = exc.detail or str(exc)
        else:
            said = f"HTTP {status}" if status is not None and status >= 400 else str(exc)
        if status == 429 or (isinstance(exc, messages.Error) and exc.code == "rateLimited"):
            retry = retry or clock.now() + dt.timedelta(seconds=RATE_LIMIT_WAIT)
            return AcmeError(f"the CA's rate limit: {said} (not before {retry:%Y-%m-%d %H:%M} UTC)", retry)
        return AcmeError(f"the CA refused the order: {said}", retry)
    if isinstance(exc, errors.IssuanceError):
        return AcmeError(f"the CA did not issue the certificate: {exc.error.detail or exc.error}")
    if isinstance(exc, errors.TimeoutError):
        return AcmeError(f"the CA did not finish the order within {ORDER_SECONDS} s")
    if isinstance(exc, requests.exceptions.SSLError):
        return AcmeError(
            f"the certificate of {directory} is not trusted ({exc}): for a private ACME server, set ACME_CA_FILE"
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return AcmeError(f"cannot reach ACME_DIRECTORY {directory}: {exc}")
    return AcmeError(f"the order failed: {exc}")


# -- renewing, with the state kept -------------------------------------------------------------------
def backoff(failures: int) -> dt.timedelta:
    """The wait after ``failures`` failed orders in a row: BACKOFF_FIRST, doubling, at most BACKOFF_MAX."""
    return dt.timedelta(seconds=min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, failures - 1)))


def renew(settings: dict, reason: str = "asked for") -> x509.Certificate:
    """Order a certificate now (whatever the backoff), record the outcome, alert on failure;
    return the new certificate or raise AcmeError."""
    with _order_lock(settings):
        return _renew_locked(settings, reason)


def _renew_locked(settings: dict, reason: str) -> x509.Certificate:
    now = clock.now()
    state = load_state(settings)
    state.last_attempt = now.isoformat()
    log.info(
        "ACME: ordering a certificate for %s from %s (%s)", settings["HOSTNAME"], settings["ACME_DIRECTORY"], reason
    )
    try:
        cert = obtain(settings)
    except AcmeError as exc:
        state.failures += 1
        state.last_error = str(exc)
        retry = now + backoff(state.failures)
        if exc.retry_after is not None:
            retry = max(retry, exc.retry_after)
        state.retry_at = retry.isoformat()
        _save_state(settings, state)
        log.error("ACME: no certificate for %s: %s; next try after %s", settings["HOSTNAME"], exc, _iso(retry))
        _alert(settings, str(exc), retry)
        raise
    state.failures, state.last_error, state.retry_at, state.last_success = 0, "", None, now.isoformat()
    _save_state(settings, state)
    log.info(
        "ACME: certificate for %s from %s, serial %x, valid until %s",
        settings["HOSTNAME"],
        issuer(cert),
        cert.serial_number,
        f"{cert.not_valid_after_utc:%Y-%m-%d}",
    )
    return cert


def _alert(settings: dict, error: str, retry: dt.datetime) -> None:
    cert = served(settings)
    kept = cert is not None and not tls.issued_by_local_ca(settings, cert)
    if kept:
        until = _naive(cert.not_valid_after_utc)
        served_text = f"The certificate served until now stays in use; it expires {until:%Y-%m-%d %H:%M} UTC."
        urgent = until - clock.now() < URGENT
    else:
        served_text = "Until one is issued, clients get the local-CA certificate, which they do not trust."
        urgent = True
    text = (
        f"{error}. {served_text} Next try after {retry:%Y-%m-%d %H:%M} UTC, or now with `appliance tls renew`; "
        "`appliance tls status` says where it stands."
    )
    try:
        db.database.connect(reuse_if_open=True)
        alerts.raise_alert(settings, ALERT, settings["HOSTNAME"], text, CRITICAL if urgent else WARNING)
    except Exception:  # the failure is in state.json and the log: the alert must not hide it
        log.exception("ACME: could not raise the %s alert", ALERT)


def check(settings: dict) -> x509.Certificate | None:
    """The periodic look: order a certificate when one is due and no backoff holds; return the new
    certificate, or None (not due, backing off, or failed: recorded and alerted)."""
    now = clock.now()
    reason = due(settings, now)
    if reason is None:
        return None
    retry_at = _at(load_state(settings).retry_at)
    if retry_at is not None and now < retry_at:
        return None
    try:
        return renew(settings, reason)
    except AcmeError:
        return None


class Renewer:
    """The periodic look (check) every CHECK_INTERVAL seconds, the first one at once; a thread
    started by `serve` in the processes that serve TLS (where the certificate file is)."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.stopping = threading.Event()

    def run(self) -> None:
        while True:
            try:
                check(self.settings)
            except Exception:  # the next look tries again; a crash here would stop every renewal
                log.exception("ACME: the periodic certificate check failed")
            if self.stopping.wait(CHECK_INTERVAL):
                return


# -- where it stands ---------------------------------------------------------------------------------
def status(settings: dict) -> dict:
    """The certificate served and, with ACME, where its renewal stands (`appliance tls status`)."""
    acme = bool(settings["ACME_EMAIL"])
    if acme:
        path = tls.acme_pair(settings)
    elif settings["TLS_CERT"]:
        path = Path(settings["TLS_CERT"])
    else:
        path = Path(settings["DATA_DIR"]) / "tls" / "server.pem"
    info: dict = {"acme": acme, "path": str(path)}
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        cert = None
        info["error"] = f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    if cert is None:
        info["source"] = "none"
    elif acme:
        info["source"] = "local-ca" if tls.issued_by_local_ca(settings, cert) else "acme"
    else:
        info["source"] = "supplied" if settings["TLS_CERT"] else "local-ca"
    if cert is not None:
        info.update(
            names=names(cert),
            issuer=issuer(cert),
            serial=f"{cert.serial_number:x}",
            not_before=_iso(_naive(cert.not_valid_before_utc)),
            not_after=_iso(_naive(cert.not_valid_after_utc)),
        )
    if not acme:
        info["next_renewal"] = None
        return info
    state = load_state(settings)
    now = clock.now()
    reason = due(settings, now)
    retry_at = _at(state.retry_at)
    if reason is None:
        next_renewal = renewal_time(cert)
    else:
        next_renewal = retry_at if retry_at is not None and retry_at > now else now
    try:
        account = json.loads(_path(settings, "account.json").read_text()).get("account")
    except (OSError, ValueError):
        account = None
    info.update(
        directory=settings["ACME_DIRECTORY"],
        email=settings["ACME_EMAIL"],
        account=account,
        due=reason,
        next_renewal=_iso(next_renewal),
        last_attempt=_shown(state.last_attempt),
        last_success=_shown(state.last_success),
        last_error=state.last_error or None,
        failures=state.failures,
    )
    return info


# -- the plain-HTTP listener (ACME_HTTP_LISTEN) -------------------------------------------------------
def https_port(settings: dict) -> int | None:
    """The port of the HTTPS dashboard (None: WEB_TLS_LISTEN is empty)."""
    spec = settings["WEB_TLS_LISTEN"]
    return int(spec.rpartition(":")[2]) if spec else None


def challenge_app(settings: dict):
    """The WSGI app of ACME_HTTP_LISTEN: the answers in DATA_DIR/acme/challenges at
    /.well-known/acme-challenge/TOKEN, a 308 to the HTTPS dashboard at HOSTNAME for everything else
    (404 when there is no HTTPS dashboard)."""
    tokens = tls.acme_dir(settings) / "challenges"

    def reply(start_response, status: str, body: bytes, *headers: tuple[str, str]):
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *headers])
        return [body]

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(CHALLENGE_PATH):
            token = path.removeprefix(CHALLENGE_PATH)
            try:
                body = (tokens / token).read_bytes() if _TOKEN.fullmatch(token) else None
            except OSError:
                body = None
            if body is None:
                return reply(start_response, "404 Not Found", b"no such ACME challenge\n")
            return reply(start_response, "200 OK", body)
        port = https_port(settings)
        if port is None:
            return reply(start_response, "404 Not Found", b"no HTTPS dashboard here (WEB_TLS_LISTEN is empty)\n")
        asked = urlsplit(wsgiref.util.request_uri(environ, include_query=True))
        where = settings["HOSTNAME"] + ("" if port == 443 else f":{port}")
        target = f"https://{where}{asked.path or '/'}" + (f"?{asked.query}" if asked.query else "")
        return reply(start_response, "308 Permanent Redirect", f"{target}\n".encode(), ("Location", target))

    return app


def listen_spec(settings: dict) -> str:
    """ACME_HTTP_LISTEN as waitress's `listen` (`:80` means every address)."""
    host, _, port = settings["ACME_HTTP_LISTEN"].rpartition(":")
    return f"{host or '*'}:{port}"


def enabled(settings: dict) -> bool:
    return bool(settings["ACME_EMAIL"])
