"""Security invariants of the dashboard: login everywhere, a permission on every view, CSRF, CSP, escaping."""

from __future__ import annotations

import re

import pytest

from appliance.web.permissions import ADMIN, ADMIN_WRITES, API_KEY, PUBLIC, VIEWER

# The second sign-in step and an invitation are reached before signing in; each checks its own
# proof (a password checked minutes ago in this session; a signed, expiring, one-use link). The
# tracking links of delivered mail are followed by its recipients: their signed token is the proof.
# /metrics answers loopback or its bearer token only (tests/events/test_metrics.py). The HTTP API's
# document and its reference page describe the API and hold nothing of any account.
PUBLIC_ENDPOINTS = {
    "api.api_openapi",
    "api.api_docs",
    "auth.auth_login",
    "auth.auth_code",
    "auth.auth_invite",
    "health.health_show",
    "static",
    "metrics.metrics_show",
    "verify.verify_show",
    "tracking.tracking_open",
    "tracking.tracking_click",
    "tracking.tracking_unsubscribe_show",
    "tracking.tracking_unsubscribe",
    "checker.checker_result",  # a check's result page and its fragment: the signed token is the proof
    "checker.checker_findings",
}


def _sample_url(rule) -> str:
    values = {
        arg: 1 if rule._converters[arg].__class__.__name__ == "IntegerConverter" else "01ABC" for arg in rule.arguments
    }
    return rule.build(values, append_unknown=False)[1]


def test_every_view_carries_one_permission_decorator(app):
    missing = [
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint != "static"
        and getattr(view, "permission", None) not in (PUBLIC, VIEWER, ADMIN, ADMIN_WRITES, API_KEY)
    ]
    assert missing == []


def test_only_sign_in_health_static_files_invitations_verification_tracking_and_check_links_are_public(app):
    public = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint == "static" or getattr(view, "permission", None) == PUBLIC
    }
    assert public == PUBLIC_ENDPOINTS


def test_every_other_endpoint_sends_a_stranger_to_the_login_page(app, anon):
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or getattr(app.view_functions[rule.endpoint], "permission", "") == API_KEY:
            continue  # the API's views answer 401 instead (tests/web/test_api_keys.py)
        url = _sample_url(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": anon.token()} if method == "POST" else None
            response = anon.open(url, method=method, data=data)
            assert response.status_code == 302, (method, url)
            assert response.headers["Location"].startswith("/login"), (method, url)
            checked += 1
    assert checked >= 20


def test_an_expired_session_answers_htmx_with_hx_redirect_not_a_login_fragment(anon):
    response = anon.get("/messages/", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"] == "/login"
    assert response.status_code == 401
    assert b"Sign in" not in response.data


def test_the_public_sign_in_steps_give_a_stranger_nothing(anon):
    code = anon.form("/login/code", {"code": "123456"})
    assert code.status_code == 302 and code.headers["Location"] == "/login"
    invite = anon.get("/invite/not-a-token")
    assert invite.status_code == 410
    assert b"This invitation link is not valid" in invite.data
    assert anon.get("/").status_code == 302


@pytest.mark.parametrize(
    "url",
    [
        "/accounts/new",
        "/suppressions/",
        "/login",
        "/login/code",
        "/password",
        "/two-factor",
        "/users/",
        "/users/two-factor",
        "/invite/x",
    ],
)
def test_a_form_post_without_csrf_token_is_refused(app, client, url):
    response = client.post(url, data={"name": "x", "address": "a@b.test", "email": "a@b.test"})
    assert response.status_code == 400
    assert b"This form has expired" in response.data


def test_an_htmx_post_is_accepted_with_the_token_in_the_x_csrftoken_header(client):
    page = client.get("/accounts/").get_data(as_text=True)
    body_token = re.search(r'hx-headers:inherited=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)
    refused = client.post("/suppressions/", data={"address": "a@b.test"}, headers={"HX-Request": "true"})
    assert refused.status_code == 400
    accepted = client.post(
        "/suppressions/", data={"address": "a@b.test"}, headers={"HX-Request": "true", "X-CSRFToken": body_token}
    )
    assert accepted.status_code == 302


def test_every_page_forbids_inline_script_through_the_content_security_policy(client):
    policy = client.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert client.get("/login").headers["Content-Security-Policy"] == policy


def test_templates_contain_no_inline_script_style_or_event_handler(app):
    from pathlib import Path

    for path in Path(app.template_folder).rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=|hx-on", text), path


def test_the_session_cookie_is_httponly_and_samesite_lax(anon, admin):
    response = anon.login(*admin)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_the_session_cookie_is_secure_when_the_dashboard_is_served_over_tls(anon, admin):
    token = anon.token()
    response = anon.post(
        "/login", data={"csrf_token": token, "email": admin[0], "password": admin[1]}, base_url="https://relay.test"
    )
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "; Secure" in cookie


def test_a_subject_with_markup_is_shown_as_text_in_the_log_and_the_detail(client, store_message):
    message_id = store_message(
        subject="<script>alert(1)</script><img src=x onerror=alert(2)>",
        mail_from="a<b>@shop.test",
        headers="X-Evil: <svg onload=alert(3)>\r\n",
    )
    for url in ("/messages/", f"/messages/{message_id}", "/"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>alert(1)" not in page and "<img src=x" not in page and "<svg onload" not in page
    detail = client.get(f"/messages/{message_id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "&lt;svg onload=alert(3)&gt;" in detail
