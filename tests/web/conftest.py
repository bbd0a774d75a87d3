"""Dashboard fixtures: admin → client (signed in, CSRF on); messages stored through the real intake;
the dashboard served on loopback and a page of real headless Chromium (Debian `chromium`, driven by
Playwright from PyPI) for the browser tests."""

from __future__ import annotations

import re

import pytest

from appliance import admins, intake
from appliance.db import atomic_write
from appliance.models import Domain
from tests.support import ROOT
from tests.support.browser import ARGS, CHROMIUM
from tests.support.relay import relay_overrides
from tests.support.web import served

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
    """Store a message the way SMTP intake does (``raw``: the whole message as given); return its id."""

    def store(
        subject="Hello", mail_from="shop@shop.test", rcpts=("bob@example.com",), account_id=None, headers="", raw=None
    ):
        raw = raw or f"From: {mail_from}\r\nSubject: {subject}\r\n{headers}\r\nbody\r\n".encode()
        item = intake.prepare(
            raw,
            mail_from=mail_from,
            rcpts=list(rcpts),
            hostname=app.config["HOSTNAME"],
            client_ip="127.0.0.1",
            client_helo="client.test",
            tls="TLSv1.3",
            username=None,
            account_id=account_id,
            account_priority=3,
        )
        with app.app_context(), atomic_write():
            intake.store(item)
        return item.id

    return store


SCREENSHOTS = ROOT / "tests" / "screenshots"  # see docs/dashboard.md


@pytest.fixture
def live_url(app):
    """Serve the app with waitress on a free loopback port in a background thread."""
    with served(app) as url:
        yield url


@pytest.fixture
def page(live_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(base_url=live_url, viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(20_000)
        tab.console_errors = []
        # Errors in the console: CSP violations, htmx or script errors, missing files. (A 400 is
        # a validation answer the scenario provokes on purpose.)
        tab.on(
            "console",
            lambda msg: msg.type == "error" and "status of 400" not in msg.text and tab.console_errors.append(msg.text),
        )
        yield tab
        browser.close()


def sign_in(page, email: str, password: str) -> None:
    """Fill in and send the sign-in form (the caller waits for where it leads)."""
    page.goto("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def delivering(overrides, dns_server, delivery_port, sink_mx):
    """Outbound mail for example.com goes to a sink MX on 127.0.0.3 (set before the app is built)."""
    overrides.update(relay_overrides(overrides, dns_server, delivery_port))
    dns_server.mx("example.com", (10, "mx.example.com"))
    dns_server.a("mx.example.com", "127.0.0.3")
    return sink_mx("127.0.0.3")
