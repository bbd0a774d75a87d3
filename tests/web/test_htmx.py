"""Vendored htmx 4, and the upgrade check that ships in its npm package (installed by scripts/test.sh)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGE = ROOT / "tests" / "clients" / "node_modules" / "htmx.org"
CHECK = PACKAGE / "dist" / "scripts" / "upgrade-check.js"
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not CHECK.exists(), reason="node or the htmx.org package is not installed"
)


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(CHECK), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


@needs_node
def test_the_vendored_htmx_is_the_npm_package_s_own_file():
    vendored = (ROOT / "static" / "htmx-4.0.1.min.js").read_text().split("\n", 1)[1]
    assert vendored == (PACKAGE / "dist" / "htmx.min.js").read_text()


def test_htmx_4_0_1_is_vendored_with_its_license_and_every_page_loads_it(client):
    text = (ROOT / "static" / "htmx-4.0.1.min.js").read_text()
    assert "Zero-Clause BSD" in text.splitlines()[0]
    assert 'this.version="4.0.1"' in text or 'version="4.0.1"' in text
    page = client.get("/").get_data(as_text=True)
    assert '<script src="/static/htmx-4.0.1.min.js" defer></script>' in page
    assert client.get("/static/htmx-4.0.1.min.js").status_code == 200


@needs_node
def test_the_htmx_upgrade_check_reports_nothing_in_the_templates():
    result = _check(ROOT / "templates")
    assert result.returncode == 0, result.stdout + result.stderr
    scanned = re.search(r"Found 0 issue\(s\) in 0 of (\d+) file", result.stderr + result.stdout)
    assert scanned and int(scanned.group(1)) >= 10


@needs_node
def test_the_htmx_upgrade_check_does_flag_an_htmx_2_idiom(tmp_path):
    (tmp_path / "old.html").write_text(
        '<div hx-target="#out"><button hx-get="/x">x</button></div>\n'
        '<button hx-get="/y" hx-disabled-elt="this">y</button>\n'
    )
    result = _check(tmp_path)
    assert result.returncode == 1
    assert "hx-disabled-elt" in result.stdout
