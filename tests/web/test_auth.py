"""Sign-in, throttling, sign-out, own password, roles."""

from __future__ import annotations

from appliance import admins
from appliance.web.auth import LoginThrottle

from .conftest import ADMIN, Dashboard


def test_the_login_page_is_reachable_without_signing_in(anon):
    response = anon.get("/login")
    assert response.status_code == 200
    assert b"Sign in" in response.data


def test_a_right_password_signs_in_and_leads_to_the_overview(anon, admin):
    response = anon.login(*admin)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert b"Overview" in anon.get("/").data


def test_a_wrong_password_is_refused_with_a_plain_message(anon, admin):
    response = anon.login(admin[0], "not the password")
    assert response.status_code == 401
    assert b"Wrong e-mail or password." in response.data
    assert anon.get("/").status_code == 302


def test_an_unknown_email_gets_the_same_answer_as_a_wrong_password(anon, admin):
    response = anon.login("nobody@relay.test", admin[1])
    assert response.status_code == 401
    assert b"Wrong e-mail or password." in response.data


def _sign_in_from(dashboard: Dashboard, ip: str, email: str, password: str):
    return dashboard.form("/login", {"email": email, "password": password}, environ_base={"REMOTE_ADDR": ip})


def test_five_wrong_dashboard_passwords_make_the_guesser_wait_not_the_admin(app, admin):
    guesser = Dashboard(app.test_client())
    for _ in range(5):
        assert _sign_in_from(guesser, "192.0.2.66", admin[0], "guess").status_code == 401
    response = _sign_in_from(guesser, "192.0.2.66", *admin)
    assert response.status_code == 429
    assert b"Too many failed sign-ins from your address. Try again in 30 seconds." in response.data
    # The admin, from their own address, signs in at once with the right password.
    owner = Dashboard(app.test_client())
    assert _sign_in_from(owner, "198.51.100.7", *admin).status_code == 302
    assert b"Overview" in owner.get("/", environ_base={"REMOTE_ADDR": "198.51.100.7"}).data


def test_one_address_trying_many_emails_runs_out_of_its_own_budget(app, admin):
    sprayer = Dashboard(app.test_client())
    for n in range(20):
        assert _sign_in_from(sprayer, "192.0.2.99", f"user{n}@relay.test", "Summer2026!").status_code == 401
    assert _sign_in_from(sprayer, "192.0.2.99", "someone@relay.test", "Summer2026!").status_code == 429
    assert _sign_in_from(Dashboard(app.test_client()), "192.0.2.100", *admin).status_code == 302


def test_the_throttle_doubles_the_wait_after_each_further_failure_and_forgets_in_time():
    now = [1000.0]
    throttle = LoginThrottle(
        pair_free=2, ip_free=10, first_delay=30, max_delay=100, forget_after=600, clock=lambda: now[0]
    )
    throttle.fail("192.0.2.1", "a@relay.test")
    assert throttle.wait_seconds("192.0.2.1", "a@relay.test") == 0
    throttle.fail("192.0.2.1", "a@relay.test")
    assert throttle.wait_seconds("192.0.2.1", "a@relay.test") == 30
    assert throttle.wait_seconds("192.0.2.2", "a@relay.test") == 0  # another address: no wait
    assert throttle.wait_seconds("192.0.2.1", "b@relay.test") == 0  # the same address, another user
    throttle.fail("192.0.2.1", "a@relay.test")
    assert throttle.wait_seconds("192.0.2.1", "a@relay.test") == 60
    throttle.fail("192.0.2.1", "a@relay.test")
    assert throttle.wait_seconds("192.0.2.1", "a@relay.test") == 100  # capped
    now[0] += 601
    assert throttle.wait_seconds("192.0.2.1", "a@relay.test") == 0


def test_a_success_clears_the_pair_but_not_the_address_budget():
    throttle = LoginThrottle(pair_free=2, ip_free=3, first_delay=30, clock=lambda: 1000.0)
    for email in ("a@relay.test", "a@relay.test", "b@relay.test"):
        throttle.fail("192.0.2.1", email)
    throttle.succeeded("192.0.2.1", "a@relay.test")
    assert throttle.wait_seconds("192.0.2.1", "c@relay.test") == 30  # three failures from the address


def test_next_goes_back_to_the_page_asked_for_but_never_off_site(anon, admin):
    assert anon.get("/messages/").headers["Location"] == "/login?next=/messages/"
    good = anon.form("/login", {"email": admin[0], "password": admin[1], "next": "/messages/"})
    assert good.headers["Location"] == "/messages/"
    anon.post("/logout", data={"csrf_token": anon.token()})
    anon._token = None
    evil = anon.form("/login", {"email": admin[0], "password": admin[1], "next": "//evil.test/"})
    assert evil.headers["Location"] == "/"


def test_sign_out_needs_a_post_and_ends_the_session(client):
    assert client.get("/logout").status_code == 405
    response = client.form("/logout")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_changing_the_password_needs_the_current_one(client):
    response = client.form(
        "/password",
        {"current_password": "wrong", "new_password": "a new long secret", "confirm_password": "a new long secret"},
    )
    assert response.status_code == 400
    assert b"The current password is not right." in response.data


def test_changing_the_password_refuses_two_different_new_passwords(client):
    response = client.form(
        "/password",
        {"current_password": ADMIN[1], "new_password": "a new long secret", "confirm_password": "another one here"},
    )
    assert response.status_code == 400
    assert b"The two new passwords differ." in response.data


def test_changing_the_password_refuses_a_short_one(client):
    response = client.form(
        "/password", {"current_password": ADMIN[1], "new_password": "short", "confirm_password": "short"}
    )
    assert response.status_code == 400
    assert b"at least 10 characters" in response.data


def test_a_changed_password_works_and_signs_out_other_sessions(app, client):
    other = Dashboard(app.test_client())
    other.login(*ADMIN)
    assert other.get("/").status_code == 200
    response = client.form(
        "/password",
        {"current_password": ADMIN[1], "new_password": "a new long secret", "confirm_password": "a new long secret"},
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert other.get("/").status_code == 302
    with app.app_context():
        assert admins.verify(ADMIN[0], "a new long secret") is not None
        assert admins.verify(*ADMIN) is None


def test_a_viewer_sees_pages_but_cannot_change_anything(viewer_client):
    assert viewer_client.get("/accounts/").status_code == 200
    assert viewer_client.get("/accounts/new").status_code == 403
    response = viewer_client.form("/accounts/new", {"name": "Shop", "priority": "3"})
    assert response.status_code == 403
    assert b"can look at everything but change nothing" in response.data


def test_a_viewer_can_change_their_own_password(viewer_client, viewer):
    response = viewer_client.form(
        "/password",
        {"current_password": viewer[1], "new_password": "a new long secret", "confirm_password": "a new long secret"},
    )
    assert response.status_code == 302
