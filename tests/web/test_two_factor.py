"""Two-factor sign-in over HTTP: enrolment with a QR code, a TOTP code after the password, recovery
codes that work once, the rule that everyone must have it."""

from __future__ import annotations

import re
import time

import pyotp

from appliance import twofactor
from appliance.models import AdminUser, RecoveryCode

from .conftest import ADMIN, Dashboard

SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
CODES = re.compile(r"<li><code>([a-z0-9-]{19})</code></li>")


def enrol(client: Dashboard) -> tuple[str, list[str]]:
    """Set up TOTP as a person would: read the key from the page, send the app's code."""
    secret = SECRET.search(client.get("/two-factor").get_data(as_text=True)).group(1)
    response = client.form("/two-factor", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302 and response.headers["Location"] == "/two-factor/codes"
    return secret, CODES.findall(client.get("/two-factor/codes").get_data(as_text=True))


def password_step(app, email=ADMIN[0], password=ADMIN[1]) -> Dashboard:
    dashboard = Dashboard(app.test_client())
    response = dashboard.login(email, password)
    assert response.status_code == 302 and response.headers["Location"] == "/login/code"
    return dashboard


def test_enrolment_shows_a_qr_code_and_the_key_and_needs_a_right_code(client):
    page = client.get("/two-factor").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page  # drawn on the server; the CSP allows data: images
    secret = SECRET.search(page).group(1)
    assert client.get("/two-factor").get_data(as_text=True).count(secret) == 1  # the same key until confirmed
    wrong = client.form("/two-factor", {"code": "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"})
    assert wrong.status_code == 400 and b"That code is not right" in wrong.data
    right = client.form("/two-factor", {"code": pyotp.TOTP(secret).now()})
    assert right.status_code == 302 and right.headers["Location"] == "/two-factor/codes"
    shown = client.get("/two-factor/codes")
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    codes = CODES.findall(shown.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    admin = AdminUser.get(AdminUser.email == ADMIN[0])
    assert admin.totp_secret == secret
    stored = {row.code_hash for row in RecoveryCode.select()}
    assert len(stored) == 10 and not stored & set(codes)  # only hashes are kept


def test_after_the_password_the_dashboard_asks_for_the_code_and_then_signs_in(app, client):
    secret, _ = enrol(client)
    dashboard = password_step(app)
    assert dashboard.get("/").status_code == 302  # the password alone does not sign in
    # Enrolment used this time step's code; the app shows the next one within 30 s (one step of
    # clock drift is accepted either way).
    response = dashboard.form("/login/code", {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert b"Overview" in dashboard.get("/").data


def test_a_totp_code_signs_in_only_once(app, client):
    secret, _ = enrol(client)
    code = pyotp.TOTP(secret).at(time.time() + 30)
    first = password_step(app)
    assert first.form("/login/code", {"code": code}).status_code == 302
    again = password_step(app)
    assert again.form("/login/code", {"code": code}).status_code == 401


def test_a_recovery_code_signs_in_once(app, client):
    _, codes = enrol(client)
    first = password_step(app)
    response = first.form("/login/code", {"code": codes[3].upper()}, follow_redirects=True)
    assert b"You signed in with a recovery code; 9 left." in response.data
    again = password_step(app)
    assert again.form("/login/code", {"code": codes[3]}).status_code == 401
    assert again.form("/login/code", {"code": codes[4]}).status_code == 302


def test_wrong_codes_make_the_guesser_wait(app, client):
    enrol(client)
    guesser = password_step(app)
    for _ in range(5):
        assert guesser.form("/login/code", {"code": "12345x"}).status_code == 401
    assert guesser.form("/login/code", {"code": "123456"}).status_code == 429


def test_when_two_factor_is_required_a_user_without_it_is_sent_to_enrol(app, client):
    twofactor.set_required(True)
    for url in ("/", "/accounts/", "/password"):
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"] == "/two-factor", url
    fragment = client.get("/messages/", headers={"HX-Request": "true"})
    assert fragment.headers["HX-Redirect"] == "/two-factor"
    assert b"An admin requires two-factor sign-in" in client.get("/two-factor").data
    enrol(client)
    assert client.get("/").status_code == 200


def test_turning_two_factor_off_needs_a_code_and_is_refused_while_required(client):
    secret, _ = enrol(client)
    assert client.form("/two-factor", {"action": "disable", "code": "nope"}).status_code == 400
    twofactor.set_required(True)
    refused = client.form("/two-factor", {"action": "disable", "code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert refused.status_code == 400 and b"requires two-factor sign-in for everyone" in refused.data
    twofactor.set_required(False)
    off = client.form("/two-factor", {"action": "disable", "code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert off.status_code == 302
    assert AdminUser.get(AdminUser.email == ADMIN[0]).totp_secret == ""


def test_new_recovery_codes_replace_the_old_ones(app, client):
    _, old = enrol(client)
    response = client.form("/two-factor", {"action": "codes"})
    assert response.status_code == 302
    new = CODES.findall(client.get("/two-factor/codes").get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    dashboard = password_step(app)
    assert dashboard.form("/login/code", {"code": old[0]}).status_code == 401
    assert dashboard.form("/login/code", {"code": new[0]}).status_code == 302


def test_reloading_the_recovery_codes_page_shows_them_no_more_and_makes_none(client):
    enrol(client)
    hashes = {row.code_hash for row in RecoveryCode.select()}
    again = client.get("/two-factor/codes")  # a reload, or the back button
    assert again.status_code == 302 and again.headers["Location"] == "/two-factor"
    page = client.get("/two-factor").get_data(as_text=True)
    assert "Recovery codes are shown once" in page and not CODES.findall(page)
    assert {row.code_hash for row in RecoveryCode.select()} == hashes  # nothing was made again
