"""The management API's accounts and who may do what: an admin key (a dashboard admin's) manages
every account; an account's key sees its own account alone, and another's is not found."""

from __future__ import annotations

from appliance import accounts, admins, api_keys
from appliance.models import AdminUser, ApiKey, AuditEntry, SmtpAccount


def test_an_admin_key_creates_changes_and_deletes_accounts_with_the_password_shown_once(app, api, admin_key):
    created = api.request(
        "POST", "/api/v1/accounts", admin_key, json={"name": "Blog", "priority": 2, "ip_rules": ["192.0.2.0/24"]}
    )
    assert created.status_code == 201
    account = created.json()
    assert account["username"] == f"{account['id']}.blog.smtp" and account["ip_rules"] == ["192.0.2.0/24"]
    assert created.headers["Location"] == f"/api/v1/accounts/{account['id']}"
    with app.app_context():
        assert accounts.verify(account["username"], account["password"], "192.0.2.7").failure is None

    shown = api.request("GET", f"/api/v1/accounts/{account['id']}", admin_key).json()
    listed = api.request("GET", "/api/v1/accounts", admin_key).json()["accounts"]
    assert "password" not in shown and all("password" not in a for a in listed)
    assert account["password"] not in api.request("GET", "/api/v1/accounts", admin_key).text

    changed = api.request(
        "PATCH", f"/api/v1/accounts/{account['id']}", admin_key, json={"active": False, "stream": "broadcast"}
    )
    assert changed.status_code == 200 and changed.json()["active"] is False and changed.json()["stream"] == "broadcast"
    assert changed.json()["priority"] == 2  # what was not given stays

    reset = api.request("POST", f"/api/v1/accounts/{account['id']}/password", admin_key).json()
    assert reset["password"] != account["password"]
    with app.app_context():
        api.request("PATCH", f"/api/v1/accounts/{account['id']}", admin_key, json={"active": True})
        assert accounts.verify(account["username"], account["password"], "192.0.2.7").failure == accounts.WRONG_PASSWORD
        assert accounts.verify(account["username"], reset["password"], "192.0.2.7").failure is None

    assert api.request("DELETE", f"/api/v1/accounts/{account['id']}", admin_key).status_code == 204
    assert api.request("GET", f"/api/v1/accounts/{account['id']}", admin_key).status_code == 404
    with app.app_context():
        prefix = ApiKey.get(ApiKey.account.is_null()).prefix
        done = [
            (e.action, e.actor) for e in AuditEntry.select().order_by(AuditEntry.id) if e.action.startswith("account.")
        ]
    assert done == [
        (action, f"api key {prefix}")
        for action in (
            "account.create",
            "account.edit",
            "account.reset_password",
            "account.edit",
            "account.delete",
        )
    ]


def test_bad_input_is_a_problem_document_naming_each_field(app, api, admin_key):
    bad = api.request(
        "POST", "/api/v1/accounts", admin_key, json={"name": " ", "priority": 9, "ip_rules": ["not-a-network"]}
    )
    assert bad.status_code == 422 and bad.headers["Content-Type"] == "application/problem+json"
    assert {e["field"] for e in bad.json()["errors"]} == {"name", "priority", "ip_rules"}
    unknown = api.request("POST", "/api/v1/accounts", admin_key, json={"name": "X", "password": "mine"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "password"
    not_json = api.request(
        "POST", "/api/v1/accounts", admin_key, data=b"name=X", headers={"Content-Type": "text/plain"}
    )
    assert not_json.status_code == 400 and not_json.json()["reason"] == "bad-json"
    with app.app_context():
        made = accounts.create("Blog")[0]
    null = api.request("PATCH", f"/api/v1/accounts/{made.id}", admin_key, json={"name": None, "priority": "high"})
    assert null.status_code == 422 and {e["field"] for e in null.json()["errors"]} == {"priority"}
    null = api.request("PATCH", f"/api/v1/accounts/{made.id}", admin_key, json={"name": None})
    assert null.status_code == 422 and null.json()["errors"][0]["field"] == "name"
    paging = api.request("GET", "/api/v1/accounts", admin_key, params={"limit": 500, "colour": "red"})
    assert paging.status_code == 422 and {e["field"] for e in paging.json()["errors"]} == {"limit", "colour"}


def test_the_accounts_come_a_page_at_a_time(app, api, admin_key):
    with app.app_context():
        made = [accounts.create(f"Site {n}")[0].id for n in range(3)]
    first = api.request("GET", "/api/v1/accounts", admin_key, params={"limit": 2}).json()
    second = api.request("GET", "/api/v1/accounts", admin_key, params={"limit": 2, "page": first["next_page"]}).json()
    assert [a["id"] for a in first["accounts"] + second["accounts"]] == made
    assert first["next_page"] == 2 and second["next_page"] is None


def test_an_accounts_key_sees_its_own_account_alone_and_manages_no_account(app, api, account, make_key):
    with app.app_context():
        own = accounts.find(account[0])
        other = accounts.create("Other")[0]
    manager = make_key(account[0], "manage")
    listed = api.request("GET", "/api/v1/accounts", manager).json()["accounts"]
    assert [a["id"] for a in listed] == [own.id]
    assert api.request("GET", f"/api/v1/accounts/{own.id}", manager).json()["username"] == account[0]
    foreign = api.request("GET", f"/api/v1/accounts/{other.id}", manager)
    missing = api.request("GET", "/api/v1/accounts/99999", manager)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"].replace(str(other.id), "N") == missing.json()["detail"].replace("99999", "N")
    for method, path, body in (
        ("POST", "/api/v1/accounts", {"name": "Mine"}),
        ("PATCH", f"/api/v1/accounts/{own.id}", {"priority": 1}),
        ("PATCH", f"/api/v1/accounts/{other.id}", {"priority": 1}),
        ("POST", f"/api/v1/accounts/{other.id}/password", None),
        ("DELETE", f"/api/v1/accounts/{other.id}", None),
    ):
        refused = api.request(method, path, manager, json=body)
        assert refused.status_code == 403 and refused.json()["reason"] == "admin-key-required", (method, path)
    with app.app_context():
        assert SmtpAccount.get_by_id(other.id).priority == 3 and SmtpAccount.select().count() == 2


def test_a_read_admin_key_cannot_write_and_an_admin_key_sends_nothing(api, make_admin_key):
    reader = make_admin_key(scope="read")
    assert api.request("GET", "/api/v1/accounts", reader).status_code == 200
    refused = api.request("POST", "/api/v1/accounts", reader, json={"name": "Blog"})
    assert refused.status_code == 403 and refused.json()["reason"] == "insufficient-scope"
    manager = make_admin_key()
    mail = {"from": "a@shop.test", "to": ["b@example.test"], "subject": "Hi", "text": "Hi"}
    assert api.send(manager, mail).json()["reason"] == "insufficient-scope"


def test_a_revoked_admin_key_and_the_key_of_an_admin_no_more_are_refused_at_once(app, api, make_admin_key):
    key = make_admin_key("ops@example.test")
    assert api.request("GET", "/api/v1/accounts", key).status_code == 200
    with app.app_context():
        api_keys.revoke(api_keys.check(key).key)
    revoked = api.request("GET", "/api/v1/accounts", key)
    assert revoked.status_code == 401 and revoked.json()["reason"] == "invalid-api-key"

    demoted = make_admin_key("lead@example.test")
    assert api.request("GET", "/api/v1/accounts", demoted).status_code == 200
    with app.app_context():
        admins.set_role(AdminUser.get(AdminUser.email == "lead@example.test"), "viewer")
    assert api.request("GET", "/api/v1/accounts", demoted).status_code == 401


def test_only_an_active_admin_may_have_an_admin_key(app, run_cli):
    with app.app_context():
        admins.create("viewer@example.test", "correct horse battery staple", role="viewer")
        admins.create("root@example.test", "correct horse battery staple")
    viewer = run_cli("api-keys", "create", "--admin", "viewer@example.test")
    assert viewer.exit_code != 0 and "only admins may have an admin key" in viewer.output
    send = run_cli("api-keys", "create", "--admin", "root@example.test", "--scope", "send")
    assert send.exit_code != 0 and "'send'" in send.output
    neither = run_cli("api-keys", "create")
    assert neither.exit_code != 0 and "--admin EMAIL" in neither.output
    made = run_cli("api-keys", "create", "--admin", "root@example.test", "--json")
    assert made.exit_code == 0 and '"admin": "root@example.test"' in made.output and '"scope": "manage"' in made.output
    with app.app_context():
        assert AuditEntry.get(AuditEntry.action == "api_key.create").subject == "admin root@example.test"


def test_an_admin_key_sets_an_accounts_sender_authorization_checked_as_the_dashboard_does(app, api, admin_key):
    with app.app_context():
        made = accounts.create("Blog")[0]
    path = f"/api/v1/accounts/{made.id}"
    bad = api.request(
        "PATCH", path, admin_key, json={"priority": 1, "authorized_domains": ["shop.example", "bad domain!"]}
    )
    assert bad.status_code == 422 and bad.json()["errors"] == [
        {"field": "authorized_domains", "detail": "'domain!' is not a domain name"}
    ]
    with app.app_context():
        assert SmtpAccount.get_by_id(made.id).priority == 3  # nothing of a refused request is saved
    mode = api.request("PATCH", path, admin_key, json={"sender_mode": "shout"})
    assert mode.status_code == 422 and mode.json()["errors"][0]["field"] == "sender_mode"
    saved = api.request(
        "PATCH",
        path,
        admin_key,
        json={"authorized_domains": ["Shop.example", "*.News.example"], "authorized_senders": ["Jo@Gmail.example"]},
    ).json()
    assert saved["authorized_domains"] == ["shop.example", "*.news.example"]
    assert saved["authorized_senders"] == ["jo@gmail.example"] and saved["sender_mode"] == "block"
    with app.app_context():
        entry = AuditEntry.get(AuditEntry.action == "account.authorization")
        assert entry.subject == f"account {made.username}" and "shop.example, *.news.example" in entry.detail
