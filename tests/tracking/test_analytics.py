"""Analytics over real traffic: broadcast mail through SMTP to sink MXs, opens and clicks through the
real web server, then `appliance stats --json`, the dashboard's analytics page and its CSV export."""

from __future__ import annotations

import csv
import io

from appliance import admins
from tests.support.process import cli_json
from tests.support.wait import wait_for
from tests.web.conftest import ADMIN, Dashboard


def test_stats_json_counts_per_stream_with_human_rates_and_per_provider(app, traffic, run_cli):
    def stats(*args):
        return wait_for(
            lambda: (
                (found := cli_json(run_cli("stats", *args, "--json"))["analytics"])
                and found["delivered"] == found["sent"]
                and found
            )
        )

    broadcast = stats("--stream", "broadcast")
    assert {
        k: broadcast[k]
        for k in (
            "sent",
            "delivered",
            "bounced",
            "complained",
            "opened",
            "clicked",
            "unsubscribed",
            "machine_opened",
            "unique_human_opens",
            "unique_human_clicks",
        )
    } == {
        "sent": 2,
        "delivered": 2,
        "bounced": 0,
        "complained": 0,
        "opened": 1,
        "clicked": 1,
        "unsubscribed": 1,
        "machine_opened": 1,
        "unique_human_opens": 1,
        "unique_human_clicks": 1,
    }
    assert broadcast["open_rate"] == broadcast["click_rate"] == 0.5  # the scanner's open is not counted
    assert broadcast["providers"]["gmail"]["machine_opened"] == 1
    assert broadcast["providers"]["gmail"]["unsubscribed"] == 1 and broadcast["providers"]["gmail"]["opened"] == 0
    assert broadcast["top_links"] == [{"url": "https://shop.test/sale?a=1&b=2", "clicks": 1, "unique": 1}]
    transactional = stats("--stream", "transactional")
    assert (transactional["sent"], transactional["opened"], transactional["unsubscribed"]) == (1, 0, 0)
    assert stats()["sent"] == 3
    other = cli_json(run_cli("stats", "--account", "999", "--json"))["analytics"]
    assert other["sent"] == 0 and other["open_rate"] is None


def test_the_analytics_page_and_its_csv_show_the_same_figures(app, traffic):
    with app.app_context():
        admins.create(*ADMIN, role="admin")
    dashboard = Dashboard(app.test_client())
    dashboard.login(*ADMIN)
    page = dashboard.get("/analytics/?stream=broadcast").get_data(as_text=True)
    totals = page[page.index('id="totals"') : page.index('id="rates"')]
    assert '<div class="value">2</div><div class="label">delivered</div>' in totals
    assert '<div class="value">1</div><div class="label">clicked</div>' in totals
    assert "1 (50.0 % of delivered); 1 machine opens" in page
    assert '<rect class="clicked"' in page and "1 clicked</title>" in page
    assert "<td>gmail</td>" in page and "https://shop.test/sale?a=1&amp;b=2" in page

    exported = dashboard.get("/analytics/export.csv?stream=broadcast")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    total = next(r for r in rows if r["scope"] == "total")
    assert (total["sent"], total["delivered"], total["opened"], total["clicked"], total["unsubscribed"]) == (
        "2",
        "2",
        "1",
        "1",
        "1",
    )
    assert any(r["scope"] == "provider" and r["name"] == "gmail" for r in rows)

    refused = dashboard.get("/analytics/?since=yesterday&stream=marketing")
    assert refused.status_code == 400
    assert "Use a date like 2025-01-31." in refused.get_data(as_text=True)
    assert dashboard.get("/analytics/export.csv?until=nope").status_code == 400
