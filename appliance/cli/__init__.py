"""The `appliance` command (DESIGN §4): a Flask CLI group over create_app.

Errors go to stderr with a non-zero exit code; every list/show command accepts --json.
"""

from __future__ import annotations

import click

from .. import config
from . import (  # noqa: F401 — each module adds its commands to the group
    accounts,
    admins,
    alerts,
    api_keys,
    backup,
    campaigns,
    check,
    dmarc,
    doctor,
    domains,
    lists,
    messages,
    policy,
    queue,
    retention,
    send_test,
    senders,
    serve,
    setup,
    stats,
    suppressions,
    tls,
    webhooks,
)
from .base import cli

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `appliance` console script."""
    try:
        code = cli.main(args=argv, prog_name="appliance", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (config.ConfigError, ValueError) as exc:
        click.echo(f"Error: {exc}", err=True)
        return 2
    return code if isinstance(code, int) else 0  # a command's click.exceptions.Exit(code)
