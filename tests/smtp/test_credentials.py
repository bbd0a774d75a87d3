"""Cheap AUTH that stays safe: generated SMTP secrets stored as a salted SHA-256 (credentials.py),
argon2id hashes from before upgraded on their next sign-in, resets and disables at once, and the
failure throttle unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from appliance import accounts, credentials, db
from appliance.models import SmtpAccount
from tests.support.smtputil import plain


def stored_hash(app, username: str) -> str:
    with app.app_context():
        return SmtpAccount.get(SmtpAccount.username == username).password_hash


def login_code(smtp_server, username: str, password: str) -> tuple[int, bytes]:
    with smtp_server.submission() as client:
        return client.docmd("AUTH", f"PLAIN {plain(username, password)}")


def test_a_stored_secret_never_contains_the_password(app, run_cli, overrides):
    data = json.loads(run_cli("accounts", "create", "Shop", "--json").output)
    reset = json.loads(run_cli("accounts", "reset-password", data["username"], "--json").output)
    for password in (data["password"], reset["password"]):
        assert password.encode() not in stored_hash(app, data["username"]).encode()
    stored = stored_hash(app, data["username"])
    scheme, salt, digest = stored.split("$")
    assert (scheme, len(salt), len(digest)) == ("sha256", 32, 64)
    if db.is_sqlite():  # nowhere on disk either: the database, its WAL, the rest of DATA_DIR
        for path in Path(overrides["DATA_DIR"]).rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert data["password"].encode() not in content and reset["password"].encode() not in content


def test_two_accounts_with_the_same_password_have_different_rows():
    one, two = credentials.hash_secret("Same24LettersAndDigits00"), credentials.hash_secret("Same24LettersAndDigits00")
    assert one != two
    assert credentials.check(one, "Same24LettersAndDigits00") == (True, None)
    assert credentials.check(two, "Same24LettersAndDigits0") == (False, None)


@pytest.mark.parametrize("stored", ["sha256$zz$00", "sha256$", "", "$argon2id$broken", "md5$00$00"])
def test_a_damaged_stored_hash_refuses_rather_than_crashes(stored):
    assert credentials.check(stored, "anything") == (False, None)


def test_a_password_reset_refuses_the_old_password_at_the_next_auth(app, smtp_server, account, run_cli):
    username, password = account
    assert login_code(smtp_server, username, password)[0] == 235
    new = json.loads(run_cli("accounts", "reset-password", username, "--json").output)["password"]
    code, text = login_code(smtp_server, username, password)
    assert (code, text[:48]) == (535, b"5.7.8 Authentication credentials invalid (use th")
    assert login_code(smtp_server, username, new)[0] == 235


def test_a_disable_refuses_the_next_auth_after_a_successful_one(app, smtp_server, account, run_cli):
    username, password = account
    assert login_code(smtp_server, username, password)[0] == 235
    assert run_cli("accounts", "disable", username).exit_code == 0
    assert login_code(smtp_server, username, password) == (
        535,
        b"5.7.8 Authentication refused: this SMTP account is disabled",
    )


@pytest.fixture
def legacy_account(app, account):
    """The account with its password stored as argon2id, as accounts created before credentials.py."""
    username, password = account
    with app.app_context():
        SmtpAccount.update(password_hash=PasswordHasher().hash(password)).where(
            SmtpAccount.username == username
        ).execute()
    return username, password


def test_an_argon2_hash_from_before_keeps_working_and_is_upgraded_on_its_next_auth(app, smtp_server, legacy_account):
    username, password = legacy_account
    assert stored_hash(app, username).startswith("$argon2id$")
    assert login_code(smtp_server, username, "wrong-password")[0] == 535
    assert stored_hash(app, username).startswith("$argon2id$")  # a failure upgrades nothing
    assert login_code(smtp_server, username, password)[0] == 235
    upgraded = stored_hash(app, username)
    assert upgraded.startswith("sha256$") and password not in upgraded
    assert login_code(smtp_server, username, password)[0] == 235
    assert login_code(smtp_server, username, "wrong-password")[0] == 535
    assert stored_hash(app, username) == upgraded


def test_an_upgrade_never_overwrites_a_reset_made_meanwhile(app, legacy_account):
    username, password = legacy_account
    with app.app_context():
        account = SmtpAccount.get(SmtpAccount.username == username)
        new = accounts.reset_password(account)
        reset_hash = SmtpAccount.get_by_id(account.id).password_hash
        # The upgrade writes only over the hash it checked: the reset's hash stays.
        ok, upgraded = credentials.check(account.password_hash, password)
        assert ok and upgraded
        SmtpAccount.update(password_hash=upgraded).where(
            (SmtpAccount.id == account.id) & (SmtpAccount.password_hash == account.password_hash)
        ).execute()
        assert SmtpAccount.get_by_id(account.id).password_hash == reset_hash
        assert accounts.verify(username, password, "127.0.0.1").failure == accounts.WRONG_PASSWORD
        assert accounts.verify(username, new, "127.0.0.1").failure is None


@pytest.fixture
def strict_ip_throttle(overrides):
    overrides.update(AUTH_FAILURES_PER_IP=3, AUTH_FAILURE_WINDOW=600, AUTH_COOLDOWN=600)
    return overrides


@pytest.mark.parametrize("stored", ["fast", "argon2id"])
def test_a_wrong_password_is_still_throttled_with_the_fast_hash(strict_ip_throttle, app, smtp_server, account, stored):
    username, password = account
    if stored == "argon2id":
        with app.app_context():
            SmtpAccount.update(password_hash=PasswordHasher().hash(password)).where(
                SmtpAccount.username == username
            ).execute()
    for guess in ("guess-1", "guess-2"):
        assert login_code(smtp_server, username, guess)[0] == 535
    with smtp_server.submission() as client:
        code, _ = client.docmd("AUTH", f"PLAIN {plain(username, 'guess-3')}")
        assert code == 421  # the third failure from this IP starts the cool-down
    with smtp_server.submission() as client:
        assert client.docmd("AUTH", f"PLAIN {plain(username, password)}") == (
            421,
            b"4.7.0 Too many failed authentication attempts, try later",
        )
    with smtp_server.submission(source_ip="127.0.0.2") as other:  # another IP is not cooled down
        assert other.login(username, password)[0] == 235
