"""`appliance` commands: tls (the certificate served, and ACME's renewal of it)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import certificates, serve
from .base import cli, emit

SOURCES = {
    "acme": "ACME ({directory})",
    "local-ca": "the generated local CA in DATA_DIR/tls (clients must be told to trust it)",
    "supplied": "the files TLS_CERT/TLS_KEY (renewed outside the appliance)",
    "none": "none",
}


@cli.group("tls")
def tls_group() -> None:
    """The TLS certificate of SMTP and the HTTPS dashboard: where it comes from, and ACME's renewal."""


def status_text(info: dict) -> str:
    source = SOURCES[info["source"]].format(directory=info.get("directory", ""))
    if info["acme"] and info["source"] == "local-ca":
        source = "the generated local CA, until ACME's first certificate (clients do not trust it)"
    lines = [f"certificate: {info['path']}", f"source: {source}"]
    if "error" in info:
        lines.append(f"error: {info['error']}")
    if "names" in info:
        lines += [
            f"names: {', '.join(info['names']) or '(none)'}",
            f"issuer: {info['issuer']}",
            f"serial: {info['serial']}",
            f"valid: {info['not_before']} to {info['not_after']} UTC",
        ]
    if not info["acme"]:
        lines.append("renewal: not by the appliance (ACME_EMAIL is empty)")
        return "\n".join(lines)
    lines += [
        f"ACME account: {info['email']}" + (f" ({info['account']})" if info["account"] else " (not registered yet)"),
        f"next renewal: {info['next_renewal']} UTC"
        + (f" (due: {info['due']})" if info["due"] else " (two thirds of its lifetime)"),
        f"last attempt: {info['last_attempt'] or 'never'}"
        + (f", last success: {info['last_success']}" if info["last_success"] else ""),
        f"last error: {info['last_error'] or 'none'}"
        + (f" ({info['failures']} failed in a row)" if info["failures"] else ""),
    ]
    return "\n".join(lines)


@tls_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def tls_status(as_json: bool) -> None:
    """Where the certificate comes from, its names, issuer and expiry, and ACME's next renewal and last error."""
    info = certificates.status(current_app.config)
    emit(info, as_json, status_text(info))


@tls_group.command("renew")
@with_appcontext
def tls_renew() -> None:
    """Order a new ACME certificate now (whatever the backoff); the running appliance serves it
    from its next connection. Exit code 1 with the reason when the CA gives none."""
    settings = current_app.config
    if not certificates.enabled(settings):
        raise click.ClickException(
            "ACME is off (ACME_EMAIL is empty): the certificate is the generated one or TLS_CERT/TLS_KEY, "
            "renewed outside the appliance"
        )
    # The running appliance serves the challenges from DATA_DIR/acme too; with none, this command does.
    with serve.challenge_listener(settings) as not_here:
        try:
            cert = certificates.renew(settings)
        except certificates.AcmeError as exc:
            hint = (
                f" (this command could not listen on ACME_HTTP_LISTEN {settings['ACME_HTTP_LISTEN']}: {not_here}; "
                "only a running appliance listening there serves the challenge)"
                if not_here
                else ""
            )
            raise click.ClickException(f"no new certificate: {exc}{hint}") from None
    click.echo(
        f"new certificate for {', '.join(certificates.names(cert))} from {certificates.issuer(cert)}, "
        f"serial {cert.serial_number:x}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
        "served from the next connection on"
    )
