"""Debian's pebble (Let's Encrypt's test ACME server) on loopback ports, validating HTTP-01 for real:
it looks names up in the tests' DNS server and fetches the challenges from ``http_port``.

Debian ships pebble without its test certificate for the directory's HTTPS (the `+ds` source drops
test/certs), so each instance gets one from a throwaway local CA (``ca_file``, what the appliance's
ACME_CA_FILE is set to). The CA that issues the certificates is pebble's own, new at every start:
``root`` fetches it from the management port (/roots/0).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from appliance import tls
from tests.support.dnsserver import DnsServer
from tests.support.ports import free_port

PEBBLE = Path("/usr/bin/pebble")
VALIDITY = 90 * 24 * 3600  # seconds, as Let's Encrypt's certificates


class Pebble:
    def __init__(self, workdir: Path, dns: DnsServer):
        self.workdir = workdir
        self.dns = dns
        self.port, self.management_port, self.http_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def ca_file(self) -> Path:
        """The CA of the directory's own HTTPS certificate."""
        return self.workdir / "tls" / "ca.pem"

    def start(self) -> Pebble:
        self.workdir.mkdir(parents=True, exist_ok=True)
        files = tls.ensure({"TLS_CERT": "", "TLS_KEY": "", "HOSTNAME": "pebble.test", "DATA_DIR": str(self.workdir)})
        config = self.workdir / "pebble-config.json"
        config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"127.0.0.1:{self.port}",
                        "managementListenAddress": f"127.0.0.1:{self.management_port}",
                        "certificate": str(files.cert),
                        "privateKey": str(files.key),
                        "httpPort": self.http_port,
                        "tlsPort": free_port(),
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                        "certificateValidityPeriod": VALIDITY,
                    }
                }
            )
        )
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",  # validate at once, not after up to 15 s
            "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce answers (acme retries them, once)
            "PEBBLE_AUTHZREUSE": "0",  # every order proves HTTP-01 anew: a renewal that must fail does
        }
        self.log = open(self.workdir / "pebble.log", "wb")  # noqa: SIM115 — open until stop()
        self.proc = subprocess.Popen(
            [str(PEBBLE), "-config", str(config), "-dnsserver", self.dns.spec],
            cwd=self.workdir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
            (self.workdir / "root.pem").write_text(self._get(f"https://127.0.0.1:{self.management_port}/roots/0"))
        except BaseException:
            self.stop()
            raise
        return self

    def _get(self, url: str) -> str:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return response.read().decode()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pebble exited ({self.proc.returncode}): {self.output()}")
            try:
                self._get(self.directory)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pebble did not answer at {self.directory}: {self.output()}") from None
                time.sleep(0.05)

    @property
    def root(self) -> Path:
        """PEM of the root that pebble's certificates chain to (regenerated at each start)."""
        return self.workdir / "root.pem"

    def output(self) -> str:
        return (self.workdir / "pebble.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
            self.log.close()
