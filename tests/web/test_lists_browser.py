"""In headless Chromium: import a CSV file of members on a list's page and watch the progress bar,
which htmx polls while a worker imports, reach the end with the bad rows reported by line."""

from __future__ import annotations

import pytest

from appliance import admins, lists
from appliance.models import ListMember

from .conftest import ADMIN, CHROMIUM, shot, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")

ROWS = 3000


@pytest.fixture
def overrides(overrides):
    return {**overrides, "WORKERS": 2, "WORKER_POLL_INTERVAL": 0.05}


def test_a_csv_import_runs_in_a_worker_and_its_progress_bar_reaches_the_end(app, page, tmp_path):
    from appliance.serve import QueueService

    workers = QueueService(app.config)
    workers.start()
    try:
        with app.app_context():
            admins.create(*ADMIN)
            made = lists.create("Customers")
        csv_file = tmp_path / "customers.csv"
        rows = [f"member{i}@example.test" for i in range(ROWS)]
        rows[10], rows[2000] = "not-an-address", "Bob <bob@>"
        csv_file.write_text("email\n" + "\n".join(rows) + "\n")

        sign_in(page, *ADMIN)
        page.wait_for_selector("h1:text('Overview')")
        page.click("nav >> text=Lists")
        page.click("a:text('Customers')")
        page.set_input_files("input[name=file]", str(csv_file))
        page.click("button:text('Import')")
        page.wait_for_selector("h1:text('Importing members')")
        importing = page.url
        # The page itself has no figures: the bar comes from the polled partial, then the report.
        page.wait_for_selector("#import-bar")
        page.wait_for_selector("#import-report", timeout=60_000)
        assert page.url == importing  # the bar updated in place: no reload, no navigation
        bar = page.locator("#import-bar")
        assert bar.get_attribute("value") == bar.get_attribute("max") == str(ROWS)
        report = page.inner_text("#import-report")
        assert report == f"Done: {ROWS - 2} added, 0 already on the list, 2 bad rows."
        bad = page.locator(".bad-rows li").all_inner_texts()
        assert bad == [
            "line 12: 'not-an-address' is not an email address: no domain (expected local-part@domain)",
            "line 2002: 'bob@' is not an email address: invalid domain ''",
        ]
        # Polling stopped with the last answer: the finished partial carries no trigger.
        assert page.locator("#import-progress[hx-trigger]").count() == 0
        shot(page, "list-import")
        with app.app_context():
            assert ListMember.select().where(ListMember.list == made.id).count() == ROWS - 2
        page.click("text=Back to the list")
        page.wait_for_selector("text=2998 in all")
        assert page.console_errors == []
    finally:
        workers.stop()
