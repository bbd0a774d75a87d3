"""TLS material: a local CA and a server certificate for HOSTNAME, generated once in DATA_DIR/tls;
the one SSL context every listener serves, which follows the certificate files when they are replaced."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

# Seconds between two looks at the certificate files (two stat() calls, made by a handshake).
CHECK_INTERVAL = 2.0


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


def pem_key(key) -> bytes:
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
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(tls_dir / "ca.key", pem_key(key))
    (tls_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _make_server(tls_dir: Path, hostname: str, ca_cert: x509.Certificate, ca_key) -> None:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # 397 days: the longest validity clients accept for a leaf certificate.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=397))
        .add_extension(x509.SubjectAlternativeName(_san_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(tls_dir / "server.key", pem_key(key))
    (tls_dir / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _server_cert_fits(path: Path, hostname: str) -> bool:
    """Tell whether the generated server certificate still names HOSTNAME and is valid a month more."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.DNSName) + [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    return hostname in names and cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=30)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` in one rename: a reader sees the old file or the new one, whole."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def acme_dir(settings: dict) -> Path:
    """Where ACME keeps its account, state and certificate (appliance/certificates.py)."""
    return Path(settings["DATA_DIR"]) / "acme"


def acme_pair(settings: dict) -> Path:
    """The one file, certificate chain then private key, that ACME replaces in one rename and every
    listener serves: a certificate and a key in two files would, for an instant, not match."""
    return acme_dir(settings) / "certificate.pem"


def ensure(settings: dict) -> TlsFiles:
    """Return the certificate to serve: the configured one, ACME's (DATA_DIR/acme, which holds the
    generated one until the first ACME certificate replaces it), or a generated one (made once, reused)."""
    if settings["TLS_CERT"] or settings["TLS_KEY"]:
        if not (settings["TLS_CERT"] and settings["TLS_KEY"]):
            raise ValueError("TLS_CERT and TLS_KEY must be set together")
        return TlsFiles(Path(settings["TLS_CERT"]), Path(settings["TLS_KEY"]), None, False)
    local = _ensure_local(settings)
    if not settings.get("ACME_EMAIL"):
        return local
    pair = acme_pair(settings)
    if not pair.exists():
        pair.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(pair, local.cert.read_bytes() + local.key.read_bytes())
    return TlsFiles(pair, pair, None, False)


def issued_by_local_ca(settings: dict, cert: x509.Certificate) -> bool:
    """Tell whether ``cert`` comes from the generated local CA of DATA_DIR/tls (not from a public CA)."""
    ca = Path(settings["DATA_DIR"]) / "tls" / "ca.pem"
    try:
        return cert.issuer == x509.load_pem_x509_certificate(ca.read_bytes()).subject
    except (OSError, ValueError):
        return False


_trusted: dict[str, tuple] = {}  # ACME pair path → (its file state, whether a public CA issued it)


def publicly_trusted(settings: dict) -> bool:
    """Tell whether the certificate served is one clients trust without being told to: a supplied one
    (TLS_CERT), or one ACME obtained (not the local-CA one served until the first issuance)."""
    if settings["TLS_CERT"]:
        return True
    if not settings.get("ACME_EMAIL"):
        return False
    pair = acme_pair(settings)
    state = _file_state(pair)
    known = _trusted.get(str(pair))
    if known is None or known[0] != state:
        try:
            cert = x509.load_pem_x509_certificate(pair.read_bytes())
        except (OSError, ValueError):
            known = (state, False)
        else:
            known = (state, not issued_by_local_ca(settings, cert))
        _trusted[str(pair)] = known
    return known[1]


def _ensure_local(settings: dict) -> TlsFiles:
    """The generated local CA and its certificate for HOSTNAME in DATA_DIR/tls (made once, reused)."""
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
    """Build an SSL context for the listeners (TLS 1.2+) from the files as they are now."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def _file_state(path: Path) -> tuple[int, int, int] | None:
    """What tells a replaced file from the one loaded: inode, size, modification time (None: missing)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class LiveContext:
    """The SSL context that every listener (STARTTLS, implicit TLS, HTTPS) is given once, serving the
    certificate that TLS_CERT/TLS_KEY (or the generated pair) hold now, without a restart.

    Each handshake calls ``context``'s SNI callback (OpenSSL calls it with or without SNI). At most
    every ``interval`` seconds it compares the files' inode, size and modification time with those
    of the pair loaded; when they changed it loads them into a new context, and from then on every
    handshake is switched to that one. A pair that cannot be loaded (half written, a key that does
    not match the certificate, a file missing) is refused with one logged error per state of the
    files, and the previous certificate stays in use. Sessions already open keep the certificate
    they started with."""

    def __init__(self, files: TlsFiles, interval: float | None = None):
        self.files = files
        self.interval = CHECK_INTERVAL if interval is None else interval
        # The state is taken before the files are read: a file replaced meanwhile is loaded again.
        self._loaded = self._state()
        self.context = server_context(files)  # raises when the pair cannot be used at start
        self.context.sni_callback = self._on_handshake
        self._current = self.context
        self._refused: tuple | None = None  # the state of the files last refused, logged once
        self._next_check = time.monotonic() + self.interval
        self._lock = threading.Lock()  # the SMTP loop and the dashboard's threads both shake hands

    def _state(self) -> tuple:
        return _file_state(self.files.cert), _file_state(self.files.key)

    def current(self) -> ssl.SSLContext:
        """Return the context of the newest usable pair, looking at the files if it is time to."""
        now = time.monotonic()
        if now < self._next_check:
            return self._current
        with self._lock:
            if now >= self._next_check:
                self._check()
                self._next_check = time.monotonic() + self.interval
            return self._current

    def _check(self) -> None:
        state = self._state()
        if state == self._loaded or state == self._refused:
            return
        try:
            if None in state:
                raise FileNotFoundError("a file is missing")
            fresh = server_context(self.files)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self._refused = state
            log.error(
                "TLS certificate %s / key %s changed but cannot be used (%s): still serving the previous certificate",
                self.files.cert,
                self.files.key,
                exc,
            )
            return
        self._current, self._loaded, self._refused = fresh, state, None
        log.info("TLS certificate reloaded from %s (%s)", self.files.cert, _describe(self.files.cert))

    def _on_handshake(self, ssl_object, server_name, front: ssl.SSLContext) -> None:
        try:
            ctx = self.current()
            if ctx is not front:
                ssl_object.context = ctx
        except Exception:  # a handshake must never fail for the reload: it keeps the certificate it has
            log.exception("TLS certificate reload failed")


def _describe(path: Path) -> str:
    """'CN=mail.example.com, valid until 2027-01-08' for the log line of a reload."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return "unreadable now"
    return f"{cert.subject.rfc4514_string()}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
