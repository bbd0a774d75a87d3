"""The README's first command as a new owner types it: `./scripts/run.sh` in a fresh clone installs
into its own .venv and starts the appliance; the CLI line the banner prints then works from any
other folder and finds the same accounts as the checkout's own `appliance`."""

from __future__ import annotations

import os
import re
import subprocess
import threading

from tests.support import ROOT
from tests.support.ports import free_port

# A guard against a hung install (pip fetches every package into the new .venv), not a speed test.
INSTALL_GUARD = 900


def test_run_sh_in_a_fresh_clone_starts_the_appliance_and_its_cli_works_from_another_folder(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # no venv of the test run's on it
    env.update(
        APPLIANCE_HOSTNAME="relay.test",
        APPLIANCE_SMTP_LISTEN=f"127.0.0.1:{free_port()}/starttls,127.0.0.1:{free_port()}/tls",
        APPLIANCE_WEB_LISTEN=f"127.0.0.1:{free_port()}",
    )
    proc = subprocess.Popen(
        ["./scripts/run.sh"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    guard = threading.Timer(INSTALL_GUARD, proc.kill)
    guard.start()
    try:
        output = []
        for line in proc.stdout:  # pip's install, then the banner; its last line is the admin login
            output.append(line)
            if line.strip().startswith("first admin login"):
                break
        text = "".join(output)
        assert "first admin login (shown once): admin@relay.test / " in text, text
        assert (clone / "data" / "appliance.db").exists()  # data under the checkout's ./data

        (cli_line,) = [line for line in output if "the CLI from any folder:" in line]
        exports = dict(re.findall(r'(\w+)="([^"]*)"', cli_line))
        assert exports["PATH"].startswith(str(clone / ".venv" / "bin"))
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        shell = {**env, "PATH": exports["PATH"].replace("$PATH", env["PATH"])}
        shell["APPLIANCE_DATA_DIR"] = exports["APPLIANCE_DATA_DIR"]
        created = subprocess.run(
            ["appliance", "accounts", "create", "My shop"], cwd=elsewhere, env=shell, capture_output=True, text=True
        )
        assert created.returncode == 0 and "1.my-shop.smtp" in created.stdout, created.stderr
        listed = subprocess.run(
            [".venv/bin/appliance", "accounts", "list"], cwd=clone, env=env, capture_output=True, text=True
        )
        assert "1.my-shop.smtp" in listed.stdout, listed.stderr  # the same data, from the checkout
    finally:
        guard.cancel()
        proc.terminate()
        proc.wait(timeout=30)
