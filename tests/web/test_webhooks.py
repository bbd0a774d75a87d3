"""The Webhooks page: list, add (the secret shown once), show the calls, test event, replay, turn off,
delete; admins only for changes; the same refusals as the CLI."""

from __future__ import annotations

import pytest
from markupsafe import escape

from appliance import queue
from appliance.models import AuditEntry, Webhook, WebhookDelivery
from tests.support.wait import wait_for
from tests.support.webhooks import Receiver, signature_ok


@pytest.fixture
def overrides(overrides):
    return {**overrides, "WEBHOOK_ALLOW_PRIVATE": True, "WORKERS": 2, "WORKER_POLL_INTERVAL": 0.05}


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def workers(app):
    from appliance.serve import QueueService

    service = QueueService(app.config)
    service.start()
    yield service
    service.stop()


def test_the_empty_page_says_what_webhooks_are_and_the_nav_links_it(client):
    page = client.get("/webhooks/").get_data(as_text=True)
    assert "No webhook yet." in page and 'href="/webhooks/" aria-current="page"' in page


def test_adding_a_webhook_shows_its_secret_once_and_lists_it(client, receiver):
    response = client.form("/webhooks/", {"url": receiver.url, "events": ["bounced", "complained"]})
    assert response.status_code == 302  # post-redirect-get: a reload repeats the GET, never the POST
    hook = Webhook.get()
    shown = client.get(response.headers["Location"])
    assert shown.headers["Cache-Control"] == "no-store"
    page = shown.get_data(as_text=True)
    assert hook.secret in page and "shown only this once" in page
    again = client.get(response.headers["Location"], follow_redirects=True).get_data(as_text=True)
    assert "The signing secret was shown once" in again and hook.secret not in again
    assert Webhook.select().count() == 1
    assert hook.event_types == "bounced complained" and hook.account_ids == ""
    listed = client.get("/webhooks/").get_data(as_text=True)
    assert str(escape(receiver.url)) in listed and "bounced, complained; every account" in listed
    assert hook.secret not in listed and hook.secret not in client.get(f"/webhooks/{hook.id}").get_data(as_text=True)
    assert [e.action for e in AuditEntry.select()] == ["webhook.create"]


@pytest.mark.parametrize(
    ("url", "option"),
    [("ftp://example.com/", None), ("https://127.0.0.1/x", "private"), ("https://8.8.8.8/", "bad-type")],
)
def test_the_cli_and_the_dashboard_refuse_a_bad_webhook_with_the_same_sentence(app, client, run_cli, url, option):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = option != "private"
    events = ["bouncd"] if option == "bad-type" else []
    args = ["--events", "bouncd"] if events else []
    result = run_cli("webhooks", "create", url, *args)
    assert result.exit_code != 0
    sentence = result.stderr.strip().removeprefix("Error: ")
    response = client.form("/webhooks/", {"url": url, "events": events})
    assert response.status_code == 400 and str(escape(f"{sentence}.")) in response.get_data(as_text=True)
    assert Webhook.select().count() == 0


def test_a_test_event_its_call_and_a_replay_from_the_page(client, workers, receiver):
    receiver.answer = lambda n, body: 500 if n == 0 else 200
    client.form("/webhooks/", {"url": receiver.url})
    hook = Webhook.get()
    response = client.form(f"/webhooks/{hook.id}/test")
    assert response.status_code == 302
    wait_for(lambda: len(receiver.calls) == 1)
    row = wait_for(lambda: (r := WebhookDelivery.get()).attempts == 1 and r.status == "pending" and r)
    page = client.get(f"/webhooks/{hook.id}").get_data(as_text=True)
    assert "500" in page and "receiver is down" in page and "Replay" in page

    assert client.form(f"/webhooks/deliveries/{row.id}/replay").status_code == 302
    assert wait_for(lambda: WebhookDelivery.get().status == "delivered")
    assert receiver.types() == ["webhook.test"] and signature_ok(hook.secret, receiver.calls[1])
    page = client.get(f"/webhooks/{hook.id}").get_data(as_text=True)
    assert 'step-pass">200' in page and "ok" in page
    assert [e.action for e in AuditEntry.select().order_by(AuditEntry.id)] == [
        "webhook.create",
        "webhook.test",
        "webhook.replay",
    ]


def test_turning_off_and_deleting(client, receiver, app):
    client.form("/webhooks/", {"url": receiver.url})
    hook = Webhook.get()
    client.form(f"/webhooks/{hook.id}/active", {"active": "0"})
    assert not Webhook.get().active and "Turn on" in client.get(f"/webhooks/{hook.id}").get_data(as_text=True)
    client.form(f"/webhooks/{hook.id}/active", {"active": "1"})
    assert Webhook.get().active
    assert client.form(f"/webhooks/{hook.id}/delete").status_code == 302
    assert Webhook.select().count() == 0 and client.get(f"/webhooks/{hook.id}").status_code == 404
    assert queue.sweep_webhooks(queue.runtime(app.config)) == 0


def test_a_viewer_sees_the_page_but_changes_nothing(client, viewer_client, receiver):
    client.form("/webhooks/", {"url": receiver.url})
    hook = Webhook.get()
    page = viewer_client.get(f"/webhooks/{hook.id}").get_data(as_text=True)
    assert "Send a test event</button>" not in page and receiver.url.split("?")[0] in page
    for url in (
        "/webhooks/",
        f"/webhooks/{hook.id}/test",
        f"/webhooks/{hook.id}/delete",
        f"/webhooks/{hook.id}/active",
    ):
        assert viewer_client.form(url, {"url": receiver.url}).status_code == 403
    assert Webhook.select().count() == 1 and WebhookDelivery.select().count() == 0
