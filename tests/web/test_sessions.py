"""Server-side sessions: the cookie is a random id, and a session ends for real at sign-out, at a
password change and when an admin signs a user out everywhere."""

from __future__ import annotations

import datetime as dt
import hashlib

from appliance import clock
from appliance.models import WebSession

from .conftest import ADMIN, Dashboard


def _copy_of(app, dashboard: Dashboard) -> Dashboard:
    """Another browser that was given a copy of ``dashboard``'s session cookie."""
    thief = Dashboard(app.test_client())
    thief.set_cookie("session", dashboard.get_cookie("session").value)
    return thief


def test_the_session_cookie_carries_only_a_random_id_whose_hash_names_the_record(client):
    token = client.get_cookie("session").value
    assert len(token) == 43 and ADMIN[0] not in token and "." not in token  # no signed data in it
    row = WebSession.get(WebSession.id == hashlib.sha256(token.encode()).hexdigest())
    assert row.admin.email == ADMIN[0]
    assert token not in row.data


def test_signing_in_gives_the_session_a_new_id(anon, admin):
    anon.get("/login")
    before = anon.get_cookie("session").value
    anon.login(*admin)
    after = anon.get_cookie("session").value
    assert after != before
    assert WebSession.get_or_none(WebSession.id == hashlib.sha256(before.encode()).hexdigest()) is None


def test_logout_does_not_end_the_session_a_copied_cookie_stops_working_after_logout(app, client):
    thief = _copy_of(app, client)
    assert thief.get("/").status_code == 200  # the copy works while the session lives
    client.form("/logout")
    assert client.get("/").status_code == 302
    response = thief.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert WebSession.select().where(WebSession.admin.is_null(False)).count() == 0


def test_logout_does_not_end_the_session_a_copied_cookie_stops_working_after_a_password_change(app, client):
    thief = _copy_of(app, client)
    assert thief.get("/").status_code == 200
    response = client.form(
        "/password",
        {"current_password": ADMIN[1], "new_password": "a new long secret", "confirm_password": "a new long secret"},
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200  # the session that changed it goes on
    assert thief.get("/").status_code == 302
    assert WebSession.select().where(WebSession.admin.is_null(False)).count() == 1


def test_a_session_unused_for_longer_than_the_idle_timeout_ends(client):
    assert client.get("/").status_code == 200
    later = clock.now() + dt.timedelta(hours=13)
    clock.set_clock(lambda: later)
    try:
        assert client.get("/").status_code == 302
    finally:
        clock.set_clock(None)


def test_signing_out_still_shows_the_goodbye_on_the_sign_in_page(client):
    response = client.form("/logout", follow_redirects=True)
    assert b"You are signed out." in response.data
