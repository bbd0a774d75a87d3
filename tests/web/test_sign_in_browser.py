"""Sign-in security in real headless Chromium: setting up TOTP from the QR page, signing in with a
code computed here with pyotp, a recovery code that works once, the rule that sends a user without a
second factor to set one up, invitations, and the audit log that shows all of it."""

from __future__ import annotations

import time

import pyotp

from appliance import admins

from .conftest import ADMIN, shot, sign_in


def sign_out(page) -> None:
    page.click("button:text('Sign out')")
    page.wait_for_selector("text=You are signed out.")


def enrol(page) -> tuple[str, list[str]]:
    """On the two-factor page: check the QR code is drawn, read the key as a person would type it."""
    page.wait_for_selector("img.qr")
    assert page.evaluate("document.querySelector('img.qr').naturalWidth") > 0  # the CSP let the data: image in
    secret = page.inner_text("#totp-secret")
    page.fill("input[name=code]", pyotp.TOTP(secret).now())
    page.click("button:text('Turn on two-factor sign-in')")
    page.wait_for_selector("#recovery-codes")
    return secret, page.locator("#recovery-codes code").all_inner_texts()


def test_a_user_sets_up_totp_signs_in_with_a_code_and_a_recovery_code_works_once(app, page):
    with app.app_context():
        admins.create(*ADMIN)
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")
    page.click("text=Two-factor")
    shot(page, "two-factor-setup")
    secret, codes = enrol(page)
    assert len(codes) == 10
    shot(page, "recovery-codes")
    page.click("text=I saved them")
    sign_out(page)

    # Password, then the code the app shows (the next time step's: enrolment used this one's).
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Two-factor sign-in')")
    assert page.url.endswith("/login/code")
    shot(page, "sign-in-code")
    page.fill("input[name=code]", pyotp.TOTP(secret).at(time.time() + 30))
    page.click("button:text('Sign in')")
    page.wait_for_selector("h1:text('Overview')")
    sign_out(page)

    # A recovery code instead of the app, once.
    sign_in(page, *ADMIN)
    page.fill("input[name=code]", codes[0])
    page.click("button:text('Sign in')")
    page.wait_for_selector("h1:text('Overview')")
    assert page.is_visible("text=You signed in with a recovery code; 9 left.")
    sign_out(page)
    sign_in(page, *ADMIN)
    page.fill("input[name=code]", codes[0])
    page.click("button:text('Sign in')")
    page.wait_for_selector("text=That code is not right")
    assert page.url.endswith("/login/code")
    assert [e for e in page.console_errors if "status of 401" not in e] == []


def test_a_user_without_two_factor_is_sent_to_enrol_once_an_admin_requires_it(app, page, live_url):
    with app.app_context():
        admins.create(*ADMIN)
    sign_in(page, *ADMIN)
    page.click("nav >> text=Users")
    page.fill("input[name=email]", "clerk@relay.test")
    page.select_option("form[action='/users/'] select[name=role]", "viewer")
    page.click("button:text('Invite')")
    link = page.input_value("#invitation-link")
    shot(page, "users-invited")
    page.check("input[name=required]")
    page.click("button:text('Save')")
    # The admin has no second factor either: the next page is the set-up.
    page.wait_for_selector("#enrol-required")
    page.goto("/messages/")
    assert page.url.endswith("/two-factor")
    enrol(page)

    # The invited clerk opens the link in their own browser, chooses a password, and must enrol.
    browser = page.context.browser
    clerk = browser.new_context(base_url=live_url).new_page()
    clerk.set_default_timeout(20_000)
    clerk.goto(link)
    clerk.fill("input[name=new_password]", "clerk password 1")
    clerk.fill("input[name=confirm_password]", "clerk password 1")
    clerk.click("button:text('Choose password and sign in')")
    clerk.wait_for_selector("#enrol-required")
    assert clerk.url.endswith("/two-factor")
    clerk.goto("/accounts/")
    assert clerk.url.endswith("/two-factor")
    enrol(clerk)
    clerk.click("text=I saved them")
    clerk.wait_for_selector("h1:text('Overview')")
    assert clerk.is_visible("text=clerk@relay.test (viewer)")

    # The admin sees the clerk's second factor and session on the Users page.
    page.goto("/users/")
    row = page.locator("#users tr", has_text="clerk@relay.test")
    assert row.locator("td >> nth=3").inner_text() == "on"
    assert row.locator("td >> nth=5").inner_text() == "1"
    assert page.console_errors == []


def test_the_audit_log_shows_the_changes(app, page):
    with app.app_context():
        admins.create(*ADMIN)
    sign_in(page, *ADMIN)
    page.click("text=Create an SMTP account")
    page.fill("input[name=name]", "Web shop")
    page.click("text=Create account")
    page.goto("/suppressions/")
    page.fill("input[name=address]", "bob@example.com")
    page.click("button:text('Suppress')")
    page.click("nav >> text=Users")
    page.fill("input[name=email]", "clerk@relay.test")
    page.click("button:text('Invite')")
    page.click("nav >> text=Audit log")
    page.wait_for_selector("h1:text('Audit log')")
    rows = page.locator("#audit tbody tr").all_inner_texts()
    assert [r.split("\t")[3] for r in rows] == ["user.create", "suppression.add", "account.create"]
    assert all(f"{ADMIN[0]}\t127.0.0.1" in r for r in rows)
    assert "address bob@example.com" in rows[1]
    shot(page, "audit-log")
    assert page.console_errors == []
