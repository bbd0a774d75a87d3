"""API keys from the command line: created and shown once, stored as a hash, listed, revoked."""

from __future__ import annotations

import json

from appliance import api_keys
from appliance.models import ApiKey, AuditEntry


def test_create_shows_the_key_once_and_stores_only_its_hash(app, account, run_cli):
    created = run_cli("api-keys", "create", account[0], "--scope", "read", "--name", "shop backend", "--json")
    assert created.exit_code == 0
    data = json.loads(created.output)
    assert data["scope"] == "read" and data["username"] == account[0] and data["name"] == "shop backend"
    key = data["key"]
    assert key.startswith(f"ak_{data['prefix']}_")
    with app.app_context():
        row = ApiKey.get_by_id(data["id"])
        assert key.split("_", 2)[2] not in row.secret_hash and row.secret_hash.startswith("sha256$")
        assert api_keys.check(key).key.id == row.id
        assert api_keys.check(key[:-1] + ("x" if key[-1] != "x" else "y")) is None
        assert AuditEntry.get(AuditEntry.action == "api_key.create").actor == "cli"
    listed = json.loads(run_cli("api-keys", "list", "--account", account[0], "--json").output)
    assert [k["prefix"] for k in listed] == [data["prefix"]] and "key" not in listed[0]
    assert key not in run_cli("api-keys", "list").output


def test_revoke_stops_the_key_and_is_listed(app, account, run_cli):
    key = json.loads(run_cli("api-keys", "create", account[0], "--json").output)
    assert run_cli("api-keys", "revoke", str(key["id"])).exit_code == 0
    with app.app_context():
        assert api_keys.check(key["key"]) is None
    (listed,) = json.loads(run_cli("api-keys", "list", "--json").output)
    assert listed["revoked_at"] is not None
    again = run_cli("api-keys", "revoke", str(key["id"]))
    assert again.exit_code != 0 and "revoked already" in again.output


def test_bad_input_is_refused_with_a_sentence(account, run_cli):
    unknown = run_cli("api-keys", "create", "nobody")
    assert unknown.exit_code != 0 and "no SMTP account 'nobody'" in unknown.output
    scope = run_cli("api-keys", "create", account[0], "--scope", "everything")
    assert scope.exit_code != 0 and "'everything' is not one of" in scope.output
    missing = run_cli("api-keys", "revoke", "12345")
    assert missing.exit_code != 0 and "no API key '12345'" in missing.output
