"""scripts/install-service.sh, which the Vagrantfile runs: the appliance as a systemd service on Debian.

The script runs for real, as root, in a private mount namespace whose /etc and /usr/local/bin are
copies (so the system user, /etc/appliance.env, the unit and the `appliance` wrapper it creates never
touch this machine), with the code and the data under a temporary directory. systemd does not run
here, so the test then starts the service the way the unit says (User, EnvironmentFile,
WorkingDirectory, ExecStart) and talks to it over SMTP and HTTP.
"""

from __future__ import annotations

import configparser
import http.cookiejar
import os
import pwd
import re
import shlex
import shutil
import signal
import smtplib
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import ROOT, SCALEOUT
from tests.support.ports import free_port
from tests.support.process import read_banner

ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # root's PATH on Debian

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "useradd", "runuser", "setpriv")),
        reason="needs root, unshare, useradd, runuser and setpriv (CI has them)",
    ),
    pytest.mark.skipif(SCALEOUT, reason="the installed service runs on its defaults; the SQLite pass covers it"),
]


class Machine:
    """A root directory of stand-ins: /etc and /usr/local/bin copies, the prefix and the data dir."""

    def __init__(self, base: Path):
        self.base = base
        self.etc, self.bin = base / "etc", base / "usr-local-bin"
        self.prefix, self.data = base / "opt" / "appliance", base / "var" / "appliance"
        shutil.copytree("/etc", self.etc, symlinks=True)
        self.bin.mkdir()

    def run(self, script: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """Run ``script`` with sh, as root, in a new mount namespace that sees the stand-ins."""
        inner = f"mount --bind {self.etc} /etc && mount --bind {self.bin} /usr/local/bin && {script}"
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
            env={"PATH": ROOT_PATH, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,
        )

    def install(self, **settings: str) -> str:
        env = {"APPLIANCE_PREFIX": str(self.prefix), "APPLIANCE_DATA_DIR": str(self.data), **settings}
        proc = self.run(str(ROOT / "scripts" / "install-service.sh"), env)
        output, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, output
        return output

    def uid(self, name: str) -> int:
        return next(
            int(line.split(":")[2])
            for line in (self.etc / "passwd").read_text().splitlines()
            if line.startswith(name + ":")
        )


@pytest.fixture(scope="module")
def machine():
    base = Path(tempfile.mkdtemp(prefix="install-service-", dir="/tmp"))
    base.chmod(0o755)  # the service's user must reach its code and data below it
    yield Machine(base)
    shutil.rmtree(base)


@pytest.fixture(scope="module")
def ports():
    return {"smtp": free_port(), "web": free_port()}


@pytest.fixture(scope="module")
def first_install(machine, ports):
    return machine.install(
        APPLIANCE_HOSTNAME="relay.test",
        APPLIANCE_SMTP_LISTEN=f"127.0.0.1:{ports['smtp']}/starttls",
        APPLIANCE_WEB_LISTEN=f"127.0.0.1:{ports['web']}",
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def unit_service(machine: Machine) -> configparser.SectionProxy:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read_string((machine.etc / "systemd" / "system" / "appliance.service").read_text())
    return unit["Service"]


def test_it_installs_a_user_the_settings_the_unit_and_prints_the_first_admin_once(machine, first_install):
    assert re.search(r"first admin login \(shown once\): admin@relay\.test / \S{20}", first_install)
    # nothing of the real machine changed: the user exists only in the namespace's /etc
    with pytest.raises(KeyError):
        pwd.getpwnam("appliance")
    uid = machine.uid("appliance")
    assert (machine.data.stat().st_uid, machine.data.stat().st_mode & 0o777) == (uid, 0o750)
    assert (machine.data / "appliance.db").stat().st_uid == uid
    settings = (machine.etc / "appliance.env").read_text()
    assert f"APPLIANCE_DATA_DIR={machine.data}\n" in settings and "APPLIANCE_HOSTNAME=relay.test\n" in settings
    assert "APPLIANCE_PREFIX" not in settings
    service = unit_service(machine)
    assert service["User"] == "appliance" and service["EnvironmentFile"] == "/etc/appliance.env"
    assert service["ExecStart"] == f"{machine.prefix}/.venv/bin/appliance serve"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["ReadWritePaths"] == str(machine.data)
    assert os.readlink(machine.prefix / ".venv" / "bin" / "python3").startswith("/usr/bin/python3")


def test_the_service_started_as_the_unit_says_serves_smtp_and_the_dashboard(machine, first_install, ports):
    admin_email, admin_password = re.search(r"shown once\): (\S+) / (\S+)", first_install).groups()
    service = unit_service(machine)
    command = (
        f"set -a && . {service['EnvironmentFile']} && set +a && cd {service['WorkingDirectory']} && "
        f"exec setpriv --reuid={service['User']} --regid={service['Group']} --init-groups "
        f"{service['ExecStart']}"
    )
    proc = machine.run(command)  # unshare, sh and setpriv exec: proc is the service's own process
    try:
        banner = read_banner(proc)
        assert f"SMTP starttls listening on 127.0.0.1:{ports['smtp']}" in banner, banner
        assert "first admin login" not in banner  # the installer showed it; the journal never holds it
        ca = machine.data / "tls" / "ca.pem"
        assert ca.stat().st_uid == machine.uid("appliance")
        with smtplib.SMTP("localhost", ports["smtp"], timeout=20) as client:
            code, greeting = client.ehlo()
            assert code == 250 and greeting.startswith(b"relay.test")
            client.starttls(context=ssl.create_default_context(cafile=str(ca)))
            assert client.ehlo()[0] == 250 and "auth" in client.esmtp_features

        web = f"http://127.0.0.1:{ports['web']}"
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )
        login_page = opener.open(f"{web}/login", timeout=20).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
        form = urllib.parse.urlencode({"csrf_token": token, "email": admin_email, "password": admin_password})
        with pytest.raises(urllib.error.HTTPError) as redirect:  # not followed: _NoRedirect
            opener.open(f"{web}/login", data=form.encode(), timeout=20)
        assert redirect.value.code == 302 and redirect.value.headers["Location"] == "/"
    finally:
        proc.send_signal(signal.SIGTERM)  # what systemd sends on stop
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, banner + output


def test_the_wrapper_runs_the_cli_as_the_service_user_with_the_service_settings(machine, first_install):
    proc = machine.run("appliance accounts create 'My shop' --json")
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert '"username": "1.my-shop.smtp"' in output
    listed = machine.run("appliance accounts list").communicate(timeout=60)[0]
    assert "1.my-shop.smtp" in listed


def test_the_unit_file_is_valid_for_systemd(machine, first_install):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = machine.etc / "systemd" / "system" / "appliance.service"
    proc = machine.run(f"{analyze} verify {shlex.quote(str(unit))}")
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output


def test_installing_again_upgrades_the_code_and_keeps_data_settings_and_admins(machine, first_install):
    secret = (machine.data / "secret_key").read_bytes()
    settings = (machine.etc / "appliance.env").read_text()
    stale = machine.prefix / "appliance" / "removed_module.py"
    stale.write_text("")
    again = machine.install(APPLIANCE_HOSTNAME="other.test")
    assert "an admin exists already: nothing created" in again and "shown once" not in again
    assert "keeping /etc/appliance.env" in again
    assert (machine.etc / "appliance.env").read_text() == settings
    assert (machine.data / "secret_key").read_bytes() == secret
    assert not stale.exists()  # the code is replaced, not merged
    listed = machine.run("appliance accounts list").communicate(timeout=60)[0]
    assert "1.my-shop.smtp" in listed


def test_it_refuses_to_run_without_root(machine):
    script = machine.base / "install-service.sh"  # where `nobody` can read it, wherever the checkout is
    shutil.copy(ROOT / "scripts" / "install-service.sh", script)
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", "sh", str(script)], capture_output=True, text=True, timeout=30, cwd="/"
    )
    assert result.returncode == 1 and "run it as root" in result.stderr
