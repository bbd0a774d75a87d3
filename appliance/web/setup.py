"""The setup page: the first steps of a new appliance (appliance/checklist.py) on one page, each
with what is wrong and the form or the setting that mends it: the public host name (and whether it
resolves), the public URL, the first sending domain with its records checked live as they are
published, the first SMTP account and its guide, a test message. The overview links here while a
step is left; `appliance setup` prints the same steps."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from .. import audit, checklist, domains, notices, senders
from ..doctor import address
from ..models import Domain, SmtpAccount
from .domains import records_context
from .permissions import admin_required, viewer_required

bp = Blueprint("setup", __name__, url_prefix="/setup")

# While the first domain is not verified the page checks its DNS this often (seconds), so each
# record turns green soon after it is published.
LIVE_CHECK_SECONDS = 10


def _page(domain_error: str = "", test_error: str = "", status: int = 200):
    settings = current_app.config
    steps = {step.name: step for step in checklist.steps(settings)}
    domain = Domain.select().order_by(Domain.verified.desc(), Domain.id).first()
    return (
        render_template(
            "setup/show.html",
            steps=steps,
            left=sum(not s.done for s in steps.values()),
            # A page should answer within seconds, whatever DNS_TIMEOUT delivery is allowed.
            hostname_dns=address.check_dns({**settings, "DNS_TIMEOUT": min(float(settings["DNS_TIMEOUT"]), 2.0)}),
            link_problem=senders.link_problem(settings),
            link_base=senders.link_base(settings),
            toml=f"{settings['DATA_DIR']}/appliance.toml",
            live_check_seconds=LIVE_CHECK_SECONDS,
            accounts=list(SmtpAccount.select().order_by(SmtpAccount.id).limit(5)),
            domain_error=domain_error,
            test_error=test_error,
            **(records_context(domain) if domain is not None else {"domain": None}),
        ),
        status,
    )


@bp.get("/")
@viewer_required
def setup_show():
    """Show every first step, done or not, with what to do."""
    return _page()


@bp.post("/domain")
@admin_required
def setup_domain():
    """Add the first sending domain and come back to the page, which checks its records live."""
    try:
        domain = domains.add(request.form.get("name", ""))
    except domains.DomainError as exc:
        return _page(domain_error=str(exc), status=400)
    domains.check_in_background(domain.id, current_app.config)
    flash(f"{domain.name} was added: publish its records below; each turns green once it is found.")
    return redirect(url_for("setup.setup_show") + "#domain")


@bp.post("/test")
@admin_required
def setup_test():
    """Send a test message through the relay and open its page, where the delivery shows."""
    try:
        message_id = notices.send_test(current_app.config, request.form.get("recipient", ""))
    except notices.NoticeError as exc:
        return _page(test_error=str(exc), status=400)
    audit.record("message.test", f"message {message_id}", f"to {request.form.get('recipient', '').strip()}")
    return redirect(url_for("messages.messages_show", message_id=message_id))
