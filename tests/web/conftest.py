"""Dashboard fixtures: admin → client (signed in, CSRF on); messages stored through the real intake."""

from __future__ import annotations

import re

import pytest

from appliance import admins, intake
from appliance.db import atomic_write
from appliance.models import Domain

ADMIN = ("admin@relay.test", "correct horse battery")
VIEWER = ("viewer@relay.test", "read only staple 42")
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Dashboard:
    """A Flask test client that signs in and sends the CSRF token with every form, like a browser."""

    def __init__(self, client):
        self.client = client
        self._token: str | None = None

    def __getattr__(self, name):
        return getattr(self.client, name)

    def token(self) -> str:
        if self._token is None:
            # /two-factor: a page every signed-in user reaches, even one who must set up a second factor.
            page = self.client.get("/login" if not self.signed_in else "/two-factor").get_data(as_text=True)
            self._token = _TOKEN.search(page).group(1)
        return self._token

    @property
    def signed_in(self) -> bool:
        with self.client.session_transaction() as session:
            return "_user_id" in session

    def form(self, url: str, data: dict | None = None, **kwargs):
        """POST a form with the page's CSRF token, as the browser would."""
        return self.client.post(url, data={"csrf_token": self.token(), **(data or {})}, **kwargs)

    def login(self, email: str, password: str):
        response = self.form("/login", {"email": email, "password": password})
        self._token = None  # flask-login starts a fresh session on sign-in
        return response


@pytest.fixture
def admin(app):
    with app.app_context():
        admins.create(*ADMIN, role="admin")
    return ADMIN


@pytest.fixture
def viewer(app):
    with app.app_context():
        admins.create(*VIEWER, role="viewer")
    return VIEWER


@pytest.fixture
def anon(app) -> Dashboard:
    return Dashboard(app.test_client())


@pytest.fixture
def client(app, admin) -> Dashboard:
    dashboard = Dashboard(app.test_client())
    assert dashboard.login(*admin).status_code == 302
    return dashboard


@pytest.fixture
def viewer_client(app, viewer) -> Dashboard:
    dashboard = Dashboard(app.test_client())
    assert dashboard.login(*viewer).status_code == 302
    return dashboard


@pytest.fixture
def sending_domain(app):
    """shop.test as a verified sending domain, so accounts may send from it over SMTP."""
    return Domain.create(name="shop.test", selector="test", rsa_key="", ed25519_key="", verified=True)


@pytest.fixture
def store_message(app):
    """Store a message the way SMTP intake does; return its id."""

    def store(subject="Hello", mail_from="shop@shop.test", rcpts=("bob@example.com",), account_id=None,
              headers=""):
        raw = f"From: {mail_from}\r\nSubject: {subject}\r\n{headers}\r\nbody\r\n".encode()
        item = intake.prepare(raw, mail_from=mail_from, rcpts=list(rcpts), hostname=app.config["HOSTNAME"],
                              client_ip="127.0.0.1", client_helo="client.test", tls="TLSv1.3",
                              username=None, account_id=account_id, account_priority=3)
        with app.app_context(), atomic_write():
            intake.store(item)
        return item.id

    return store
