"""`appliance accounts …`: credentials shown once, stored hashed, effective at once."""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.models import SmtpAccount
from tests.support.process import cli_json


def test_create_prints_a_username_and_a_password_once_and_stores_only_a_hash(app, run_cli):
    result = run_cli("accounts", "create", "WooCommerce Shop")
    assert result.exit_code == 0
    username = re.search(r"username: (\S+)", result.output).group(1)
    password = re.search(r"password: (\S+)", result.output).group(1)
    assert re.fullmatch(r"\d+\.woocommerce-shop\.smtp", username)
    assert len(password) >= 20
    with app.app_context():
        row = SmtpAccount.get(SmtpAccount.username == username)
    assert row.password_hash.startswith("sha256$") and password not in row.password_hash
    shown = run_cli("accounts", "show", username)
    assert password not in shown.output


def test_create_json_has_id_username_and_password(run_cli):
    data = cli_json(run_cli("accounts", "create", "Blog", "--json"))
    assert data["username"] == f"{data['id']}.blog.smtp" and data["password"]


def test_list_and_show_give_json(run_cli):
    created = cli_json(run_cli("accounts", "create", "Laravel app", "--priority", "1", "--json"))
    listed = cli_json(run_cli("accounts", "list", "--json"))
    assert [a["username"] for a in listed] == [created["username"]]
    shown = cli_json(run_cli("accounts", "show", str(created["id"]), "--json"))
    assert shown["priority"] == 1 and shown["active"] is True and "password" not in shown


def test_show_of_an_unknown_account_fails_with_a_message(run_cli):
    result = run_cli("accounts", "show", "999.nobody.smtp")
    assert result.exit_code != 0 and "no SMTP account" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ip", "10.0.0.300/8"], "not an IP address or network: '10.0.0.300/8'"),
        (["--ip-only"], "an IP-only account needs at least one authorized address or network"),
        (["--priority", "9"], "priority is 1 (very high) to 5 (very low)"),
    ],
)
def test_create_refuses_bad_options_with_a_clear_error(run_cli, args, message):
    result = run_cli("accounts", "create", "Bad", *args)
    assert result.exit_code != 0 and message in result.stderr


def test_reset_password_stops_the_old_one_and_starts_the_new_one_at_once(smtp_server, run_cli):
    created = cli_json(run_cli("accounts", "create", "Shop", "--json"))
    with smtp_server.submission() as client:  # a session that stays open across the reset
        reset = cli_json(run_cli("accounts", "reset-password", created["username"], "--json"))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(created["username"], created["password"])
        assert client.login(created["username"], reset["password"])[0] == 235


def test_ip_rules_limit_an_account_to_its_networks(smtp_server, run_cli):
    created = cli_json(
        run_cli("accounts", "create", "Office", "--ip", "127.0.0.1/32", "--ip", "2001:db8::/32", "--json")
    )
    assert created["ip_rules"] == ["127.0.0.1/32", "2001:db8::/32"]
    with smtp_server.submission() as client:
        assert client.login(created["username"], created["password"])[0] == 235
    with (
        smtp_server.submission(source_ip="127.0.0.2") as client,
        pytest.raises(smtplib.SMTPAuthenticationError) as caught,
    ):
        client.login(created["username"], created["password"])
    assert caught.value.smtp_error == (
        b"5.7.8 Authentication refused: client IP 127.0.0.2 is not authorized for this account"
    )
    shown = cli_json(run_cli("accounts", "show", created["username"], "--json"))
    assert (shown["last_failure_reason"], shown["last_failure_ip"]) == ("IP not authorized", "127.0.0.2")


def test_delete_removes_the_account_and_its_logins(smtp_server, run_cli):
    created = cli_json(run_cli("accounts", "create", "Old", "--json"))
    assert run_cli("accounts", "delete", created["username"], "--yes").exit_code == 0
    assert cli_json(run_cli("accounts", "list", "--json")) == []
    with smtp_server.submission() as client, pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(created["username"], created["password"])


def test_appliance_help_shows_the_appliance_s_commands_and_none_of_flask_s_options(tmp_path):
    appliance = Path(sys.executable).with_name("appliance")
    env = {"APPLIANCE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(appliance), "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "accounts" in done.stdout and "send-test" in done.stdout
    assert not {"--env-file", "--app", "--debug", "python-dotenv"} & set(done.stdout.replace(",", " ").split())


def test_an_ip_only_account_is_told_it_needs_no_password_from_its_networks(app, run_cli, smtp_server):
    result = run_cli("accounts", "create", "Printer", "--ip", "127.0.0.1/32", "--ip-only")
    assert result.exit_code == 0
    assert "no password needed from 127.0.0.1/32: mail from there is this account's without AUTH." in result.output
    assert run_cli("senders", "add", "printer@shop.test", "--verified").exit_code == 0
    with smtplib.SMTP("127.0.0.1", smtp_server.starttls_port, timeout=10) as client:  # and so it is
        assert (
            client.sendmail(
                "printer@shop.test",
                ["alice@example.test"],
                "From: printer@shop.test\r\nSubject: scan\r\n\r\nA scan.\r\n",
            )
            == {}
        )
