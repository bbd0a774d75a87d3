"""A real spamd (Debian's spamd package) on a loopback port, local tests only, for SPAMD_ADDRESS."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests.support.ports import free_port
from tests.support.wait import wait_for

COMMAND = shutil.which("spamd") or "/usr/sbin/spamd"


def installed() -> bool:
    return Path(COMMAND).exists()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Spamd:
    def __init__(self, home: Path):
        self.port = free_port()
        self.home = home
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Spamd:
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [COMMAND, "--local", "--nouser-config", "--listen", self.address, "--max-children", "1"],
            cwd=self.home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_for(lambda: _answers(self.port), 60), "spamd did not start"
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
