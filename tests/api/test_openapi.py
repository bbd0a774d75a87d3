"""The OpenAPI document is generated from the code, served at /api/v1/openapi.json with a docs page."""

from __future__ import annotations

import re

import pytest

from appliance.api import API_KEY
from tests.support.browser import ARGS, CHROMIUM


def test_the_document_is_openapi_3_1_and_lists_the_send_operation(api):
    document = api.http.get(api.base + "/api/v1/openapi.json", timeout=10).json()
    assert document["openapi"] == "3.1.0"
    send = document["paths"]["/api/v1/messages"]["post"]
    assert set(send["requestBody"]["content"]) == {"application/json", "message/rfc822"}
    assert {"202", "401", "403", "422", "429"} <= set(send["responses"])
    assert send["responses"]["403"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDocument"}}
    }
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert not any(path.startswith("/accounts") for path in document["paths"])  # the dashboard is not the API


def test_every_api_view_is_in_the_document_with_each_of_its_methods(app, api):
    document = api.http.get(api.base + "/api/v1/openapi.json", timeout=10).json()
    listed = 0
    for rule in app.url_map.iter_rules():
        if getattr(app.view_functions[rule.endpoint], "permission", "") != API_KEY:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = document["paths"][path][method.lower()]
            assert operation["summary"] and "401" in operation["responses"], (method, path)
            listed += 1
    assert listed >= 25


def test_the_docs_page_draws_the_reference_from_vendored_files(api):
    page = api.http.get(api.base + "/api/v1/docs", timeout=10)
    assert page.status_code == 200
    scripts = re.findall(r'src="([^"]+)"', page.text)
    assert "/static/swagger-ui-bundle-5.32.0.js" in scripts and all(s.startswith("/static/") for s in scripts)
    for path in scripts:
        assert api.http.get(api.base + path, timeout=10).status_code == 200


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")
def test_the_docs_page_shows_the_operations_in_chromium_without_console_errors(web):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        tab = browser.new_page()
        errors = []
        tab.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        tab.goto(web + "/api/v1/docs")
        tab.wait_for_selector("text=Send a message", timeout=20_000)
        assert tab.locator(".opblock-summary-path", has_text="/api/v1/messages").count() >= 1
        browser.close()
    assert errors == []
