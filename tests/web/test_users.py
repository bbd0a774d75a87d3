"""The Users page: invite, choose a password through the link, roles, disable, sign out everywhere,
reset a second factor."""

from __future__ import annotations

import re

import pytest

from appliance import admins
from appliance.accounts import AccountError
from appliance.models import AdminUser, Message, MessageBody, WebSession

from .conftest import ADMIN, VIEWER, Dashboard

LINK = re.compile(r'id="invitation-link" value="([^"]+)"')
NEW_USER = "new@relay.test"


def invite(client: Dashboard, email: str = NEW_USER, role: str = "viewer", **extra) -> str:
    response = client.form("/users/", {"email": email, "role": role, **extra})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return LINK.search(response.get_data(as_text=True)).group(1)


def _path(link: str) -> str:
    """The link's path (it starts with PUBLIC_URL, or the address the admin used)."""
    return "/" + link.split("/", 3)[3]


def accept(app, link: str, password: str = "chosen password 1") -> Dashboard:
    newcomer = Dashboard(app.test_client())
    path = _path(link)
    assert newcomer.get(path).status_code == 200
    response = newcomer.form(path, {"new_password": password, "confirm_password": password})
    assert response.status_code == 302, response.data
    return newcomer


def test_an_invited_user_chooses_a_password_through_the_link_and_is_signed_in(app, client):
    link = invite(client)
    assert "/invite/" in link
    user = AdminUser.get(AdminUser.email == NEW_USER)
    assert user.password_hash == "" and user.role == "viewer"
    assert b"invited" in client.get("/users/").data
    newcomer = accept(app, link)
    page = newcomer.get("/").get_data(as_text=True)
    assert f"{NEW_USER} (viewer)" in page
    # The link works once.
    again = Dashboard(app.test_client()).get(_path(link))
    assert again.status_code == 410 and b"was used or replaced" in again.data
    assert admins.verify(NEW_USER, "chosen password 1") is not None


def test_an_invitation_can_be_mailed_through_the_relay(client):
    link = invite(client, send="on")
    message = Message.get(Message.subject == "Your invitation to the mail relay dashboard")
    body = bytes(MessageBody.get(MessageBody.message == message.id).data).decode()
    assert f"To: {NEW_USER}" in body
    assert link in body.replace("=\r\n", "").replace("=\n", "")


def test_a_new_invitation_replaces_the_old_link_and_an_expired_one_is_refused(app, client, monkeypatch):
    old = invite(client)
    user = AdminUser.get(AdminUser.email == NEW_USER)
    response = client.form(f"/users/{user.id}/invite")
    new = LINK.search(response.get_data(as_text=True)).group(1)
    assert new != old
    assert Dashboard(app.test_client()).get(_path(old)).status_code == 410
    monkeypatch.setattr(admins, "INVITATION_TTL", -1)
    expired = Dashboard(app.test_client()).get(_path(new))
    assert expired.status_code == 410 and b"This invitation has expired" in expired.data


def test_a_disabled_user_is_signed_out_and_cannot_sign_in(app, client, viewer, viewer_client):
    assert viewer_client.get("/").status_code == 200
    user = AdminUser.get(AdminUser.email == VIEWER[0])
    assert client.form(f"/users/{user.id}/disable").status_code == 302
    assert viewer_client.get("/").status_code == 302
    assert Dashboard(app.test_client()).login(*viewer).status_code == 401
    client.form(f"/users/{user.id}/enable")
    assert Dashboard(app.test_client()).login(*viewer).status_code == 302


def test_sign_out_everywhere_ends_every_session_of_that_user(app, client, viewer, viewer_client):
    second = Dashboard(app.test_client())
    second.login(*viewer)
    user = AdminUser.get(AdminUser.email == VIEWER[0])
    assert ">2</td>" in client.get("/users/").get_data(as_text=True)
    response = client.form(f"/users/{user.id}/sign-out", follow_redirects=True)
    assert f"{VIEWER[0]} is signed out everywhere (2 sessions)." in response.get_data(as_text=True)
    assert viewer_client.get("/").status_code == 302 and second.get("/").status_code == 302
    assert client.get("/").status_code == 200
    assert WebSession.select().where(WebSession.admin == user.id).count() == 0


def test_a_role_change_takes_effect_at_the_next_request(client, viewer, viewer_client):
    assert viewer_client.get("/accounts/new").status_code == 403
    user = AdminUser.get(AdminUser.email == VIEWER[0])
    assert client.form(f"/users/{user.id}/role", {"role": "admin"}).status_code == 302
    assert viewer_client.get("/accounts/new").status_code == 200


def test_nobody_disables_themselves_and_the_last_active_admin_stays_one(app, client):
    me = AdminUser.get(AdminUser.email == ADMIN[0])
    response = client.form(f"/users/{me.id}/disable", follow_redirects=True)
    assert b"You cannot disable yourself" in response.data
    assert AdminUser.get_by_id(me.id).active
    with pytest.raises(AccountError, match="the last active admin cannot become a viewer"):
        admins.set_role(me, "viewer")
    with pytest.raises(AccountError, match="the last active admin cannot be disabled"):
        admins.set_active(me, False)


def test_a_viewer_cannot_reach_the_users_page(viewer_client):
    assert viewer_client.get("/users/").status_code == 403
    assert viewer_client.form("/users/", {"email": "x@relay.test", "role": "admin"}).status_code == 403
    assert AdminUser.get_or_none(AdminUser.email == "x@relay.test") is None


def test_a_bad_address_is_a_form_error(client):
    response = client.form("/users/", {"email": "not an address", "role": "viewer"})
    assert response.status_code == 400 and b"Not an e-mail address" in response.data
    response = client.form("/users/", {"email": ADMIN[0], "role": "viewer"})
    assert response.status_code == 400 and b"exists already" in response.data
    response = client.form("/users/", {"email": "ok@relay.test", "role": "root"})
    assert response.status_code == 400 and b"Role must be one of admin, viewer" in response.data


def test_an_invitation_with_two_different_or_short_passwords_is_a_form_error(app, client):
    path = _path(invite(client))
    newcomer = Dashboard(app.test_client())
    differ = newcomer.form(path, {"new_password": "chosen password 1", "confirm_password": "chosen password 2"})
    assert differ.status_code == 400 and b"The two new passwords differ." in differ.data
    short = newcomer.form(path, {"new_password": "short", "confirm_password": "short"})
    assert short.status_code == 400 and b"at least 10 characters" in short.data
    assert newcomer.get(path).status_code == 200  # still unused
