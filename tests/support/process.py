"""The appliance as a separate process or a CLI run: its environment, its banner, its JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support import ROOT


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
