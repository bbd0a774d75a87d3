"""The check of the TLS certificate: its names, its issuer, its key and its expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from .. import certificates, tls
from .base import FAIL, OK, WARN, Result

EXPIRY_WARNING = dt.timedelta(days=30)


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
        return Result(
            "certificate",
            settings["TLS_CERT"] or settings["TLS_KEY"],
            FAIL,
            "TLS_CERT and TLS_KEY must be set together",
            "set both, or neither to use a generated one",
        )
    cert_path = tls_dir / "server.pem" if generated else Path(settings["TLS_CERT"])
    key_path = tls_dir / "server.key" if generated else Path(settings["TLS_KEY"])
    acme = bool(settings["ACME_EMAIL"])
    if acme:  # the chain and its key in one file, that ACME replaces (appliance/certificates.py)
        cert_path = key_path = tls.acme_pair(settings)

    def result(status: str, detail: str, hint: str = "") -> Result:
        return Result("certificate", str(cert_path), status, f"{cert_path}: {detail}", hint)

    if generated and not cert_path.exists():
        return result(
            FAIL,
            "not generated yet: start the appliance once",
            f"`appliance serve` (or the service) makes it in {tls_dir}",
        )
    if acme:
        return _check_acme(settings, now, result)
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    except OSError as exc:
        return result(FAIL, f"cannot read it: {exc.strerror or exc}", "check TLS_CERT and the file's permissions")
    except ValueError:
        return result(FAIL, "not a PEM certificate", "TLS_CERT must be a PEM file (-----BEGIN CERTIFICATE-----)")
    renew = (
        "restart the appliance: it makes a new one at start"
        if generated
        else "renew it (e.g. `certbot renew`) and restart the appliance"
    )
    until = cert.not_valid_after_utc
    if until <= now:
        return result(FAIL, f"expired on {until:%Y-%m-%d %H:%M} UTC", renew)
    if cert.not_valid_before_utc > now:
        return result(
            FAIL,
            f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "check this machine's clock (timedatectl)",
        )
    names = _certificate_names(cert)
    if not any(name_matches(hostname, n) for n in names):
        return result(
            FAIL,
            f"not valid for {hostname}: it names {', '.join(names) or 'nothing (no subjectAltName)'}",
            "restart the appliance: it makes one for HOSTNAME"
            if generated
            else f"get a certificate for {hostname}, or set HOSTNAME to a name it covers",
        )
    if _key_matches(cert, key_path) is False:
        return result(
            FAIL,
            f"the key {key_path} does not belong to this certificate",
            "set TLS_KEY to the certificate's own key"
            if not generated
            else f"delete {cert_path} and restart the appliance",
        )
    if until - now < EXPIRY_WARNING:
        return result(WARN, f"expires in {(until - now).days} days, on {until:%Y-%m-%d}", renew)
    detail = f"valid for {hostname} until {until:%Y-%m-%d} (issued by {_issuer(cert)})"
    if generated:
        detail += (
            f"; clients must trust {tls_dir / 'ca.pem'} (or set TLS_CERT/TLS_KEY to a certificate from a public CA)"
        )
    return result(OK, detail)


def _check_acme(settings: dict, now: dt.datetime, result) -> Result:
    """ACME's certificate: issued (not the local-CA one served until then), in date, not failing."""
    cert = certificates.served(settings)
    state = certificates.load_state(settings)
    error = f" The last order failed: {state.last_error}" if state.last_error else ""
    if cert is None or tls.issued_by_local_ca(settings, cert):
        return result(
            FAIL if state.last_error else WARN,
            f"ACME has not issued a certificate yet: clients get the local-CA one.{error}",
            "`appliance tls renew` orders one now and says why it fails; HOSTNAME must resolve to this machine "
            "and port 80 reach ACME_HTTP_LISTEN",
        )
    until = cert.not_valid_after_utc
    if until <= now:
        return result(FAIL, f"expired on {until:%Y-%m-%d %H:%M} UTC.{error}", "`appliance tls renew` says why")
    detail = f"ACME certificate valid for {', '.join(_certificate_names(cert))} until {until:%Y-%m-%d}"
    detail += f" (issued by {_issuer(cert)}), renewed from {certificates.renewal_time(cert):%Y-%m-%d}"
    if state.last_error:
        return result(WARN, f"{detail}.{error}", "`appliance tls status`; `appliance tls renew` tries again now")
    return result(OK, detail)
