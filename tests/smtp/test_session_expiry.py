"""Sessions end with their account: a session signed in before a disable, a delete or a password
reset is refused at its next MAIL FROM with a 535 that says why, whether that MAIL FROM would have
been answered from the session's cache or looked up (over real sockets; on PostgreSQL too with
SCALEOUT_TESTS=1, and across SMTP front-end processes in test_session_expiry_scaleout.py)."""

from __future__ import annotations

import json

import pytest

from appliance import admins, replies
from appliance.models import Message, SmtpAccount
from tests.support.mail import send_one
from tests.web.conftest import ADMIN, Dashboard


def dashboard_disable(app, username: str) -> None:
    with app.app_context():
        admins.create(*ADMIN, role="admin")
        account = SmtpAccount.get(SmtpAccount.username == username)
    dashboard = Dashboard(app.test_client())
    assert dashboard.login(*ADMIN).status_code == 302
    response = dashboard.form(f"/accounts/{account.id}", {"name": account.name, "priority": "3"})
    assert response.status_code == 302


ACTIONS = {
    "disable": (
        lambda app, run_cli, username: run_cli("accounts", "disable", username),
        replies.SESSION_ACCOUNT_DISABLED,
    ),
    "disable in the dashboard": (
        lambda app, run_cli, username: dashboard_disable(app, username),
        replies.SESSION_ACCOUNT_DISABLED,
    ),
    "delete": (
        lambda app, run_cli, username: run_cli("accounts", "delete", username, "--yes"),
        replies.SESSION_ACCOUNT_DELETED,
    ),
    "reset-password": (
        lambda app, run_cli, username: run_cli("accounts", "reset-password", username),
        replies.SESSION_CREDENTIALS_CHANGED,
    ),
}


@pytest.mark.parametrize("sent_before", [False, True], ids=["first-mail", "after-a-mail"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_session_signed_in_before_the_change_is_refused_at_its_next_mail_from(
    app, smtp_server, account, run_cli, action, sent_before
):
    username, password = account
    change, expected = ACTIONS[action]
    with smtp_server.submission() as client:
        client.login(username, password)
        if sent_before:  # the second MAIL FROM of a sender already seen: the session's cached path
            send_one(client)
        change(app, run_cli, username)
        code, text = client.mail("orders@shop.test")
        assert f"{code} {text.decode()}" == expected
        # Signed out: nothing more goes through on this sign-in.
        assert client.rcpt("ann@example.test")[0] == 530
        assert client.mail("orders@shop.test")[0] == 530
    with app.app_context():
        assert Message.select().count() == (1 if sent_before else 0)


def test_after_a_reset_the_same_connection_can_sign_in_again_with_the_new_password(app, smtp_server, account, run_cli):
    username, password = account
    with smtp_server.submission() as client:
        client.login(username, password)
        send_one(client)
        new = json.loads(run_cli("accounts", "reset-password", username, "--json").output)["password"]
        assert client.mail("orders@shop.test")[0] == 535
        client.rset()
        assert client.login(username, new)[0] == 235
        send_one(client)
    with app.app_context():
        assert Message.select().count() == 2


def test_a_disable_then_enable_does_not_revive_a_session_signed_in_before(app, smtp_server, account, run_cli):
    username, password = account
    with smtp_server.submission() as client:
        client.login(username, password)
        send_one(client)
        run_cli("accounts", "disable", username)
        run_cli("accounts", "enable", username)
        code, text = client.mail("orders@shop.test")
        assert f"{code} {text.decode()}" == replies.SESSION_CREDENTIALS_CHANGED
    with smtp_server.submission() as client:  # a new sign-in works again
        client.login(username, password)
        send_one(client)


def test_unchanged_accounts_keep_sending_on_their_session(app, smtp_server, account, run_cli):
    username, password = account
    other = json.loads(run_cli("accounts", "create", "Blog", "--json").output)
    with smtp_server.submission() as client:
        client.login(username, password)
        send_one(client)
        run_cli("accounts", "disable", other["username"])
        run_cli("accounts", "edit", username, "--sender-mode", "block")
        send_one(client)
        send_one(client)
