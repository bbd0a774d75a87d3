"""Certificate files replaced under a running appliance: new SMTP connections get the new pair
without a restart, open sessions keep theirs, a pair that cannot be used leaves the old one."""

from __future__ import annotations

import logging
import os
import shutil
import smtplib
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from appliance import tls
from appliance.serve import start_smtp
from tests.support.relay import HOSTNAME, smtp_ports
from tests.support.wait import wait_for


def _pair(tmp_path: Path, name: str) -> tls.TlsFiles:
    """A fresh local CA and a certificate for HOSTNAME signed by it."""
    return tls.ensure({"TLS_CERT": "", "TLS_KEY": "", "HOSTNAME": HOSTNAME, "DATA_DIR": str(tmp_path / name)})


def _replace(target: Path, data: bytes) -> None:
    """Put ``data`` at ``target`` the way renewal tools do: written beside it, then renamed over it."""
    part = target.with_name(target.name + ".new")
    part.write_bytes(data)
    os.replace(part, target)


def _implicit(port: int, ca: Path) -> smtplib.SMTP_SSL:
    return smtplib.SMTP_SSL(
        HOSTNAME, port, local_hostname="client.test", context=ssl.create_default_context(cafile=str(ca)), timeout=10
    )


def _starttls(port: int, ca: Path) -> smtplib.SMTP:
    client = smtplib.SMTP(HOSTNAME, port, local_hostname="client.test", timeout=10)
    try:
        client.starttls(context=ssl.create_default_context(cafile=str(ca)))
    except BaseException:
        client.close()
        raise
    return client


def _verifies(connect, port: int, ca: Path) -> bool:
    """Tell whether a new connection's certificate verifies against ``ca``."""
    try:
        with connect(port, ca) as client:
            return client.noop()[0] == 250
    except ssl.SSLCertVerificationError:
        return False


def _serial(client) -> int:
    der = client.sock.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def fast_checks(monkeypatch):
    monkeypatch.setattr(tls, "CHECK_INTERVAL", 0.2)


def _supply(app, tmp_path: Path, pair) -> tuple[Path, Path]:
    """Copy ``pair`` to files set as TLS_CERT/TLS_KEY, as an outside tool keeps them; return their paths."""
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "cert.pem", live / "key.pem"
    shutil.copy(pair.cert, cert)
    shutil.copy(pair.key, key)
    app.config.update(TLS_CERT=str(cert), TLS_KEY=str(key))
    return cert, key


@pytest.mark.parametrize("where", ["supplied", "generated"])
def test_replaced_certificate_files_serve_new_connections_and_spare_open_sessions(app, tmp_path, fast_checks, where):
    a, b = _pair(tmp_path, "ca-a"), _pair(tmp_path, "ca-b")
    if where == "supplied":
        cert, key = _supply(app, tmp_path, a)
    else:  # the generated pair in DATA_DIR/tls, renewed by hand from another CA
        generated = tls.ensure(app.config)
        cert, key = generated.cert, generated.key
        _replace(cert, a.cert.read_bytes())
        _replace(key, a.key.read_bytes())
    service, _ = start_smtp(app.config)
    starttls, implicit, _mx = smtp_ports(app.config["SMTP_LISTEN"])
    try:
        open_implicit, open_starttls = _implicit(implicit, a.ca), _starttls(starttls, a.ca)
        serials = _serial(open_implicit), _serial(open_starttls)
        assert _verifies(_implicit, implicit, a.ca) and not _verifies(_implicit, implicit, b.ca)

        _replace(key, b.key.read_bytes())
        _replace(cert, b.cert.read_bytes())

        assert wait_for(lambda: _verifies(_implicit, implicit, b.ca), timeout=10)
        assert not _verifies(_implicit, implicit, a.ca)
        assert _verifies(_starttls, starttls, b.ca) and not _verifies(_starttls, starttls, a.ca)
        # The sessions opened before go on with the certificate they started with.
        for client, serial in zip((open_implicit, open_starttls), serials, strict=True):
            assert client.noop()[0] == 250 and _serial(client) == serial
            client.quit()
    finally:
        service.stop()


def test_a_broken_or_mismatched_pair_is_refused_and_the_old_certificate_stays(app, tmp_path, fast_checks, caplog):
    a, b = _pair(tmp_path, "ca-a"), _pair(tmp_path, "ca-b")
    cert, key = _supply(app, tmp_path, a)
    service, _ = start_smtp(app.config)
    starttls, implicit, _mx = smtp_ports(app.config["SMTP_LISTEN"])
    caplog.set_level(logging.INFO, logger="appliance.tls")

    def refusals() -> int:
        return sum("cannot be used" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)

    try:
        half = a.key.read_bytes()
        _replace(key, half[: len(half) // 2])  # a key half written
        assert wait_for(lambda: _verifies(_implicit, implicit, a.ca) and refusals() == 1, timeout=10)
        _replace(key, b.key.read_bytes())  # a whole key, but not the certificate's
        assert wait_for(lambda: _verifies(_starttls, starttls, a.ca) and refusals() == 2, timeout=10)
        for _ in range(3):  # the same refused files are logged once, and still not served
            assert _verifies(_implicit, implicit, a.ca)
        assert refusals() == 2
        _replace(cert, b.cert.read_bytes())  # the pair completed: now it is taken
        assert wait_for(lambda: _verifies(_implicit, implicit, b.ca), timeout=10)
        assert any("reloaded" in r.getMessage() for r in caplog.records)
    finally:
        service.stop()
