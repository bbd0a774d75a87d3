"""Sessions end with their account on every node of the scale-out mode: two SMTP front-end
processes on one PostgreSQL, a session open on each, the account changed from the CLI (a third
process's view of the same database)."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import pytest

from appliance import replies
from tests.support.mail import send_one
from tests.support.ports import free_port
from tests.support.process import start
from tests.support.relay import smtp_ports


@pytest.fixture
def overrides(overrides, scaleout):
    return {**overrides, **scaleout}  # on PostgreSQL and Redis in every run of the suite


def session(port: int, ca: Path, account) -> smtplib.SMTP:
    client = smtplib.SMTP("relay.test", port, timeout=20)
    client.starttls(context=ssl.create_default_context(cafile=str(ca)))
    client.login(*account)
    return client


@pytest.mark.parametrize(
    "action, expected",
    [
        (("disable",), replies.SESSION_ACCOUNT_DISABLED),
        (("reset-password",), replies.SESSION_CREDENTIALS_CHANGED),
        (("delete", "--yes"), replies.SESSION_ACCOUNT_DELETED),
    ],
)
def test_sessions_on_every_front_end_are_refused_at_their_next_mail_from(
    app, overrides, account, run_cli, action, expected
):
    second = {**overrides, "SMTP_LISTEN": f"127.0.0.1:{free_port()}/starttls", "WEB_LISTEN": f"127.0.0.1:{free_port()}"}
    ca = Path(overrides["DATA_DIR"]) / "tls" / "ca.pem"
    procs, clients = [], []
    try:
        for settings in (overrides, second):
            procs.append(start(settings, "smtp")[0])
        for settings in (overrides, second):
            client = session(smtp_ports(settings["SMTP_LISTEN"])[0], ca, account)
            clients.append(client)
            send_one(client)
        assert run_cli("accounts", action[0], account[0], *action[1:]).exit_code == 0
        for client in clients:
            code, text = client.mail("orders@shop.test")
            assert f"{code} {text.decode()}" == expected
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            proc.terminate()
            assert proc.wait(timeout=15) == 0
