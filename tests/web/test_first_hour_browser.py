"""A new owner's first hour in Chromium: reloading the page that shows a new account's password
creates nothing and shows it no more; a sender verification link opened in the browser verifies
only once its button is pressed, and a reload after that repeats nothing."""

from __future__ import annotations

import re

import pytest

from appliance import senders
from appliance.models import Sender, SmtpAccount

from .conftest import ADMIN, CHROMIUM, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")


def test_reloading_the_new_password_page_creates_no_second_account_and_hides_the_password(app, page, admin):
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")
    page.goto("/accounts/new")
    page.fill("input[name=name]", "Web shop")
    page.click("text=Create account")
    password = page.input_value("#smtp-password")
    assert re.fullmatch(r"[A-Za-z0-9]{24}", password)
    assert re.search(r"/accounts/\d+/password$", page.url)  # a GET the POST redirected to

    page.reload()
    assert "shown once" in page.inner_text("main") and password not in page.content()
    assert SmtpAccount.select().count() == 1


def test_a_verification_link_opened_in_the_browser_verifies_only_after_the_button(app, page, live_url):
    sender = senders.add("jo@owner.test")
    link = senders.verification_url({**app.config, "PUBLIC_URL": live_url}, sender)
    page.goto(link)  # what a phone opens from the mail (and what a link scanner fetches)
    assert "asks to send mail as jo@owner.test" in page.inner_text("main")
    assert not Sender.get_by_id(sender.id).verified

    page.click("button[type=submit]")
    page.wait_for_selector("text=is verified")
    assert Sender.get_by_id(sender.id).verified_by == "link"
    assert page.url == link  # the POST redirected back to the link's page
    page.reload()  # a GET: nothing is posted again
    assert "is verified" in page.inner_text("main")
