"""Overview page: counts per period, queue depth, charts, problems, empty states."""

from __future__ import annotations

import datetime as dt
import re

from appliance import accounts, clock
from appliance.models import Delivery, Message
from appliance.web.charts import Bucket, bar_chart


def _card(page: str, label: str) -> int:
    return int(re.search(rf'<div class="value">(\d+)</div><div class="label">{label}', page).group(1))


def test_a_fresh_appliance_says_to_create_an_smtp_account_first(client):
    page = client.get("/").get_data(as_text=True)
    assert "Create an SMTP account" in page
    assert "No problem" in page


def test_with_an_account_but_no_mail_it_says_to_send_a_test_message(client):
    accounts.create("Shop")
    assert "send a test message" in client.get("/").get_data(as_text=True)


def test_counts_per_outcome_queue_depth_and_recent_problems(client, store_message):
    delivered = store_message(subject="ok")
    bounced = store_message(subject="bad", rcpts=("gone@example.com",))
    store_message(subject="waiting")
    now = clock.now()
    Delivery.update(status="delivered", updated_at=now).where(Delivery.message == delivered).execute()
    Delivery.update(status="bounced", updated_at=now, last_reply="550 5.1.1 no such user").where(
        Delivery.message == bounced
    ).execute()
    page = client.get("/").get_data(as_text=True)
    assert _card(page, "accepted") == 3
    assert _card(page, "delivered") == 1
    assert _card(page, "bounced") == 1
    assert _card(page, "in the queue now") == 1
    assert "gone@example.com" in page and "550 5.1.1 no such user" in page


def test_older_mail_counts_in_30_days_but_not_today(client, store_message):
    old = store_message()
    Message.update(received_at=clock.now() - dt.timedelta(days=10)).where(Message.id == old).execute()
    assert _card(client.get("/?period=today").get_data(as_text=True), "accepted") == 0
    assert _card(client.get("/?period=30d").get_data(as_text=True), "accepted") == 1


def test_the_charts_are_svg_drawn_by_the_server_with_one_bar_per_hour_and_day(client, store_message):
    store_message()
    page = client.get("/").get_data(as_text=True)
    assert page.count('<svg class="chart"') == 2
    assert page.count('<rect class="accepted"') == 24 + 30
    assert re.search(r'<rect class="accepted" [^>]*height="1[0-9]{2}\.\d"', page)


def test_a_chart_escapes_its_labels():
    svg = str(bar_chart([Bucket("<b>", {"accepted": 1})], ("accepted",), "t<i>"))
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "t&lt;i&gt;" in svg


def test_a_failed_smtp_login_shows_among_recent_problems(client):
    account, _ = accounts.create("Shop")
    accounts.verify(account.username, "wrong", "203.0.113.5")
    page = client.get("/").get_data(as_text=True)
    assert "failed login to" in page and "wrong password from 203.0.113.5" in page


def test_the_overview_shows_the_database_size_and_the_free_disk(client, app):
    page = client.get("/").get_data(as_text=True)
    size = float(re.search(r'<div class="value">([\d.]+) MiB</div><div class="label">database size', page).group(1))
    free = float(re.search(r'<div class="value">([\d.]+) MiB</div><div class="label">free disk', page).group(1))
    assert size > 0 and free > 0
    assert "low: under" not in page
    assert "Retention: bodies kept 30 days, messages 90 days" in page


def test_the_overview_says_when_the_disk_is_low(client, app):
    app.config["DISK_ALERT_FREE_MB"] = 1024**3  # 1 PiB: every disk here is low
    assert "low: under 1073741824 MiB" in client.get("/").get_data(as_text=True)


def test_a_message_whose_body_was_purged_says_so(client, app, store_message):
    from appliance import retention
    from appliance.models import MessageBody

    message_id = store_message(subject="old news")
    Delivery.update(status="delivered").where(Delivery.message == message_id).execute()
    page = client.get(f"/messages/{message_id}").get_data(as_text=True)
    assert "Subject: old news" in page and "was purged" not in page

    # A purge as it would run 31 days from now (moving the clock would end the admin's session).
    assert retention.purge(app.config, now=clock.now() + dt.timedelta(days=31)).bodies == 1
    assert not MessageBody.select().where(MessageBody.message == message_id).exists()
    response = client.get(f"/messages/{message_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "The message body was purged (retention: bodies are kept 30 days" in page
    assert "old news" in page  # the envelope stays
