"""The HTTPS dashboard (WEB_TLS_LISTEN) of a real process, HSTS, the Secure cookie flag, and
forwarded headers believed from TRUSTED_PROXIES only."""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from flask import request

from appliance import create_app, tls
from appliance.config import ConfigError
from tests.support import ROOT
from tests.support.ports import free_port
from tests.support.process import process_env
from tests.support.relay import HOSTNAME
from tests.support.wait import wait_for


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 302 itself is the answer looked at (its Set-Cookie)


def _start(overrides: dict) -> tuple[subprocess.Popen, str]:
    """Start app.py; return it and its banner up to the last line."""
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=process_env(overrides),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = ""
    for line in proc.stdout:
        banner += line
        if line.strip().startswith(("first admin login", "admins:")):  # the banner's last line
            return proc, banner
    raise AssertionError(f"the appliance did not start (exit {proc.wait()}):\n{banner}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _get(url: str, ca: Path | None = None, opener=None):
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    if opener is not None:
        return opener.open(url, timeout=10)
    return urllib.request.urlopen(url, context=context, timeout=10)


def _pair(tmp_path: Path, name: str) -> tls.TlsFiles:
    return tls.ensure({"TLS_CERT": "", "TLS_KEY": "", "HOSTNAME": HOSTNAME, "DATA_DIR": str(tmp_path / name)})


def test_https_dashboard_with_the_generated_certificate_answers_without_hsts(overrides):
    port = free_port()
    overrides["WEB_TLS_LISTEN"] = f"127.0.0.1:{port}"
    proc, banner = _start(overrides)
    try:
        assert f"dashboard: http://{overrides['WEB_LISTEN']}/, https://127.0.0.1:{port}/" in banner
        ca = Path(overrides["DATA_DIR"]) / "tls" / "ca.pem"
        with _get(f"https://{HOSTNAME}:{port}/health", ca) as response:
            assert response.status == 200
            assert response.headers["Strict-Transport-Security"] is None  # a local CA nobody trusts yet
        plain = socket.create_connection(("127.0.0.1", port))  # a client that never shakes hands
        try:
            with _get(f"https://{HOSTNAME}:{port}/health", ca) as response:  # does not wait for it
                assert response.status == 200
        finally:
            plain.close()
    finally:
        _stop(proc)


def test_https_with_a_supplied_certificate_sends_hsts_secure_cookies_and_follows_the_files(overrides, tmp_path):
    a, b = _pair(tmp_path, "ca-a"), _pair(tmp_path, "ca-b")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "cert.pem", live / "key.pem"
    cert.write_bytes(a.cert.read_bytes())
    key.write_bytes(a.key.read_bytes())
    port = free_port()
    overrides.update(WEB_TLS_LISTEN=f"127.0.0.1:{port}", TLS_CERT=str(cert), TLS_KEY=str(key))
    proc, banner = _start(overrides)
    try:
        base = f"https://{HOSTNAME}:{port}"
        with _get(f"{base}/health", a.ca) as response:
            assert response.status == 200
            assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        with _get(f"http://{overrides['WEB_LISTEN']}/health") as response:  # never over plain HTTP
            assert response.status == 200 and response.headers["Strict-Transport-Security"] is None

        email, password = re.search(r"first admin login \(shown once\): (\S+) / (\S+)", banner).groups()
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=str(a.ca))),
            urllib.request.HTTPCookieProcessor(jar),
            _NoRedirect,
        )
        with opener.open(f"{base}/login", timeout=10) as response:
            token = re.search(r'name="csrf_token" value="([^"]+)"', response.read().decode()).group(1)
        form = urllib.parse.urlencode({"csrf_token": token, "email": email, "password": password}).encode()
        sign_in = urllib.request.Request(f"{base}/login", data=form, headers={"Referer": f"{base}/login"})
        with pytest.raises(urllib.error.HTTPError) as answer:  # the 302 to the overview, not followed
            opener.open(sign_in, timeout=10)
        assert answer.value.code == 302
        cookies = answer.value.headers.get_all("Set-Cookie")
        assert cookies and all("; Secure" in c for c in cookies), cookies
        assert answer.value.headers["Strict-Transport-Security"] == "max-age=31536000"

        # The same hot reload as SMTP: replaced files serve the next connections.
        for source, target in ((b.key, key), (b.cert, cert)):
            target.with_suffix(".new").write_bytes(source.read_bytes())
            os.replace(target.with_suffix(".new"), target)

        def verifies_with_b() -> bool:
            try:
                with _get(f"{base}/health", b.ca) as response:
                    return response.status == 200
            except urllib.error.URLError:
                return False

        assert wait_for(verifies_with_b, timeout=15, interval=0.5)
    finally:
        _stop(proc)


def test_a_busy_https_port_is_reported_and_the_http_dashboard_keeps_serving(overrides):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    overrides["WEB_TLS_LISTEN"] = f"127.0.0.1:{busy.getsockname()[1]}"
    proc, banner = _start(overrides)
    try:
        assert f"HTTPS NOT listening on {overrides['WEB_TLS_LISTEN']}" in banner
        with _get(f"http://{overrides['WEB_LISTEN']}/health") as response:
            assert response.status == 200
    finally:
        _stop(proc)
        busy.close()


def _peer_app(overrides: dict, trusted: str):
    app = create_app({**overrides, "TRUSTED_PROXIES": trusted})

    @app.route("/_peer")
    def _peer():
        return {"ip": request.remote_addr, "scheme": request.scheme, "host": request.host}

    return app


FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "mail.example.com"}


def test_forwarded_headers_from_an_untrusted_peer_change_nothing(overrides):
    app = _peer_app(overrides, "10.0.0.0/8")
    client = app.test_client()
    answer = client.get("/_peer", headers=FORWARDED, environ_base={"REMOTE_ADDR": "192.0.2.10"}).get_json()
    assert answer == {"ip": "192.0.2.10", "scheme": "http", "host": "localhost"}
    # Nobody is trusted by default, not even loopback.
    client = _peer_app(overrides, "").test_client()
    answer = client.get("/_peer", headers=FORWARDED, environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_json()
    assert answer == {"ip": "127.0.0.1", "scheme": "http", "host": "localhost"}
    response = client.get("/health", headers=FORWARDED, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("peer", ["10.1.2.3", "::ffff:10.1.2.3", "2001:db8::5"])
def test_forwarded_headers_from_a_trusted_proxy_are_believed(overrides, peer):
    app = _peer_app({**overrides, "TLS_CERT": "x", "TLS_KEY": "y"}, "10.0.0.0/8, 2001:db8::/32")
    client = app.test_client()
    answer = client.get("/_peer", headers=FORWARDED, environ_base={"REMOTE_ADDR": peer}).get_json()
    assert answer == {"ip": "203.0.113.7", "scheme": "https", "host": "mail.example.com"}
    response = client.get("/login", headers=FORWARDED, environ_base={"REMOTE_ADDR": peer})
    assert "; Secure" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_a_bad_trusted_proxies_entry_is_refused(overrides):
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES: 'nonsense' is not an address or a CIDR"):
        create_app({**overrides, "TRUSTED_PROXIES": "10.0.0.1,nonsense"})
