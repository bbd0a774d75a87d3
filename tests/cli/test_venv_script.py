"""scripts/venv.sh: pip runs when the dependencies changed, and a second start installs nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support import ROOT


def _source(folder: Path, extras: str = "") -> list[str]:
    """Source the script in ``folder``, whose .venv/bin/python only records how it was called."""
    log = folder / "calls"
    log.unlink(missing_ok=True)
    subprocess.run(
        ["sh", "-c", f"EXTRAS={extras} . {ROOT / 'scripts' / 'venv.sh'}"], cwd=folder, check=True, timeout=60
    )
    return log.read_text().splitlines() if log.exists() else []


def test_pip_runs_once_and_again_only_when_pyproject_or_the_extras_change(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "calls"}\n')
    python.chmod(0o755)
    assert _source(tmp_path) == ["-m pip install -q --upgrade pip", "-m pip install -q -e ."]
    assert _source(tmp_path) == []  # nothing changed: nothing installed
    assert _source(tmp_path, "test") == ["-m pip install -q --upgrade pip", "-m pip install -q -e .[test]"]
    with (tmp_path / "pyproject.toml").open("a") as file:
        file.write("\n# a changed dependency\n")
    assert _source(tmp_path, "test")[-1] == "-m pip install -q -e .[test]"
    assert _source(tmp_path, "test") == []
