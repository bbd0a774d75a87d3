"""An account's API keys on its dashboard page: create (shown once), revoke; and a dashboard session
never authenticates the HTTP API."""

from __future__ import annotations

import re

from appliance import api_keys
from appliance.models import ApiKey, AuditEntry, SmtpAccount
from appliance.web.permissions import API_KEY

_KEY = re.compile(r'id="api-key" type="text" value="(ak_[^"]+)"')


def _account(app) -> SmtpAccount:
    with app.app_context():
        return SmtpAccount.create(name="Shop", username="1.shop.smtp")


def test_a_new_key_is_shown_once_then_listed_without_its_secret(app, client):
    account = _account(app)
    created = client.form(f"/accounts/{account.id}/api-keys/", {"scope": "send", "name": "checkout"})
    assert created.status_code == 302 and created.headers["Location"].endswith(f"/accounts/{account.id}/api-keys/new")
    shown = client.get(created.headers["Location"])
    assert shown.headers["Cache-Control"] == "no-store"
    key = _KEY.search(shown.get_data(as_text=True)).group(1)
    with app.app_context():
        assert api_keys.check(key).account.id == account.id
        assert AuditEntry.get(AuditEntry.action == "api_key.create").actor == "admin@relay.test"
    again = client.get(created.headers["Location"], follow_redirects=True).get_data(as_text=True)
    assert "An API key is shown once" in again and key not in again
    page = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert f"ak_{key.split('_')[1]}_…" in page and "checkout" in page and key not in page


def test_revoking_a_key_on_the_page_stops_it_at_once(app, client):
    account = _account(app)
    with app.app_context():
        row, key = api_keys.create(account, "send")
    revoked = client.form(f"/accounts/{account.id}/api-keys/{row.id}/revoke")
    assert revoked.status_code == 302
    with app.app_context():
        assert api_keys.check(key) is None
        assert ApiKey.get_by_id(row.id).revoked_at is not None
        assert AuditEntry.get(AuditEntry.action == "api_key.revoke").subject == "account 1.shop.smtp"
    assert "revoked" in client.get(f"/accounts/{account.id}").get_data(as_text=True)


def test_a_bad_scope_creates_nothing_and_says_why(app, client):
    account = _account(app)
    answer = client.form(f"/accounts/{account.id}/api-keys/", {"scope": "root"}, follow_redirects=True)
    assert "No key was created: the scope is one of send, read, manage" in answer.get_data(as_text=True)
    with app.app_context():
        assert ApiKey.select().count() == 0


def test_a_viewer_sees_the_keys_but_cannot_create_one(app, viewer_client):
    account = _account(app)
    assert "Create API key" not in viewer_client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert viewer_client.form(f"/accounts/{account.id}/api-keys/", {"scope": "send"}).status_code == 403


def test_a_signed_in_dashboard_session_does_not_authenticate_the_api(app, client):
    answer = client.post("/api/v1/messages", json={"from": "a@shop.test", "to": "b@example.test", "text": "x"})
    assert answer.status_code == 401 and answer.json["reason"] == "missing-api-key"
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert "Set-Cookie" not in answer.headers and "Cookie" not in answer.headers.get("Vary", "")


def test_every_api_view_refuses_a_request_without_a_key(app, anon):
    checked = 0
    for rule in app.url_map.iter_rules():
        if getattr(app.view_functions[rule.endpoint], "permission", "") != API_KEY:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = re.sub(r"<(?:\w+:)?\w+>", "01ABC", re.sub(r"<int:\w+>", "1", rule.rule))
            answer = anon.open(path, method=method)
            assert answer.status_code == 401, (method, rule.rule)
            checked += 1
    assert checked >= 1


def test_an_admin_makes_an_admin_key_on_its_page_shown_once_and_any_admin_revokes_it(app, client):
    created = client.form("/api-keys/", {"scope": "read", "name": "provisioning"})
    assert created.status_code == 302 and created.headers["Location"].endswith("/api-keys/new")
    shown = client.get(created.headers["Location"])
    assert shown.headers["Cache-Control"] == "no-store"
    key = _KEY.search(shown.get_data(as_text=True)).group(1)
    with app.app_context():
        checked = api_keys.check(key)
        assert checked.is_admin and checked.key.admin.email == "admin@relay.test" and checked.key.scope == "read"
        assert AuditEntry.get(AuditEntry.action == "api_key.create").subject == "admin admin@relay.test"
    again = client.get(created.headers["Location"], follow_redirects=True).get_data(as_text=True)
    assert "An API key is shown once" in again and key not in again
    page = client.get("/api-keys/").get_data(as_text=True)
    assert f"ak_{key.split('_')[1]}_…" in page and "provisioning" in page and key not in page

    bad = client.form("/api-keys/", {"scope": "send"}, follow_redirects=True).get_data(as_text=True)
    assert "No key was created: the scope is one of read, manage" in bad
    assert client.form(f"/api-keys/{checked.key.id}/revoke").status_code == 302
    with app.app_context():
        assert api_keys.check(key) is None
        assert ApiKey.select().count() == 1


def test_a_viewer_has_no_admin_keys_page(app, viewer_client):
    assert viewer_client.get("/api-keys/").status_code == 403
    assert viewer_client.form("/api-keys/", {"scope": "manage"}).status_code == 403
    assert "Admin API keys" not in viewer_client.get("/").get_data(as_text=True)
