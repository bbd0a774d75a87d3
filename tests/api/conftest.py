"""Fixtures of the HTTP API tests: the appliance served on loopback with its relay and workers, mail
routed to a DKIM-checking sink MX, API keys, and an HTTP client whose every answer is checked against
the OpenAPI document."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from appliance import accounts, admins, api_keys
from appliance.api.spec import document
from appliance.models import AdminUser
from tests.support.dkim import signed_route
from tests.support.openapi import OpenApiChecker
from tests.support.relay import relay_overrides
from tests.support.web import served


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def web(app):
    """The appliance's web server (dashboard and API) on a free loopback port."""
    with served(app) as url:
        yield url


@pytest.fixture
def sink(app, shop_domain, dns_server, sink_mx):
    """example.test's MX on 127.0.0.3, shop.test's DKIM records in the test DNS."""
    with app.app_context():
        return signed_route(app, shop_domain, dns_server, sink_mx)


@pytest.fixture
def make_key(app):
    """``make_key(account_ref, scope="send")``: a new API key (the key itself) of an account."""

    def make(account_ref: str, scope: str = "send") -> str:
        with app.app_context():
            return api_keys.create(accounts.find(account_ref), scope)[1]

    return make


@pytest.fixture
def make_admin_key(app):
    """``make_admin_key(email="root@example.test", scope="manage", role="admin")``: an admin key of
    a dashboard user (made when it does not exist yet)."""

    def make(email: str = "root@example.test", scope: str = "manage", role: str = "admin") -> str:
        with app.app_context():
            admin = AdminUser.get_or_none(AdminUser.email == email)
            if admin is None:
                admin = admins.create(email, "correct horse battery staple", role=role)
            return api_keys.create_admin(admin, scope)[1]

    return make


@pytest.fixture
def admin_key(make_admin_key) -> str:
    """A manage admin key of the dashboard admin root@example.test."""
    return make_admin_key()


@pytest.fixture
def shop_key(account, make_key) -> str:
    """A send key of the `account` fixture's SMTP account (which may send as anyone at shop.test)."""
    return make_key(account[0])


@pytest.fixture
def checker(app) -> OpenApiChecker:
    with app.app_context():
        return OpenApiChecker(document())


class ApiClient:
    """requests against the served API; every answer is checked against the OpenAPI document."""

    def __init__(self, base: str, checker: OpenApiChecker):
        self.base, self.checker = base, checker
        self.http = requests.Session()

    def request(self, method: str, path: str, key: str | None = None, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = self.http.request(method, self.base + path, headers=headers, timeout=30, **kwargs)
        self.checker.check(
            method,
            urlsplit(response.url).path,
            response.status_code,
            response.headers["Content-Type"],
            response.content,
        )
        return response

    def send(self, key: str | None, payload=None, **kwargs) -> requests.Response:
        if payload is not None:
            kwargs["json"] = payload
        return self.request("POST", "/api/v1/messages", key, **kwargs)


@pytest.fixture
def api(web, checker) -> ApiClient:
    client = ApiClient(web, checker)
    yield client
    client.http.close()
