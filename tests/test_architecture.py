"""The architecture holds: import-linter's layers and no-cycle contracts (pyproject.toml), and a
deliberately added upward import breaks them; the delivery checklist reads the same everywhere;
no module under appliance/ is longer than 600 lines."""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

from appliance import delivery
from tests.support import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_and_no_cycle_contracts_hold_on_the_tree():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken\.", result.stdout), result.stdout
    assert "BROKEN" not in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    shutil.copytree(ROOT / "appliance", tmp_path / "appliance", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    models = tmp_path / "appliance" / "models" / "mail.py"
    models.write_text(models.read_text() + "\nfrom .. import alerts  # upward: models may not know who mails\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "appliance.models is not allowed to import appliance.alerts" in result.stdout
    assert "appliance.models.mail -> appliance.alerts" in result.stdout


def test_an_import_cycle_inside_a_package_breaks_the_no_cycle_contract(tmp_path):
    shutil.copytree(ROOT / "appliance", tmp_path / "appliance", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    route = tmp_path / "appliance" / "delivery" / "route.py"
    route.write_text(route.read_text() + "\nfrom . import send  # send imports route: a circle\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "No import cycle between the modules of any package BROKEN" in result.stdout


def test_the_smtp_connection_importing_its_hooks_breaks_the_smtp_contract(tmp_path):
    shutil.copytree(ROOT / "appliance", tmp_path / "appliance", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    protocol = tmp_path / "appliance" / "smtp" / "protocol.py"
    protocol.write_text(protocol.read_text() + "\nfrom . import hooks  # the connection may not know its hooks\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "SMTP: the hooks over the connection over what connections share BROKEN" in result.stdout
    assert "appliance.smtp.protocol is not allowed to import appliance.smtp.hooks" in result.stdout


def _delivery_steps_in(text: str, pattern: str) -> list[tuple[str, str, str]]:
    return [m.groups() for m in re.finditer(pattern, text, re.MULTILINE)]


def test_the_delivery_steps_have_the_same_numbers_and_names_in_the_code_its_docstrings_and_the_docs():
    package = ROOT / "appliance" / "delivery"
    checklist = _delivery_steps_in(
        ast.get_docstring(ast.parse((package / "__init__.py").read_text())), r"^\s+(\d)\.\s+(\w+)\s+.+\s(\w+\.py)$"
    )
    documented = _delivery_steps_in(
        (ROOT / "docs" / "delivery.md").read_text(), r"^(\d)\. \*\*(\w+)\*\* \(`delivery/(\w+\.py)`"
    )
    assert [name for _, name, _ in checklist] == ["route", "pace", "connect", "sign", "send", "record"]
    assert [n for n, _, _ in checklist] == ["1", "2", "3", "4", "5", "6"]
    assert documented == checklist
    steps_code = inspect.getsource(delivery._steps) + inspect.getsource(delivery.Outcomes)
    for number, name, module in checklist:
        assert f"Step {number}, {name}" in (package / module).read_text(), (number, name, module)
        assert f"Step {number}, {name}" in steps_code or f"# {number}. {name}" in steps_code, (number, name)


def test_no_module_under_appliance_is_longer_than_600_lines():
    lengths = {
        path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
        for path in (ROOT / "appliance").rglob("*.py")
    }
    assert lengths and {path: n for path, n in lengths.items() if n > 600} == {}
