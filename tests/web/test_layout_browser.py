"""The dashboard's layout at a laptop's 1280 px: the menu never wraps (a column of links), the
message log's filters line up in a grid, and a checkbox sits before its words."""

from __future__ import annotations

import pytest

from .conftest import ADMIN, CHROMIUM, shot, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")


def box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def test_at_1280_px_the_header_is_one_line_and_every_menu_link_is_in_one_column(app, page, admin):
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")
    header = box(page, "header.top")
    assert header["height"] < 60  # brand and the user's links on one line
    links = page.locator("nav a")
    lefts = {round(links.nth(i).bounding_box()["x"]) for i in range(links.count())}
    assert len(lefts) == 1 and links.count() >= 10  # one column: nothing wrapped beside another link
    assert box(page, "main")["x"] > box(page, "nav")["x"] + 150  # the page sits right of the menu


def test_the_message_log_filters_form_two_aligned_rows(app, page, admin):
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")
    page.goto("/messages/")
    tops = sorted(page.locator("form.filters > *").nth(i).bounding_box()["y"] for i in range(10))
    rows = 1 + sum(1 for a, b in zip(tops, tops[1:], strict=False) if b - a > 25)
    assert rows == 2  # ten cells, two rows of five (cells of a row differ by their own height only)
    lefts = [round(page.locator("form.filters > *").nth(i).bounding_box()["x"]) for i in range(10)]
    assert lefts[:5] == lefts[5:]  # columns line up
    shot(page, "messages-filters")


def test_the_vouch_checkbox_sits_before_its_words(app, page, admin):
    sign_in(page, *ADMIN)
    page.wait_for_selector("h1:text('Overview')")
    page.goto("/senders/")
    checkbox = box(page, "input[name=verified]")
    label = box(page, "label:has(> input[name=verified])")
    assert checkbox["y"] + checkbox["height"] > label["y"] + label["height"] / 2 - 2  # same line, not above
    assert label["width"] > 200 and label["height"] < checkbox["height"] + 15  # one line, not two
