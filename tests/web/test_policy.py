"""The sending policy page and the account page's quotas, through the signed-in test client."""

from __future__ import annotations

import datetime as dt

from appliance import accounts
from appliance.models import ProviderGroup, SendCount, SmtpAccount, WarmupPlan
from appliance.policy import groups, quotas, warmup


def test_the_policy_page_shows_groups_the_warm_up_chart_and_a_slowed_down_group(app, client, test_clock):
    test_clock.value = dt.datetime(2025, 6, 4, 10, 0)
    warmup.set_warmup(enabled=True, start_date=dt.date(2025, 6, 2), steps="1:1000,4:5000,21:")
    SendCount.create(provider="gmail", hour=dt.datetime(2025, 6, 4, 9), count=321)
    groups.note_rate_limit(
        app.config,
        "gmail.com",
        "gmail-smtp-in.l.google.com",
        "421 4.7.28 Gmail has detected an unusual rate of mail",
        test_clock.value,
    )
    page = client.get("/policy/").get_data(as_text=True)
    assert "On: day 3, today's cap 1000, 321 sent today." in page
    assert '<svg class="chart"' in page and "day 3 (06-04): 321 delivered" in page
    assert 'id="throttled"' in page and "421 4.7.28 Gmail has detected" in page and "2025-06-04 10:15" in page
    assert 'aria-label="gmail hourly cap for a new IP" size="6"' in page
    # gmail's row: 500 an hour in force on day 3 of the plan (still its new-IP figure), none sent in
    # this hour yet, and the 321 of 09:00 counted toward its daily cap.
    providers = page[page.index('id="providers"') :]
    row = providers[providers.index("<td>gmail</td>") : providers.index("<td>google-workspace</td>")]
    assert "500 / 0" in row and '<td class="num">321</td>' in row
    assert "mySMTP knowledge base" in page


def test_an_admin_changes_a_group_cap_and_a_bad_number_is_explained(client):
    gmail = groups.group_rows()[0]
    response = client.form(
        f"/policy/providers/{gmail.id}",
        {
            "domains": "gmail.com googlemail.com",
            "mx_hosts": "*.google.com",
            "stage": "warm",
            "hourly_new": "250",
            "hourly_warm": "2500",
            "daily_cap": "",
            "session_cap": "",
        },
    )
    assert response.status_code == 302
    row = ProviderGroup.get_by_id(gmail.id)
    assert (row.stage, row.hourly_new, row.hourly_warm, row.daily_cap, row.session_cap, row.mx_patterns) == (
        "warm",
        250,
        2500,
        None,
        None,
        "*.google.com",
    )
    bad = client.form(f"/policy/providers/{gmail.id}", {"hourly_warm": "many"})
    assert bad.status_code == 400 and "a whole number, or empty for no cap" in bad.get_data(as_text=True)
    bad = client.form(f"/policy/providers/{gmail.id}", {"stage": "lukewarm"})
    assert bad.status_code == 400 and "Stage: one of auto, new, warm." in bad.get_data(as_text=True)
    assert ProviderGroup.get_by_id(gmail.id).hourly_warm == 2500  # a refused form changes nothing


def test_an_admin_edits_the_warm_up_plan_and_a_plan_not_starting_on_day_one_is_refused(client):
    response = client.form("/policy/warmup", {"enabled": "on", "start_date": "2025-06-01", "steps": "1:50,8:"})
    assert response.status_code == 302
    plan = WarmupPlan.get_by_id(1)
    assert (plan.enabled, plan.start_date, plan.steps) == (True, dt.date(2025, 6, 1), "1:50,8:")
    bad = client.form("/policy/warmup", {"steps": "3:50"})
    assert bad.status_code == 400 and "the plan must start on day 1" in bad.get_data(as_text=True)


def test_a_viewer_sees_the_policy_but_cannot_change_it(viewer_client):
    assert viewer_client.get("/policy/").status_code == 200
    assert viewer_client.form("/policy/warmup", {"steps": "1:5"}).status_code == 403


def test_quotas_are_set_and_their_usage_shown_on_the_account_page(app, client, store_message):
    account, _ = accounts.create("Shop")
    store_message(account_id=account.id, rcpts=("a@example.com", "b@example.com"))
    response = client.form(
        f"/policy/quotas/{account.id}",
        {"limit_hour": "10", "action_hour": "hold", "limit_day": "", "limit_month": "1000", "action_month": "reject"},
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("#quotas")
    assert [str(q) for q in quotas.quotas_of(account.id)] == ["hour=10:hold", "month=1000:reject"]
    page = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert "2 / 10 (20 %)" in page and "2 / 1000 (0 %)" in page
    bad = client.form(f"/policy/quotas/{account.id}", {"limit_hour": "ten"})
    assert bad.status_code == 400 and "per hour: a whole number of recipients" in bad.get_data(as_text=True)
    assert SmtpAccount.get_by_id(account.id).quotas.count() == 2


def test_quotas_of_one_stream_are_set_on_the_account_page(app, client):
    account, _ = accounts.create("Shop")
    saved = client.form(
        f"/policy/quotas/{account.id}",
        {
            "limit_hour": "10",
            "action_hour": "defer",
            "limit_transactional_day": "50",
            "action_transactional_day": "reject",
        },
    )
    assert saved.status_code == 302
    assert [str(q) for q in quotas.quotas_of(account.id)] == ["hour=10:defer", "transactional/day=50:reject"]
    page = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert 'name="limit_transactional_day" value="50"' in page and "transactional only" in page
    bad = client.form(f"/policy/quotas/{account.id}", {"limit_broadcast_hour": "lots"})
    assert bad.status_code == 400 and "per hour of broadcast mail: a whole number" in bad.get_data(as_text=True)
