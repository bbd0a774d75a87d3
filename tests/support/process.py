"""The appliance as a separate process or a CLI run: its environment, its banner, its JSON output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT
from tests.support.relay import smtp_ports
from tests.support.wait import wait_for


def process_env(overrides: dict) -> dict:
    """Environment for running the appliance as a separate process with these settings."""

    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update({f"APPLIANCE_{k}": str(v) for k, v in overrides.items()})
    return env


def read_banner(proc) -> str:
    """Read an appliance process's output up to its start-up banner's dashboard line, printed once
    every listener is bound; fail with what it printed when it exits before."""
    banner = ""
    for line in proc.stdout:
        banner += line
        if "dashboard:" in line:
            return banner
    raise AssertionError(f"the appliance did not start (exit {proc.wait()}):\n{banner}")


def cli_json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def start(overrides: dict, role: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--role", role],
        cwd=ROOT,
        env=process_env(overrides),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, read_banner(proc)


def start_logged(overrides: dict, log: Path) -> subprocess.Popen:
    """Start `python app.py` with its output appended to ``log``; return once its first SMTP port listens."""
    proc = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=process_env(overrides),
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    port = smtp_ports(overrides["SMTP_LISTEN"])[0]

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    assert wait_for(listening, timeout=30), log.read_text()
    return proc
