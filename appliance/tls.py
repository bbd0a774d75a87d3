"""TLS material: a local CA and a server certificate for HOSTNAME, generated once in DATA_DIR/tls."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None  # the generated CA that clients can be told to trust; None for supplied certs
    generated: bool


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key() -> rsa.RSAPrivateKey:
    # RSA rather than ECDSA: office printers and old PHP builds still lack ECDSA suites.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san_names(hostname: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([hostname, "localhost"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    return names


def _make_ca(tls_dir: Path, hostname: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Appliance local CA ({hostname})")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(tls_dir / "ca.key", _pem_key(key))
    (tls_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _make_server(tls_dir: Path, hostname: str, ca_cert: x509.Certificate, ca_key) -> None:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # 397 days: the longest validity clients accept for a leaf certificate.
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=397))
        .add_extension(x509.SubjectAlternativeName(_san_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(tls_dir / "server.key", _pem_key(key))
    (tls_dir / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _server_cert_fits(path: Path, hostname: str) -> bool:
    """Tell whether the generated server certificate still names HOSTNAME and is valid a month more."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.DNSName) + [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    return hostname in names and cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=30)


def ensure(settings: dict) -> TlsFiles:
    """Return the certificate to serve: the configured one, or a generated one (made once, reused)."""
    if settings["TLS_CERT"] or settings["TLS_KEY"]:
        if not (settings["TLS_CERT"] and settings["TLS_KEY"]):
            raise ValueError("TLS_CERT and TLS_KEY must be set together")
        return TlsFiles(Path(settings["TLS_CERT"]), Path(settings["TLS_KEY"]), None, False)
    hostname = settings["HOSTNAME"]
    tls_dir = Path(settings["DATA_DIR"]) / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca_pem, ca_key_path = tls_dir / "ca.pem", tls_dir / "ca.key"
    generated = False
    if ca_pem.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    else:
        ca_cert, ca_key = _make_ca(tls_dir, hostname)
        generated = True
    server_pem = tls_dir / "server.pem"
    if generated or not server_pem.exists() or not _server_cert_fits(server_pem, hostname):
        _make_server(tls_dir, hostname, ca_cert, ca_key)
        generated = True
    return TlsFiles(server_pem, tls_dir / "server.key", ca_pem, generated)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """Build the SSL context for the SMTP listeners (TLS 1.2+)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx
