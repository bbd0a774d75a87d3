"""`appliance` commands: setup."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import checklist
from .base import cli, emit


@cli.command("setup")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def setup(as_json: bool) -> None:
    """Show the first steps of the set-up, done or not, with the command for each one left.

    Exits 0 when every step is done, 1 otherwise (the dashboard's /setup page shows the same)."""
    steps = checklist.steps(current_app.config)
    data = [{"step": s.name, "done": s.done, "todo": "" if s.done else s.todo} for s in steps]
    lines = [f"{'done ' if s.done else 'to do'}  {s.name:<14} {'' if s.done else s.todo}".rstrip() for s in steps]
    left = sum(not s.done for s in steps)
    lines.append(f"{left} step(s) left; the dashboard's /setup page helps with each" if left else "every step is done")
    emit(data, as_json, "\n".join(lines))
    if left:
        raise SystemExit(1)
