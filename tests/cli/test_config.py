"""Settings: declared once, read in order, documented from the declaration (DESIGN §4)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from appliance import config
from tests.support import ROOT


def test_later_sources_win_defaults_then_toml_then_environment_then_overrides(tmp_path):
    (tmp_path / "appliance.toml").write_text('max_recipients = 50\nhostname = "file.test"\ndelivery_port = 2500\n')
    env = {"APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_HOSTNAME": "env.test", "APPLIANCE_DELIVERY_PORT": "2600"}
    values = config.load({"DELIVERY_PORT": 2700}, environ=env)
    assert values["MAX_RECIPIENTS"] == 50  # from the file
    assert values["HOSTNAME"] == "env.test"  # environment beats the file
    assert values["DELIVERY_PORT"] == 2700  # overrides beat everything
    assert values["MAX_CONNECTIONS"] == 200  # default
    assert values["DATA_DIR"] == str(tmp_path.resolve())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APPLIANCE_MAX_RECIPIENTS": "lots"}, "MAX_RECIPIENTS: expected a whole number, got 'lots'"),
        ({"APPLIANCE_DNS_TIMEOUT": "soon"}, "DNS_TIMEOUT: expected a number, got 'soon'"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(tmp_path, env, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load(environ={"APPLIANCE_DATA_DIR": str(tmp_path), **env})


def test_an_unknown_key_in_the_toml_file_is_an_error(tmp_path):
    (tmp_path / "appliance.toml").write_text("max_recipeints = 5\n")
    with pytest.raises(config.ConfigError, match="unknown setting 'max_recipeints'"):
        config.load(environ={"APPLIANCE_DATA_DIR": str(tmp_path)})


def test_the_cli_reports_a_bad_setting_on_stderr_with_a_non_zero_exit(tmp_path):
    env = {"APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_MAX_RECIPIENTS": "lots", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "accounts", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "MAX_RECIPIENTS: expected a whole number" in done.stderr and "Traceback" not in done.stderr


def test_the_readme_configuration_table_matches_the_declared_settings():
    readme = (ROOT / "README.md").read_text()
    assert config.with_table(readme) == readme, "run: python -m appliance.config --write README.md"


def test_every_setting_has_help_text_and_a_unique_name():
    names = [s.name for s in config.SETTINGS]
    assert len(names) == len(set(names))
    assert all(s.help.strip() for s in config.SETTINGS)


def test_an_unknown_environment_variable_is_an_error_that_names_the_closest_setting(tmp_path):
    env = {"APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_HOST_NAME": "relay.example.test"}
    expected = "unknown environment variable 'APPLIANCE_HOST_NAME' (did you mean 'APPLIANCE_HOSTNAME'?)"
    with pytest.raises(config.ConfigError, match=re.escape(expected)):
        config.load(environ=env)
    assert config.load(environ={"APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_PREFIX": "/opt/appliance"})


def test_an_unknown_toml_key_names_the_closest_setting_as_it_is_written_there(tmp_path):
    (tmp_path / "appliance.toml").write_text('host_name = "relay.example.test"\n')
    with pytest.raises(config.ConfigError, match=r"unknown setting 'host_name' \(did you mean 'hostname'\?\)"):
        config.load(environ={"APPLIANCE_DATA_DIR": str(tmp_path)})


def test_app_py_refuses_to_start_on_a_misspelt_variable_instead_of_ignoring_it(tmp_path):
    env = {"APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_HOSTNAM": "relay.example.test", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "unknown environment variable 'APPLIANCE_HOSTNAM' (did you mean 'APPLIANCE_HOSTNAME'?)" in output
    assert "Traceback" not in output


def test_the_configuration_table_names_each_setting_as_it_is_typed():
    table = config.markdown_table()
    assert "| `APPLIANCE_HOSTNAME` | `hostname` |" in table
    assert "DATA_DIR/appliance.toml" in table
