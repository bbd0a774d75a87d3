"""`appliance` commands: senders."""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import audit, queue
from .. import senders as senders_service
from ..models import (
    Sender,
)
from .base import cli, emit, ts


@cli.group("senders")
def senders_group() -> None:
    """Sender addresses: verified by a link mailed to them, or by an admin."""


def sender_dict(s: Sender) -> dict[str, Any]:
    return {
        "id": s.id,
        "email": s.email,
        "verified": s.verified,
        "verified_by": s.verified_by or None,
        "verified_at": ts(s.verified_at),
        "link_sent_at": ts(s.link_sent_at),
        "created_at": ts(s.created_at),
    }


def _get_sender(ref: str) -> Sender:
    sender = senders_service.find(ref)
    if sender is None:
        raise click.ClickException(f"no sender {ref!r}")
    return sender


@senders_group.command("add")
@click.argument("email")
@click.option(
    "--verified", is_flag=True, help="Mark it verified now (recorded as verified by an admin); no link is mailed."
)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def senders_add(email: str, verified: bool, as_json: bool) -> None:
    """Add a sender; without --verified, mail it a verification link through the appliance."""
    existing = senders_service.find(email)
    if existing is not None and verified:
        sender = senders_service.mark_verified(existing, "admin")
        queue.cancel(senders_service.pending_links(sender), by="sender verified")
        audit.record("sender.add", f"sender {sender.email}", "verified by the admin")
        emit(sender_dict(sender), as_json, f"{sender.email}: verified by an admin")
        return
    problem = None if verified else senders_service.link_problem(current_app.config)
    if problem:
        raise click.ClickException(f"{problem} (appliance senders add {email} --verified)")
    try:
        sender, message_id = senders_service.create(current_app.config, email, verified=verified)
    except senders_service.SenderError as exc:
        raise click.ClickException(str(exc)) from None
    text = f"{sender.email}: verified by an admin"
    if message_id is not None:
        sender = Sender.get_by_id(sender.id)
        text = f"{sender.email}: a verification link was mailed (message {message_id})"
    emit(sender_dict(sender), as_json, text)


@senders_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def senders_list(as_json: bool) -> None:
    """List senders and whether they are verified."""
    rows = [sender_dict(s) for s in Sender.select().order_by(Sender.email)]
    text = (
        "\n".join(
            f"{r['id']:>4}  {r['email']:<40} "
            + (
                f"verified by {r['verified_by']} {r['verified_at']}"
                if r["verified"]
                else f"waiting (link sent {r['link_sent_at']})"
            )
            for r in rows
        )
        or "no senders yet: appliance senders add EMAIL"
    )
    emit(rows, as_json, text)


@senders_group.command("resend")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def senders_resend(ref: str, as_json: bool) -> None:
    """Mail a new verification link to a sender that is not verified yet."""
    sender = _get_sender(ref)
    if sender.verified:
        raise click.ClickException(f"{sender.email} is already verified")
    try:
        message_id = senders_service.send_verification(current_app.config, sender)
    except senders_service.SenderError as exc:
        raise click.ClickException(str(exc)) from None
    emit(
        sender_dict(Sender.get_by_id(sender.id)) | {"message": message_id},
        as_json,
        f"{sender.email}: a new verification link was mailed (message {message_id})",
    )


@senders_group.command("delete")
@click.argument("ref")
@with_appcontext
def senders_delete(ref: str) -> None:
    """Delete a sender: mail from it is refused again (unless its domain is verified)."""
    sender = _get_sender(ref)
    senders_service.delete(sender)
    click.echo(f"deleted {sender.email}")
