"""The `appliance` group (a Flask CLI group over create_app) and the output helpers its
commands share."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
from flask.cli import FlaskGroup

from .. import audit, config, create_app

# The commands that may start from no ./data folder: they make it (or restore one into it).
MAKE_DATA = {"serve", "migrate", "restore"}


def _app_factory():
    command = click.get_current_context().find_root().invoked_subcommand
    data_dir = Path(config.load()["DATA_DIR"])
    if command not in MAKE_DATA and not data_dir.is_dir() and config.ENV_PREFIX + "DATA_DIR" not in os.environ:
        # Run from another folder, the default ./data would otherwise be made anew, and every list come
        # back empty. A data folder named on purpose (APPLIANCE_DATA_DIR) is made, as `serve` makes it.
        raise click.ClickException(
            f"no appliance data in {data_dir} (APPLIANCE_DATA_DIR, default ./data): run `appliance` in the "
            "folder where the appliance runs, or set APPLIANCE_DATA_DIR to its data folder"
        )
    return create_app()


def emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def ts(value) -> str | None:
    return value.isoformat(sep=" ", timespec="seconds") if value else None


class ApplianceGroup(FlaskGroup):
    """Flask's CLI group without Flask's own options (--env-file, --app, --debug): the appliance
    is configured by its settings, and those options only crowded `appliance --help`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.params = [p for p in self.params if p.name not in {"env_file", "app", "debug"}]


@click.group(cls=ApplianceGroup, create_app=_app_factory, add_default_commands=False, add_version_option=False)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Self-hosted SMTP relay appliance."""
    # What a command changes is recorded in the audit log as done by "cli".
    token = audit.act_as("cli")
    ctx.call_on_close(lambda: audit.reset(token))
